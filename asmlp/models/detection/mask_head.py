"""The mask head of Mask R-CNN as mmdet 2.11's ``FCNMaskHead`` (4 convs, deconv x2, per-class logits).

mmdet ``mmdet/models/roi_heads/mask_heads/fcn_mask_head.py`` (github.com/open-mmlab/mmdetection v2.11.0), the
configs' ``num_convs=4, conv_out_channels=256, num_classes=80``: ``convs.i`` are 3x3 ``ConvModule`` (conv with bias,
ReLU), ``upsample`` a 2x2 stride-2 ``ConvTranspose2d`` followed by ReLU, ``conv_logits`` a 1x1 conv to one logit map
per class: (k, 256, 14, 14) RoI features -> (k, 80, 28, 28) logits.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import ConvModule

__all__ = ['FCNMaskHead']


class FCNMaskHead(nn.Module):
    """``convs``, ``upsample`` (deconv) + ReLU, ``conv_logits``; mmdet module names."""

    def __init__(self, num_convs: int = 4, in_channels: int = 256, conv_out_channels: int = 256,
                 num_classes: int = 80):
        super().__init__()
        self.num_classes = num_classes
        self.convs = nn.ModuleList(
            ConvModule(in_channels if i == 0 else conv_out_channels, conv_out_channels, 3, padding=1)
            for i in range(num_convs))
        upsample_in = conv_out_channels if num_convs else in_channels
        self.upsample = nn.ConvTranspose2d(upsample_in, conv_out_channels, 2, stride=2)
        self.conv_logits = nn.Conv2d(conv_out_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return self.conv_logits(F.relu(self.upsample(x), inplace=True))
