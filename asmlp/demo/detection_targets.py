"""Training targets of the demo detectors, as mmdet 2.11 computes them for Mask R-CNN (training only: inference
lives in :mod:`asmlp.models.detection`).

From github.com/open-mmlab/mmdetection v2.11.0 and the Mask R-CNN ``train_cfg`` of
``configs/_base_/models/mask_rcnn_r50_fpn.py`` (the same in the Swin / AS-MLP ``mask_rcnn_*_fpn.py`` bases):

* :func:`max_iou_assign` = ``mmdet/core/bbox/assigners/max_iou_assigner.py`` ``assign_wrt_overlaps``: IoU of every
  box with every ground truth (``bbox_overlaps``, no +1); a box whose best IoU is in [0, ``neg_iou_thr``) is
  negative (0), one whose best IoU is >= ``pos_iou_thr`` goes to that ground truth (index + 1), the rest stay
  ignored (-1); then, with ``match_low_quality``, each ground truth whose best IoU is >= ``min_pos_iou`` takes
  every box reaching that best IoU (``gt_max_assign_all``), the later ground truth winning ties. RPN: 0.7 / 0.3 /
  0.3; R-CNN: 0.5 / 0.5 / 0.5; both ``match_low_quality=True``.
* :func:`random_sample` = ``mmdet/core/bbox/samplers/random_sampler.py`` with ``base_sampler.py``: with
  ``add_gt_as_proposals`` the ground truths are prepended as boxes assigned to themselves (IoU 1); at most
  ``int(num * pos_fraction)`` positives drawn at random (``torch.randperm`` of the candidates, the first ones),
  then ``num - positives`` negatives the same way, each set returned sorted (``unique``). RPN: 256, 0.5, no
  ground truths added; R-CNN: 512, 0.25, ground truths added (the demo recipe may draw fewer).
* :func:`bbox2delta` = ``mmdet/core/bbox/coder/delta_xywh_bbox_coder.py`` ``bbox2delta``: centre and size
  (``x2 - x1``, no +1) of proposal and target, ``((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph))``,
  minus ``means``, divided by ``stds`` (RPN 1; R-CNN 0.1, 0.1, 0.2, 0.2).
* :func:`mask_targets` = ``mmdet/models/roi_heads/mask_heads/fcn_mask_head.py`` ``get_targets`` with
  ``mmdet/core/mask/structures.py`` ``BitmapMasks.crop_and_resize``: the ground-truth bitmap of each positive box
  RoIAligned (``aligned=True``, ``sampling_ratio=0``, scale 1) to 28x28, then ``>= 0.5``.

Anchors: with ``allowed_border=-1`` every anchor is a candidate (the valid flags come from the padded shape, which
the feature maps cover), so anchors over the zero padding simply become negatives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torchvision.ops import box_iou, roi_align

__all__ = ['AssignResult', 'max_iou_assign', 'add_gt_as_proposals', 'random_sample', 'bbox2delta', 'mask_targets',
           'RPN_ASSIGNER', 'RCNN_ASSIGNER']

RPN_ASSIGNER = dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3)  # mmdet train_cfg.rpn.assigner
RCNN_ASSIGNER = dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5)  # mmdet train_cfg.rcnn.assigner


@dataclass(frozen=True)
class AssignResult:
    """``gt_inds`` (n,) long: -1 ignored, 0 negative, k > 0 the ground truth k - 1; ``max_overlaps`` (n,) each box's
    best IoU; ``labels`` (n,) long: the class of the assigned ground truth, -1 where not positive."""
    num_gts: int
    gt_inds: torch.Tensor
    max_overlaps: torch.Tensor
    labels: torch.Tensor


def max_iou_assign(bboxes: torch.Tensor, gt_bboxes: torch.Tensor, gt_labels: Optional[torch.Tensor] = None, *,
                   pos_iou_thr: float, neg_iou_thr: float, min_pos_iou: float, match_low_quality: bool = True
                   ) -> AssignResult:
    """mmdet's ``MaxIoUAssigner`` (``gt_max_assign_all=True``, no ignored ground truths) of boxes (n, 4) to ground
    truths (m, 4), both x1, y1, x2, y2."""
    num_gts, num_bboxes = gt_bboxes.shape[0], bboxes.shape[0]
    gt_inds = bboxes.new_full((num_bboxes,), -1, dtype=torch.long)
    labels = bboxes.new_full((num_bboxes,), -1, dtype=torch.long)
    if num_gts == 0 or num_bboxes == 0:
        max_overlaps = bboxes.new_zeros((num_bboxes,))
        if num_gts == 0:
            gt_inds[:] = 0
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)
    overlaps = box_iou(gt_bboxes, bboxes)  # (m, n)
    max_overlaps, argmax_overlaps = overlaps.max(dim=0)
    gt_max_overlaps, _ = overlaps.max(dim=1)
    gt_inds[(max_overlaps >= 0) & (max_overlaps < neg_iou_thr)] = 0
    pos = max_overlaps >= pos_iou_thr
    gt_inds[pos] = argmax_overlaps[pos] + 1
    if match_low_quality:
        for i in range(num_gts):
            if gt_max_overlaps[i] >= min_pos_iou:
                gt_inds[overlaps[i] == gt_max_overlaps[i]] = i + 1
    if gt_labels is not None:
        assigned = gt_inds > 0
        labels[assigned] = gt_labels[gt_inds[assigned] - 1]
    return AssignResult(num_gts, gt_inds, max_overlaps, labels)


def add_gt_as_proposals(bboxes: torch.Tensor, gt_bboxes: torch.Tensor, gt_labels: torch.Tensor,
                        assign: AssignResult) -> tuple[torch.Tensor, AssignResult]:
    """mmdet's ``AssignResult.add_gt_``: the ground truths prepended to ``bboxes``, assigned to themselves."""
    self_inds = torch.arange(1, gt_bboxes.shape[0] + 1, dtype=torch.long, device=bboxes.device)
    return torch.cat([gt_bboxes, bboxes]), AssignResult(
        assign.num_gts, torch.cat([self_inds, assign.gt_inds]),
        torch.cat([gt_bboxes.new_ones(gt_bboxes.shape[0]), assign.max_overlaps]),
        torch.cat([gt_labels.long(), assign.labels]))


def _random_choice(gallery: torch.Tensor, num: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    perm = torch.randperm(gallery.numel(), generator=generator)[:num].to(gallery.device)
    return gallery[perm]


def random_sample(assign: AssignResult, num: int, pos_fraction: float,
                  generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """mmdet's ``RandomSampler`` (``neg_pos_ub=-1``): (positive indices, negative indices), each sorted."""
    num_expected_pos = int(num * pos_fraction)
    pos = torch.nonzero(assign.gt_inds > 0, as_tuple=False).squeeze(1)
    if pos.numel() > num_expected_pos:
        pos = _random_choice(pos, num_expected_pos, generator)
    pos = pos.unique()
    num_expected_neg = num - pos.numel()
    neg = torch.nonzero(assign.gt_inds == 0, as_tuple=False).squeeze(1)
    if neg.numel() > num_expected_neg:
        neg = _random_choice(neg, num_expected_neg, generator)
    return pos, neg.unique()


def bbox2delta(proposals: torch.Tensor, gt: torch.Tensor, means: Sequence[float] = (0., 0., 0., 0.),
               stds: Sequence[float] = (1., 1., 1., 1.)) -> torch.Tensor:
    """Regression targets (k, 4) of boxes ``proposals`` (k, 4) towards ``gt`` (k, 4), mmdet 2.11's encoding."""
    proposals, gt = proposals.float(), gt.float()
    px, py = (proposals[:, 0] + proposals[:, 2]) * 0.5, (proposals[:, 1] + proposals[:, 3]) * 0.5
    pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    gx, gy = (gt[:, 0] + gt[:, 2]) * 0.5, (gt[:, 1] + gt[:, 3]) * 0.5
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
    return (deltas - deltas.new_tensor(means)) / deltas.new_tensor(stds)


def mask_targets(gt_masks: torch.Tensor, pos_bboxes: torch.Tensor, pos_gt_inds: torch.Tensor,
                 size: int = 28) -> torch.Tensor:
    """Binary float targets (k, size, size): the bitmaps ``gt_masks`` (m, H, W) of each positive box's ground truth
    (``pos_gt_inds``, 0-based) cropped to the box (k, 4) and resized, mmdet's ``crop_and_resize``."""
    if pos_bboxes.shape[0] == 0:
        return pos_bboxes.new_zeros((0, size, size))
    masks = gt_masks[pos_gt_inds].float()[:, None]
    rois = torch.cat([torch.arange(pos_bboxes.shape[0], dtype=pos_bboxes.dtype,
                                   device=pos_bboxes.device)[:, None], pos_bboxes.float()], dim=1)
    targets = roi_align(masks, rois, size, spatial_scale=1.0, sampling_ratio=0, aligned=True)[:, 0]
    return (targets >= 0.5).float()
