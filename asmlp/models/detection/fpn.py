"""Feature Pyramid Network (Lin et al., arXiv 1612.03144) as mmdet 2.11's ``FPN`` neck with its default settings.

mmdet ``mmdet/models/necks/fpn.py`` (github.com/open-mmlab/mmdetection v2.11.0; vendored unchanged by
svip-lab/AS-MLP-Object-Detection and SwinTransformer/Swin-Transformer-Object-Detection), with the Mask R-CNN
configs' arguments (``configs/_base_/models/mask_rcnn_swin_fpn.py``): a 1x1 lateral conv per input and a 3x3
output conv per level (``lateral_convs.k.conv``, ``fpn_convs.k.conv``; biases, no norm, no activation), top-down
sums with nearest-neighbour upsampling to the finer map's size, and ``num_outs - len(in_channels)`` extra levels
made by ``max_pool2d(kernel 1, stride 2)`` of the last output (``add_extra_convs=False``): P6 of Mask R-CNN.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import ConvModule

__all__ = ['FPN']


class FPN(nn.Module):
    """``in_channels`` maps (fine to coarse) -> ``num_outs`` maps of ``out_channels`` (P2..P6 for 4 inputs, 5 outs)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, num_outs: int = 5):
        super().__init__()
        if num_outs < len(in_channels):
            raise ValueError(f'num_outs ({num_outs}) must be >= the number of inputs ({len(in_channels)})')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1, act=False) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, act=False) for _ in in_channels)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'FPN expects {len(self.in_channels)} maps, got {len(inputs)}')
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                                              mode='nearest')
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
