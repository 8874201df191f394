"""mmcv's ``ConvModule`` with the module names of mmcv 1.x checkpoints (``conv``, ``bn``), as mmdet 2.x builds it.

mmcv ``cnn/bricks/conv_module.py`` (github.com/open-mmlab/mmcv, 1.3.x, used by mmdet 2.11): a conv whose bias is
dropped when a norm follows (``bias='auto'``), an optional norm (``SyncBN``/``BN`` named ``bn``; at inference a
SyncBN is a BatchNorm2d with its running statistics) and an optional ReLU, in that order.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ['ConvModule']


class ConvModule(nn.Module):
    """``conv`` -> optional ``bn`` (BatchNorm2d) -> optional ReLU (mmcv ``ConvModule``, order conv-norm-act)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
                 norm: bool = False, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.activate = nn.ReLU(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x
