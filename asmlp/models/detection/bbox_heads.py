"""R-CNN box heads as mmdet 2.11's ``ConvFCBBoxHead`` (``Shared2FCBBoxHead``, the Cascade configs' 4conv1f).

mmdet ``mmdet/models/roi_heads/bbox_heads/convfc_bbox_head.py`` and ``bbox_head.py``
(github.com/open-mmlab/mmdetection v2.11.0):

* ``shared_convs``: 3x3 ``ConvModule`` (conv, optional ``bn``, ReLU); ``shared_fcs``: Linear + ReLU on the
  flattened (C * 7 * 7) RoI features; ``fc_cls``: ``num_classes + 1`` logits with the **background last**;
  ``fc_reg``: 4 deltas per foreground class (class-specific regression). Mask R-CNN: ``Shared2FCBBoxHead``
  (2 fcs of 1024). Cascade Mask R-CNN (AS-MLP / Swin ``*_giou_4conv1f_*`` configs): ``ConvFCBBoxHead`` with 4
  shared convs of 256 with SyncBN and 1 fc of 1024, per stage.
* :meth:`ConvFCBBoxHead.get_bboxes` (``BBoxHead.get_bboxes``, test_cfg ``rcnn``): softmax over the 81 logits;
  decode each class's deltas against the RoI (the head's stds), clip to the resized image, divide by the resize
  ``scale_factor`` (original pixels) **before** the per-class NMS (score > 0.05, IoU 0.5, 100 per image).
* :meth:`ConvFCBBoxHead.regress_by_class` (Cascade R-CNN between stages): the deltas of each RoI's arg-max class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .bbox_coder import DeltaXYWHBBoxCoder
from .layers import ConvModule
from .postprocess import multiclass_nms

__all__ = ['ConvFCBBoxHead', 'RCNNTestConfig', 'shared_2fc_bbox_head']


@dataclass(frozen=True)
class RCNNTestConfig:
    """mmdet ``test_cfg.rcnn`` of the Mask R-CNN / Cascade configs."""
    score_thr: float = 0.05
    iou_threshold: float = 0.5
    max_per_img: int = 100
    mask_thr_binary: float = 0.5


class ConvFCBBoxHead(nn.Module):
    """mmdet's ``ConvFCBBoxHead`` with shared convs / fcs only (the configurations of these detectors)."""

    def __init__(self, num_shared_convs: int = 0, num_shared_fcs: int = 2, in_channels: int = 256,
                 conv_out_channels: int = 256, fc_out_channels: int = 1024, roi_feat_size: int = 7,
                 num_classes: int = 80, target_stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
                 norm: bool = False, reg_class_agnostic: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.reg_class_agnostic = reg_class_agnostic
        self.bbox_coder = DeltaXYWHBBoxCoder(target_stds=target_stds)
        self.shared_convs = nn.ModuleList(
            ConvModule(in_channels if i == 0 else conv_out_channels, conv_out_channels, 3, padding=1, norm=norm)
            for i in range(num_shared_convs))
        last = conv_out_channels if num_shared_convs else in_channels
        last *= roi_feat_size * roi_feat_size
        self.shared_fcs = nn.ModuleList(
            nn.Linear(last if i == 0 else fc_out_channels, fc_out_channels) for i in range(num_shared_fcs))
        last = fc_out_channels if num_shared_fcs else last
        self.fc_cls = nn.Linear(last, num_classes + 1)
        self.fc_reg = nn.Linear(last, 4 if reg_class_agnostic else 4 * num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoI features (k, C, 7, 7) -> (class logits (k, num_classes + 1), deltas (k, 4 * num_classes))."""
        for conv in self.shared_convs:
            x = conv(x)
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x), inplace=True)
        return self.fc_cls(x), self.fc_reg(x)

    def get_bboxes(self, rois: torch.Tensor, cls_score: torch.Tensor, bbox_pred: torch.Tensor,
                   img_shape: Sequence[int], scale_factor: np.ndarray, cfg: RCNNTestConfig
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Detections (k, 5: x1, y1, x2, y2 in original pixels, score) and labels (k,) of one image's RoIs (n, 5)."""
        scores = F.softmax(cls_score, dim=-1)
        bboxes = self.bbox_coder.decode(rois[:, 1:], bbox_pred, max_shape=img_shape)
        if bboxes.shape[0] > 0:
            factor = bboxes.new_tensor(np.asarray(scale_factor, dtype=np.float32))
            bboxes = bboxes / factor.repeat(bboxes.shape[-1] // 4)
        dets, labels, _ = multiclass_nms(bboxes, scores, cfg.score_thr, cfg.iou_threshold, cfg.max_per_img)
        return dets, labels

    def regress_by_class(self, rois: torch.Tensor, label: torch.Tensor, bbox_pred: torch.Tensor,
                         img_shape: Sequence[int]) -> torch.Tensor:
        """RoIs (n, 5) moved by the deltas of class ``label`` (n,), clipped to ``img_shape``."""
        if not self.reg_class_agnostic:
            label = label * 4
            inds = torch.stack((label, label + 1, label + 2, label + 3), 1)
            bbox_pred = torch.gather(bbox_pred, 1, inds)
        boxes = self.bbox_coder.decode(rois[:, 1:], bbox_pred, max_shape=img_shape)
        return torch.cat((rois[:, [0]], boxes), dim=1)


def shared_2fc_bbox_head(**kwargs) -> ConvFCBBoxHead:
    """mmdet ``Shared2FCBBoxHead``: two shared fcs, no convs (Mask R-CNN)."""
    return ConvFCBBoxHead(num_shared_convs=0, num_shared_fcs=2, **kwargs)
