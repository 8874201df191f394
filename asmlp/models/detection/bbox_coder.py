"""Box decoding as mmdet 2.11's ``DeltaXYWHBBoxCoder.decode`` (``delta2bbox``), clamps and clipping included.

mmdet ``mmdet/core/bbox/coder/delta_xywh_bbox_coder.py`` (github.com/open-mmlab/mmdetection v2.11.0):
``d = deltas * stds + means``; ``|dw|, |dh|`` clamped to ``|log(16 / 1000)|`` (``wh_ratio_clip``; torchvision clamps
only from above, at log(1000 / 16)); centre and size from the reference box (``(x1 + x2) / 2``, ``x2 - x1``, no
+1); ``gw = pw * exp(dw)``, ``gx = px + pw * dx``; corners ``gx -/+ gw / 2``; then every coordinate clipped to
``[0, W]`` / ``[0, H]`` of ``max_shape`` (the resized, unpadded image). Deltas may hold several boxes per row
(``4 * num_classes`` columns, class-specific regression): each group of 4 is decoded against the same reference.
The stds are the configs' ``target_stds`` (RPN 1; R-CNN 0.1, 0.1, 0.2, 0.2; Cascade stages 2 and 3
0.05, 0.05, 0.1, 0.1 and 0.033, 0.033, 0.067, 0.067), multiplied as float32 (not divided as torchvision's weights).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

__all__ = ['DeltaXYWHBBoxCoder', 'delta2bbox', 'clip_boxes', 'WH_RATIO_CLIP']

WH_RATIO_CLIP = 16 / 1000


def clip_boxes(boxes: torch.Tensor, max_shape: Sequence[int]) -> torch.Tensor:
    """Clamp x coordinates of (..., 4k) boxes into [0, W] and y into [0, H] of ``max_shape`` = (H, W, ...)."""
    height, width = max_shape[0], max_shape[1]
    limits = boxes.new_tensor([width, height] * (boxes.shape[-1] // 2))
    zero = boxes.new_tensor(0)
    boxes = torch.where(boxes < zero, zero, boxes)
    return torch.where(boxes > limits, limits, boxes)


def delta2bbox(rois: torch.Tensor, deltas: torch.Tensor, means: Sequence[float] = (0., 0., 0., 0.),
               stds: Sequence[float] = (1., 1., 1., 1.), max_shape: Optional[Sequence[int]] = None,
               wh_ratio_clip: float = WH_RATIO_CLIP) -> torch.Tensor:
    """Boxes (..., 4k) from reference boxes ``rois`` (..., 4) and ``deltas`` (..., 4k), mmdet 2.11's arithmetic."""
    groups = deltas.shape[-1] // 4
    means_t = deltas.new_tensor(means).view(1, -1).repeat(1, groups)
    stds_t = deltas.new_tensor(stds).view(1, -1).repeat(1, groups)
    denorm = deltas * stds_t + means_t
    dx, dy, dw, dh = denorm[..., 0::4], denorm[..., 1::4], denorm[..., 2::4], denorm[..., 3::4]
    max_ratio = abs(math.log(wh_ratio_clip))
    dw = dw.clamp(min=-max_ratio, max=max_ratio)
    dh = dh.clamp(min=-max_ratio, max=max_ratio)
    x1, y1, x2, y2 = rois[..., 0], rois[..., 1], rois[..., 2], rois[..., 3]
    px = ((x1 + x2) * 0.5).unsqueeze(-1).expand_as(dx)
    py = ((y1 + y2) * 0.5).unsqueeze(-1).expand_as(dy)
    pw = (x2 - x1).unsqueeze(-1).expand_as(dw)
    ph = (y2 - y1).unsqueeze(-1).expand_as(dh)
    gw = pw * dw.exp()
    gh = ph * dh.exp()
    gx = px + pw * dx
    gy = py + ph * dy
    boxes = torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], dim=-1).view(deltas.size())
    return boxes if max_shape is None else clip_boxes(boxes, max_shape)


class DeltaXYWHBBoxCoder:
    """The decoder of one head: its ``target_means`` / ``target_stds``."""

    def __init__(self, target_means: Sequence[float] = (0., 0., 0., 0.),
                 target_stds: Sequence[float] = (1., 1., 1., 1.)):
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)

    def decode(self, rois: torch.Tensor, deltas: torch.Tensor,
               max_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
        return delta2bbox(rois, deltas, self.means, self.stds, max_shape)
