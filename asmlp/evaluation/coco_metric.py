"""Detections -> COCO results json -> box and mask AP, as mmdet 2.11 does it (open-mmlab/mmdetection
``mmdet/datasets/coco.py``: ``_segm2json``, ``xyxy2xywh``, ``evaluate``; masks encoded as
``mmdet/core/mask/utils.py`` ``encode_mask_results``) with pycocotools (cocodataset/cocoapi
``PythonAPI/pycocotools/cocoeval.py``).

- Per image, detections are grouped by label (0..79, stable: each label's in the detector's order), as mmdet's
  per-class arrays; ``category_id`` = ``cat_ids[label]`` (the annotation file's sorted ids); ``bbox`` =
  [x1, y1, x2 - x1, y2 - y1] of the float32 box (no +1); ``score`` = the box score.
- Masks: ``pycocotools.mask.encode`` of the uint8 Fortran-order mask, ``counts`` decoded to str; segm entries keep
  their ``bbox``, so ``loadRes`` gives them the box area (w * h) and APs/m/l of masks use box areas, as mmdet
  2.11's published numbers do (mmdet dropped the bbox from segm results only in v2.12).
- ``COCOeval`` with ``catIds`` and ``imgIds`` set and ``maxDets`` [100, 300, 1000]: AP = stats[0] (at 100
  detections); AP50, AP75, APs/m/l = stats[1..5] (at 1000, the same as at 100 when a detector keeps 100 per image).
  No detections at all: no numbers (mmdet logs "The testing results of the whole dataset is empty").
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ['MAX_DETS', 'IOU_TYPES', 'STAT_NAMES', 'AP_NAMES', 'ImageResult', 'encode_instances', 'to_coco_json',
           'coco_json', 'evaluate_json']

MAX_DETS = (100, 300, 1000)  # mmdet 2.11 CocoDataset.evaluate(proposal_nums=(100, 300, 1000))
IOU_TYPES = ('bbox', 'segm')
# cocoEval.stats with maxDets [100, 300, 1000] (mmdet's coco_metric_names: mAP, mAP_50, ..., AR_l@1000)
STAT_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR@100', 'AR@300', 'AR@1000', 'ARs@1000', 'ARm@1000',
              'ARl@1000')
AP_NAMES = STAT_NAMES[:6]


@dataclass
class ImageResult:
    """One image's detections, compact (what the processes send to rank 0): ``boxes`` (N, 4) float32 xyxy in image
    pixels, ``scores`` (N,) float32, ``labels`` (N,) int64 in 0..79, grouped by label; ``rles``: the masks as COCO
    RLE dicts (``counts`` a str), or None for a detector without masks."""
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    rles: Optional[list[dict]]

    def __len__(self) -> int:
        return len(self.scores)


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, 'detach'):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def encode_instances(instances: Any, height: int, width: int, num_classes: int = 80) -> ImageResult:
    """An ``Instances``-like prediction (``boxes`` (N, 4) xyxy, ``scores`` (N,), ``labels`` (N,) in 0..num_classes-1,
    ``masks`` (N, H, W) bool or None; numpy arrays or torch tensors) of an image of ``height`` x ``width`` as an
    :class:`ImageResult`; ValueError when the shapes or labels do not fit."""
    boxes = _numpy(instances.boxes).astype(np.float32).reshape(-1, 4)
    scores = _numpy(instances.scores).astype(np.float32).reshape(-1)
    labels = _numpy(instances.labels).astype(np.int64).reshape(-1)
    n = len(scores)
    if len(boxes) != n or len(labels) != n:
        raise ValueError(f'a prediction has {len(boxes)} boxes, {n} scores and {len(labels)} labels')
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f'prediction labels must be 0..{num_classes - 1}, got {labels.min()}..{labels.max()}')
    order = np.argsort(labels, kind='stable')  # mmdet's bbox2result / mask2result: per class, in detector order
    masks = getattr(instances, 'masks', None)
    rles = None
    if masks is not None:
        masks = _numpy(masks)
        if masks.shape != (n, height, width):
            raise ValueError(f'prediction masks are {masks.shape}, expected ({n}, {height}, {width}) for the image')
        from pycocotools import mask as mask_util
        encoded = mask_util.encode(np.asfortranarray(masks[order].transpose(1, 2, 0), dtype=np.uint8)) if n else []
        rles = [{'size': rle['size'], 'counts': rle['counts'].decode()} for rle in encoded]
    return ImageResult(boxes=boxes[order], scores=scores[order], labels=labels[order], rles=rles)


def to_coco_json(img_id: int, result: ImageResult, cat_ids: Sequence[int]) -> tuple[list[dict], list[dict]]:
    """The image's bbox and segm result entries (mmdet's ``_segm2json``; segm entries empty without masks)."""
    bbox_json, segm_json = [], []
    for i, (x1, y1, x2, y2) in enumerate(result.boxes.tolist()):  # float32 -> float, then the differences
        entry = {'image_id': img_id, 'bbox': [x1, y1, x2 - x1, y2 - y1], 'score': float(result.scores[i]),
                 'category_id': int(cat_ids[result.labels[i]])}
        bbox_json.append(entry)
        if result.rles is not None:
            segm_json.append({**entry, 'segmentation': result.rles[i]})
    return bbox_json, segm_json


def coco_json(results: Sequence[tuple[int, ImageResult]], cat_ids: Sequence[int]) -> dict[str, list[dict]]:
    """``{'bbox': [...], 'segm': [...]}``: the results json of ``(img_id, ImageResult)`` pairs in dataset order
    (segm only when the detector gives masks)."""
    out: dict[str, list[dict]] = {'bbox': [], 'segm': []}
    with_masks = all(r.rles is not None for _, r in results)
    for img_id, result in results:
        bbox_json, segm_json = to_coco_json(img_id, result, cat_ids)
        out['bbox'] += bbox_json
        out['segm'] += segm_json
    if not with_masks:
        del out['segm']
    return out


def evaluate_json(coco_gt, results: dict[str, list[dict]], img_ids: Sequence[int], cat_ids: Sequence[int]) -> dict:
    """COCOeval of each iou type in ``results`` as mmdet 2.11 runs it. Per type: ``{'stats': 12 floats (fractions,
    -1 where undefined), 'AP'...'ARl@1000': percent or None, 'summary': pycocotools' printed table}``, or
    ``{'stats': None, 'note': ...}`` when there are no detections."""
    from pycocotools.cocoeval import COCOeval
    out = {}
    for iou_type in IOU_TYPES:
        if iou_type not in results:
            continue
        if not results[iou_type]:
            out[iou_type] = {'stats': None, **{name: None for name in STAT_NAMES},
                             'note': 'no detections on the whole set (mmdet: "The testing results of the whole '
                                     'dataset is empty"): no numbers'}
            continue
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            coco_dt = coco_gt.loadRes([dict(entry) for entry in results[iou_type]])  # loadRes adds keys
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.params.catIds = list(cat_ids)
            evaluator.params.imgIds = list(img_ids)
            evaluator.params.maxDets = list(MAX_DETS)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = [float(s) for s in evaluator.stats]
        summary = [line for line in text.getvalue().splitlines() if line.startswith(' Average')]
        out[iou_type] = {'stats': stats, **{name: (100 * s if s >= 0 else None) for name, s in zip(STAT_NAMES, stats)},
                         'summary': summary}
    return out
