"""The second stage: mmdet 2.11's ``StandardRoIHead`` (Mask R-CNN) and ``CascadeRoIHead`` (Cascade Mask R-CNN).

mmdet ``mmdet/models/roi_heads/standard_roi_head.py``, ``test_mixins.py`` and ``cascade_roi_head.py``
(github.com/open-mmlab/mmdetection v2.11.0), single-image ``simple_test`` with ``rescale=True``:

* Mask R-CNN: RoIs = the proposals (batch index 0); box head on 7x7 RoIAlign features; 2.11's batch-padding
  clean-up zeroes the logits and deltas of every RoI whose **y2 is exactly 0** (``rois[..., -1] == 0`` in
  ``simple_test_bboxes``: meant for padding rows, it also hits real proposals clipped to the top edge; their score
  becomes 1/81 < 0.05); ``get_bboxes`` (softmax, decode, clip, divide by ``scale_factor``, per-class NMS). Masks:
  the detections times ``scale_factor`` are the mask RoIs (14x14 features, 28x28 logits), the sigmoid of each
  detection's class channel is pasted at the original size with the box divided by ``scale_factor`` again.
  (``simple_test_mask`` also drops the masks of detections whose scaled y2 is 0, which misaligns mmdet's per-class
  lists; here such a detection keeps an all-False mask.)
* Cascade Mask R-CNN (3 stages): stage i's head on the current RoIs; for stages 0-1 the RoIs move by the deltas of
  their arg-max foreground class (``regress_by_class``, that stage's stds, clipped); the final score is the softmax
  of the **mean of the three stages' logits** and the boxes the last stage's deltas on its input RoIs; masks are the
  **mean of the three mask heads' sigmoids** (``merge_aug_masks``), then pasted as above.
* ``forward_dummy`` (``get_flops``): the box head(s) on ``num_rois`` RoIs and the mask head(s) on the first
  ``num_mask_rois``; mmdet draws random proposals (``torch.randn(1000, 4)``), all smaller than 56 px, so all of them
  are pooled on the stride-4 level: here fixed 16x16 boxes there, which also runs on the meta device.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn as nn

from .bbox_heads import ConvFCBBoxHead, RCNNTestConfig
from .mask_head import FCNMaskHead
from .postprocess import paste_masks
from .roi_extractor import SingleRoIExtractor

if TYPE_CHECKING:
    from .preprocess import ImageMeta

__all__ = ['StandardRoIHead', 'CascadeRoIHead']

Detections = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (dets (k, 5), labels (k,), masks (k, H, W) bool)


def _with_batch_index(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes[:, :4]], dim=1)


def _dummy_rois(feat: torch.Tensor, count: int) -> torch.Tensor:
    return feat.new_tensor([0., 0., 0., 16., 16.]).expand(count, 5).contiguous()


class _RoIHeadBase(nn.Module):
    """What both heads share: the extractors, the test config, the mask step."""

    def __init__(self, cfg: RCNNTestConfig, strides: Sequence[int]):
        super().__init__()
        self.test_cfg = cfg
        self.bbox_roi_extractor = SingleRoIExtractor(7, strides)
        self.mask_roi_extractor = SingleRoIExtractor(14, strides)

    def _mask_heads(self) -> Sequence[FCNMaskHead]:
        raise NotImplementedError

    def _masks(self, feats: Sequence[torch.Tensor], dets: torch.Tensor, labels: torch.Tensor, meta: ImageMeta
               ) -> torch.Tensor:
        """Bool masks (k, H, W) at the original size for detections (k, 5) in original pixels."""
        height, width = meta.ori_shape
        if dets.shape[0] == 0:
            return torch.zeros(0, height, width, dtype=torch.bool, device=dets.device)
        factor = dets.new_tensor(meta.scale_factor)
        boxes = dets[:, :4] * factor  # the detections in the resized image: the mask RoIs
        mask_feats = self.mask_roi_extractor(feats, _with_batch_index(boxes))
        heads = self._mask_heads()
        probs = sum(head(mask_feats).sigmoid() for head in heads) / float(len(heads))
        probs = probs[torch.arange(probs.shape[0], device=probs.device), labels][:, None]
        return paste_masks(probs, boxes / factor, height, width, self.test_cfg.mask_thr_binary)


class StandardRoIHead(_RoIHeadBase):
    """Mask R-CNN's RoI head: ``bbox_head`` (Shared2FCBBoxHead) and ``mask_head`` (FCNMaskHead)."""

    def __init__(self, bbox_head: ConvFCBBoxHead, mask_head: FCNMaskHead, cfg: RCNNTestConfig = RCNNTestConfig(),
                 strides: Sequence[int] = (4, 8, 16, 32)):
        super().__init__(cfg, strides)
        self.bbox_head = bbox_head
        self.mask_head = mask_head

    def _mask_heads(self) -> Sequence[FCNMaskHead]:
        return [self.mask_head]

    def simple_test(self, feats: Sequence[torch.Tensor], proposals: torch.Tensor, meta: ImageMeta) -> Detections:
        rois = _with_batch_index(proposals)
        cls_score, bbox_pred = self.bbox_head(self.bbox_roi_extractor(feats, rois))
        padding_rows = rois[:, -1] == 0  # mmdet 2.11's batch-padding clean-up (see the module docstring)
        cls_score = cls_score.masked_fill(padding_rows[:, None], 0)
        bbox_pred = bbox_pred.masked_fill(padding_rows[:, None], 0)
        dets, labels = self.bbox_head.get_bboxes(rois, cls_score, bbox_pred, meta.img_shape, meta.scale_factor,
                                                 self.test_cfg)
        masks = self._masks(feats, dets, labels, meta)
        masks[dets[:, 3] == 0] = False  # mmdet drops these masks (y2 * scale_factor == 0)
        return dets, labels, masks

    def forward_dummy(self, feats: Sequence[torch.Tensor], num_rois: int = 1000, num_mask_rois: int = 100) -> tuple:
        rois = _dummy_rois(feats[0], num_rois)
        outs = self.bbox_head(self.bbox_roi_extractor.pool(feats[0], rois, 0))
        mask_rois = rois[:num_mask_rois]
        return (*outs, self.mask_head(self.mask_roi_extractor.pool(feats[0], mask_rois, 0)))


class CascadeRoIHead(_RoIHeadBase):
    """Cascade Mask R-CNN's RoI head: ``bbox_head.{0,1,2}`` and ``mask_head.{0,1,2}``."""

    def __init__(self, bbox_heads: Sequence[ConvFCBBoxHead], mask_heads: Sequence[FCNMaskHead],
                 cfg: RCNNTestConfig = RCNNTestConfig(), strides: Sequence[int] = (4, 8, 16, 32)):
        super().__init__(cfg, strides)
        if len(bbox_heads) != len(mask_heads) or not bbox_heads:
            raise ValueError(f'one mask head per stage: {len(bbox_heads)} box heads, {len(mask_heads)} mask heads')
        self.num_stages = len(bbox_heads)
        self.bbox_head = nn.ModuleList(bbox_heads)
        self.mask_head = nn.ModuleList(mask_heads)

    def _mask_heads(self) -> Sequence[FCNMaskHead]:
        return list(self.mask_head)

    def simple_test(self, feats: Sequence[torch.Tensor], proposals: torch.Tensor, meta: ImageMeta) -> Detections:
        rois = _with_batch_index(proposals)
        stage_scores = []
        for i, head in enumerate(self.bbox_head):
            cls_score, bbox_pred = head(self.bbox_roi_extractor(feats, rois))
            stage_scores.append(cls_score)
            if i < self.num_stages - 1:
                rois = head.regress_by_class(rois, cls_score[:, :-1].argmax(dim=1), bbox_pred, meta.img_shape)
        cls_score = sum(stage_scores) / float(len(stage_scores))
        dets, labels = self.bbox_head[-1].get_bboxes(rois, cls_score, bbox_pred, meta.img_shape,
                                                     meta.scale_factor, self.test_cfg)
        return dets, labels, self._masks(feats, dets, labels, meta)

    def forward_dummy(self, feats: Sequence[torch.Tensor], num_rois: int = 1000, num_mask_rois: int = 100) -> tuple:
        rois = _dummy_rois(feats[0], num_rois)
        roi_feats = self.bbox_roi_extractor.pool(feats[0], rois, 0)
        outs = tuple(t for head in self.bbox_head for t in head(roi_feats))
        mask_feats = self.mask_roi_extractor.pool(feats[0], rois[:num_mask_rois], 0)
        return outs + tuple(head(mask_feats) for head in self.mask_head)
