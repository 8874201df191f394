"""Region Proposal Network head and its test-time proposals, as mmdet 2.11's ``RPNHead``.

mmdet ``mmdet/models/dense_heads/rpn_head.py`` and ``anchor_head.py`` (github.com/open-mmlab/mmdetection v2.11.0):
a shared 3x3 conv + ReLU, then 1x1 convs giving per anchor one sigmoid objectness (``rpn_cls``, A channels) and
4 deltas (``rpn_reg``, 4A channels, anchor-major), on every FPN level. Proposals for one image (``_get_bboxes``,
test_cfg ``rpn``: ``nms_pre=1000, max_per_img=1000, nms iou 0.7, min_bbox_size=0``):

1. per level, scores ``sigmoid`` in (H, W, A) order; if the level has more than ``nms_pre`` anchors, the top
   ``nms_pre`` by a descending sort;
2. all levels concatenated, decoded (stds 1) and clipped to the resized image (``img_shape``), no size filter;
3. NMS at IoU 0.7 **within each level** (the level index is the group of a batched NMS: mmcv ``batched_nms``,
   here ``torchvision.ops.batched_nms``, both exact per-group greedy NMS returning indices by decreasing score);
4. the first ``max_per_img`` kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms

from .anchors import AnchorGenerator
from .bbox_coder import DeltaXYWHBBoxCoder

__all__ = ['RPNHead', 'RPNTestConfig', 'select_proposals']


@dataclass(frozen=True)
class RPNTestConfig:
    """mmdet ``test_cfg.rpn`` of the Mask R-CNN / Cascade configs."""
    nms_pre: int = 1000
    max_per_img: int = 1000
    iou_threshold: float = 0.7
    min_bbox_size: float = 0.


def select_proposals(scores: Sequence[torch.Tensor], deltas: Sequence[torch.Tensor],
                     anchors: Sequence[torch.Tensor], img_shape: Sequence[int], coder: DeltaXYWHBBoxCoder,
                     cfg: RPNTestConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """mmdet 2.11's proposal selection for one image from per-level flat ``scores`` (n_l,), ``deltas`` (n_l, 4)
    and ``anchors`` (n_l, 4): returns (proposals (k, 4), their scores (k,)), by decreasing score."""
    kept_scores, kept_deltas, kept_anchors, level_ids = [], [], [], []
    for level, (score, delta, anchor) in enumerate(zip(scores, deltas, anchors)):
        if score.shape[0] > cfg.nms_pre:
            ranked, order = score.sort(descending=True)
            top = order[:cfg.nms_pre]
            score, delta, anchor = ranked[:cfg.nms_pre], delta[top], anchor[top]
        kept_scores.append(score)
        kept_deltas.append(delta)
        kept_anchors.append(anchor)
        level_ids.append(torch.full((score.shape[0],), level, dtype=torch.long, device=score.device))
    score = torch.cat(kept_scores)
    proposals = coder.decode(torch.cat(kept_anchors), torch.cat(kept_deltas), max_shape=img_shape)
    ids = torch.cat(level_ids)
    if cfg.min_bbox_size > 0:
        w, h = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
        valid = (w >= cfg.min_bbox_size) & (h >= cfg.min_bbox_size)
        proposals, score, ids = proposals[valid], score[valid], ids[valid]
    keep = batched_nms(proposals, score, ids, cfg.iou_threshold)[:cfg.max_per_img]
    return proposals[keep], score[keep]


class RPNHead(nn.Module):
    """``rpn_conv`` (3x3) + ReLU, ``rpn_cls`` (1x1, A) and ``rpn_reg`` (1x1, 4A); mmdet module names."""

    def __init__(self, in_channels: int = 256, feat_channels: int = 256,
                 anchor_generator: AnchorGenerator | None = None, cfg: RPNTestConfig = RPNTestConfig()):
        super().__init__()
        self.anchor_generator = anchor_generator or AnchorGenerator()
        self.bbox_coder = DeltaXYWHBBoxCoder()
        self.test_cfg = cfg
        num_anchors = self.anchor_generator.num_base_anchors
        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat_channels, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, num_anchors * 4, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level: objectness logits (N, A, H, W) and deltas (N, 4A, H, W)."""
        cls_scores, bbox_preds = [], []
        for x in feats:
            x = F.relu(self.rpn_conv(x), inplace=True)
            cls_scores.append(self.rpn_cls(x))
            bbox_preds.append(self.rpn_reg(x))
        return cls_scores, bbox_preds

    def get_proposals(self, feats: Sequence[torch.Tensor], img_shape: Sequence[int]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposals (k, 4) and scores (k,) of the single image of ``feats`` (batch 1)."""
        if feats[0].shape[0] != 1:
            raise ValueError(f'proposals are computed one image at a time, got a batch of {feats[0].shape[0]}')
        cls_scores, bbox_preds = self(feats)
        anchors = self.anchor_generator.grid_anchors([tuple(c.shape[-2:]) for c in cls_scores], cls_scores[0].device)
        scores = [c[0].permute(1, 2, 0).reshape(-1).sigmoid() for c in cls_scores]
        deltas = [b[0].permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds]
        return select_proposals(scores, deltas, anchors, img_shape, self.bbox_coder, self.test_cfg)
