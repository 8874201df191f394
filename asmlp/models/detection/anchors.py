"""Anchors as mmdet 2.11's ``AnchorGenerator`` makes them for the RPN of Mask R-CNN.

mmdet ``mmdet/core/anchor/anchor_generator.py`` (github.com/open-mmlab/mmdetection v2.11.0), the configs'
``scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]`` (``configs/_base_/models/mask_rcnn_swin_fpn.py``):

* base anchors of a level are centred at (0, 0) (``center_offset=0``), base size = the stride, ``scale_major``:
  ``h_ratio = sqrt(ratio)``, ``w_ratio = 1 / h_ratio``, ``w = base * w_ratio * scale``, ``h = base * h_ratio *
  scale``, corners ``(-w/2, -h/2, w/2, h/2)`` in float32, **not rounded** (torchvision rounds them);
* grid anchors add ``(x * stride, y * stride)`` of every feature-map cell, in the order (y, x, anchor), with the
  level's fixed stride (torchvision derives it from the padded image size, 61 instead of 64 for P6 when H/32 is odd).
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ['AnchorGenerator']


class AnchorGenerator:
    """mmdet's anchor generator (``base_anchors[i]``: (A, 4) float32 of level i; ``grid_anchors``: (H*W*A, 4))."""

    def __init__(self, strides: Sequence[int] = (4, 8, 16, 32, 64), ratios: Sequence[float] = (0.5, 1.0, 2.0),
                 scales: Sequence[float] = (8,)):
        self.strides = list(strides)
        self.ratios = torch.tensor(list(ratios), dtype=torch.float32)
        self.scales = torch.tensor(list(scales), dtype=torch.float32)
        self.base_anchors = [self._base(stride) for stride in self.strides]

    @property
    def num_base_anchors(self) -> int:
        return len(self.ratios) * len(self.scales)

    def _base(self, base_size: int) -> torch.Tensor:
        h_ratios = torch.sqrt(self.ratios)
        w_ratios = 1 / h_ratios
        ws = (base_size * w_ratios[:, None] * self.scales[None, :]).view(-1)
        hs = (base_size * h_ratios[:, None] * self.scales[None, :]).view(-1)
        return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)

    def grid_anchors(self, featmap_sizes: Sequence[tuple[int, int]], device: torch.device | str = 'cpu'
                     ) -> list[torch.Tensor]:
        """The anchors of every level, (feat_h * feat_w * A, 4) each, rows in the order (y, x, anchor)."""
        if len(featmap_sizes) != len(self.strides):
            raise ValueError(f'{len(featmap_sizes)} feature maps for {len(self.strides)} anchor levels')
        out = []
        for base, (feat_h, feat_w), stride in zip(self.base_anchors, featmap_sizes, self.strides):
            base = base.to(device)
            shift_x = torch.arange(0, feat_w, device=device) * stride
            shift_y = torch.arange(0, feat_h, device=device) * stride
            xx = shift_x.repeat(len(shift_y))
            yy = shift_y.view(-1, 1).repeat(1, len(shift_x)).view(-1)
            shifts = torch.stack([xx, yy, xx, yy], dim=-1).type_as(base)
            out.append((base[None, :, :] + shifts[:, None, :]).view(-1, 4))
        return out
