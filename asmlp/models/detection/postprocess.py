"""Detection post-processing of mmdet 2.11: per-class NMS of the R-CNN boxes and the mask paste.

* :func:`multiclass_nms`: mmdet ``mmdet/core/post_processing/bbox_nms.py`` (github.com/open-mmlab/mmdetection
  v2.11.0): the background column (last) dropped; every (box, class) pair with score **> score_thr** kept; NMS per
  class (mmcv ``batched_nms``; here ``torchvision.ops.batched_nms``, the same per-group greedy NMS with IoU > thr
  suppressing); the first ``max_num`` by decreasing score.
* :func:`do_paste_mask` / :func:`paste_masks`: mmdet ``mmdet/models/roi_heads/mask_heads/fcn_mask_head.py``
  ``_do_paste_mask`` and ``get_seg_masks``: every image pixel centre (i + 0.5) is mapped into the box as
  ``(c - x0) / (x1 - x0) * 2 - 1`` and the 28x28 probability map is sampled there with ``F.grid_sample``
  (bilinear, zero padding, ``align_corners=False``); infinite coordinates (empty boxes) become 0; then ``>= thr``.
  As mmdet does on a CPU, each mask is pasted only over its box's bounding pixels plus one (``skip_empty``); at
  thresholds >= 0.5 this equals pasting over the whole image (mmdet's GPU path), since a pixel centre more than half
  a mask cell outside the box samples less than half of one cell.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

__all__ = ['multiclass_nms', 'do_paste_mask', 'paste_masks']


def multiclass_nms(multi_bboxes: torch.Tensor, multi_scores: torch.Tensor, score_thr: float, iou_threshold: float,
                   max_num: int = -1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes (n, 4 * C) or (n, 4), scores (n, C + 1) with background last -> (dets (k, 5), labels (k,), the kept
    rows' indices into the flattened (n * C) candidates)."""
    num_classes = multi_scores.shape[1] - 1
    if multi_bboxes.shape[1] > 4:
        bboxes = multi_bboxes.view(multi_scores.shape[0], -1, 4)
    else:
        bboxes = multi_bboxes[:, None].expand(multi_scores.shape[0], num_classes, 4)
    scores = multi_scores[:, :-1]
    labels = torch.arange(num_classes, dtype=torch.long, device=scores.device).view(1, -1).expand_as(scores)
    bboxes, scores, labels = bboxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    inds = (scores > score_thr).nonzero(as_tuple=False).squeeze(1)
    bboxes, scores, labels = bboxes[inds], scores[inds], labels[inds]
    if bboxes.numel() == 0:
        return bboxes.new_zeros(0, 5), labels, inds
    keep = batched_nms(bboxes, scores, labels, iou_threshold)
    if max_num > 0:
        keep = keep[:max_num]
    return torch.cat([bboxes[keep], scores[keep, None]], dim=1), labels[keep], inds[keep]


def do_paste_mask(masks: torch.Tensor, boxes: torch.Tensor, img_h: int, img_w: int, skip_empty: bool = True
                  ) -> tuple[torch.Tensor, tuple]:
    """mmdet's ``_do_paste_mask``: masks (N, 1, h, w) sampled at the pixels of boxes (N, 4) -> (N, h', w') values
    and the (rows, cols) slices they cover (the whole image when ``skip_empty`` is False)."""
    device = masks.device
    if skip_empty:
        x0_int, y0_int = torch.clamp(boxes.min(dim=0).values.floor()[:2] - 1, min=0).to(dtype=torch.int32)
        x1_int = torch.clamp(boxes[:, 2].max().ceil() + 1, max=img_w).to(dtype=torch.int32)
        y1_int = torch.clamp(boxes[:, 3].max().ceil() + 1, max=img_h).to(dtype=torch.int32)
        x0_int, y0_int, x1_int, y1_int = int(x0_int), int(y0_int), int(x1_int), int(y1_int)
    else:
        x0_int, y0_int, x1_int, y1_int = 0, 0, img_w, img_h
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)
    n = masks.shape[0]
    img_y = torch.arange(y0_int, y1_int, device=device, dtype=torch.float32) + 0.5
    img_x = torch.arange(x0_int, x1_int, device=device, dtype=torch.float32) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    img_x = torch.where(torch.isinf(img_x), torch.zeros_like(img_x), img_x)
    img_y = torch.where(torch.isinf(img_y), torch.zeros_like(img_y), img_y)
    gx = img_x[:, None, :].expand(n, img_y.shape[1], img_x.shape[1])
    gy = img_y[:, :, None].expand(n, img_y.shape[1], img_x.shape[1])
    grid = torch.stack([gx, gy], dim=3)
    pasted = F.grid_sample(masks.to(dtype=torch.float32), grid, align_corners=False)
    if skip_empty:
        return pasted[:, 0], (slice(y0_int, y1_int), slice(x0_int, x1_int))
    return pasted[:, 0], ()


def paste_masks(mask_probs: torch.Tensor, boxes: torch.Tensor, img_h: int, img_w: int,
                threshold: float = 0.5) -> torch.Tensor:
    """Probability maps (N, 1, h, w) of boxes (N, 4) in an ``img_h`` x ``img_w`` image -> bool masks (N, H, W)."""
    if not threshold >= 0.5:
        raise ValueError(f'the mask threshold must be >= 0.5 (mmdet configs: 0.5), got {threshold}')
    out = torch.zeros(mask_probs.shape[0], img_h, img_w, dtype=torch.bool, device=mask_probs.device)
    for i in range(mask_probs.shape[0]):
        values, (rows, cols) = do_paste_mask(mask_probs[i:i + 1], boxes[i:i + 1], img_h, img_w, skip_empty=True)
        out[i, rows, cols] = values[0] >= threshold
    return out
