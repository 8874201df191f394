"""RoI feature extraction as mmdet 2.11's ``SingleRoIExtractor`` with mmcv's ``RoIAlign``.

mmdet ``mmdet/models/roi_heads/roi_extractors/single_level_roi_extractor.py`` (github.com/open-mmlab/mmdetection
v2.11.0): each RoI goes to one of the 4 finest levels (strides 4..32) by its scale ``sqrt(w * h)`` (no +1):
``floor(log2(scale / 56 + 1e-6))`` clamped to [0, 3] (``finest_scale=56``); that level's features are pooled with
mmcv ``RoIAlign(output_size, spatial_scale=1/stride, sampling_ratio=0, pool_mode='avg', aligned=True)``, which is
``torchvision.ops.roi_align`` with the same arguments (mmcv's ``use_torchvision`` path passes them through);
RoIs of no level stay zero. Boxes are (batch index, x1, y1, x2, y2).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.ops import roi_align

__all__ = ['SingleRoIExtractor', 'map_roi_levels']


def map_roi_levels(rois: torch.Tensor, num_levels: int, finest_scale: float = 56.) -> torch.Tensor:
    """The level (0-based, long) of each RoI (k, 5), mmdet's rule."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


class SingleRoIExtractor(nn.Module):
    """Per-level RoIAlign (no parameters): ``forward(feats, rois)`` -> (k, C, output_size, output_size)."""

    def __init__(self, output_size: int, featmap_strides: Sequence[int] = (4, 8, 16, 32), finest_scale: float = 56.):
        super().__init__()
        self.output_size = output_size
        self.featmap_strides = list(featmap_strides)
        self.finest_scale = finest_scale

    @property
    def num_inputs(self) -> int:
        return len(self.featmap_strides)

    def pool(self, feat: torch.Tensor, rois: torch.Tensor, level: int) -> torch.Tensor:
        """mmcv ``RoIAlign`` of ``rois`` on level ``level``'s map."""
        return roi_align(feat, rois, self.output_size, spatial_scale=1 / self.featmap_strides[level],
                         sampling_ratio=0, aligned=True)

    def forward(self, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        feats = feats[:self.num_inputs]
        out = feats[0].new_zeros(rois.shape[0], feats[0].shape[1], self.output_size, self.output_size)
        if rois.shape[0] == 0:
            return out
        if len(feats) == 1:
            return self.pool(feats[0], rois, 0)
        levels = map_roi_levels(rois, len(feats), self.finest_scale)
        for level, feat in enumerate(feats):
            inds = (levels == level).nonzero(as_tuple=False).squeeze(1)
            if inds.numel() > 0:
                out[inds] = self.pool(feat, rois[inds], level).to(out.dtype)
        return out
