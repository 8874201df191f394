"""mmseg's segmentation metrics (mmseg 0.11 ``core/evaluation/metrics.py``, as vendored by the Swin and AS-MLP
segmentation repos): per image, histograms over the classes of the intersection, the prediction and the label,
restricted to pixels whose label is not ``ignore_index``; the four vectors summed over the dataset (int64 here:
exact at any dataset size, where float32 counts stop being exact past 2**24); then ``IoU_c = I_c / U_c``,
``Acc_c = I_c / L_c``, ``aAcc = sum(I) / sum(L)``, and mIoU / mAcc the ``nanmean`` over classes (a class with an
empty union has a NaN IoU and is left out of the mean; one predicted but absent from the labels counts with IoU 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

__all__ = ['IGNORE_INDEX', 'NUM_CLASSES', 'Totals', 'intersect_and_union', 'summarize']

NUM_CLASSES = 150  # ADE20K SceneParsing
IGNORE_INDEX = 255


def intersect_and_union(pred: np.ndarray, label: np.ndarray, num_classes: int = NUM_CLASSES,
                        ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(4, num_classes) int64: intersection, union, prediction and label pixel counts per class of one image.

    ``pred``: HxW class indices 0..num_classes-1; ``label``: HxW class indices (already zero-reduced for ADE20K)
    where ``ignore_index`` marks pixels that are not scored. Any other label value is an error.
    """
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f'prediction {pred.shape} and label {label.shape} sizes differ')
    keep = label != ignore_index
    pred, label = pred[keep].astype(np.int64), label[keep].astype(np.int64)
    for what, values in (('prediction', pred), ('label', label)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f'{what} values must be class indices 0..{num_classes - 1} (or {ignore_index} in the '
                             f'label), got {int(values.min())}..{int(values.max())}')
    area_pred = np.bincount(pred, minlength=num_classes)
    area_label = np.bincount(label, minlength=num_classes)
    area_intersect = np.bincount(pred[pred == label], minlength=num_classes)
    return np.stack([area_intersect, area_pred + area_label - area_intersect, area_pred, area_label])


@dataclass
class Totals:
    """Dataset sums of :func:`intersect_and_union` (rows: intersection, union, prediction, label) and how many
    images went into them."""
    num_classes: int = NUM_CLASSES
    areas: np.ndarray = field(default=None)
    images: int = 0

    def __post_init__(self):
        if self.areas is None:
            self.areas = np.zeros((4, self.num_classes), dtype=np.int64)
        self.areas = np.asarray(self.areas, dtype=np.int64).reshape(4, self.num_classes)

    def add(self, areas: np.ndarray, images: int = 1) -> 'Totals':
        self.areas += np.asarray(areas, dtype=np.int64)
        self.images += images
        return self

    def summary(self, class_names: Optional[Sequence[str]] = None) -> dict:
        return summarize(self.areas, class_names)


def summarize(areas: np.ndarray, class_names: Optional[Sequence[str]] = None) -> dict:
    """``aAcc``, ``mIoU``, ``mAcc`` (x100, two decimals, as mmseg prints them; None when nothing was scored) and
    per class ``IoU`` / ``Acc`` (x100, None for NaN) of dataset sums ``areas`` (4, C)."""
    intersect, union, _, label = np.asarray(areas, dtype=np.int64)
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = intersect / union
        acc = intersect / label
        aacc = intersect.sum() / label.sum() if label.sum() else np.nan

    def pct(value) -> Optional[float]:
        return None if np.isnan(value) else round(float(value) * 100, 2)

    def nanmean(values) -> float:
        return np.nan if np.isnan(values).all() else float(np.nanmean(values))

    names = list(class_names) if class_names is not None else [str(i) for i in range(len(iou))]
    return {'aAcc': pct(aacc), 'mIoU': pct(nanmean(iou)), 'mAcc': pct(nanmean(acc)),
            'classes_scored': int(np.count_nonzero(union)),
            'per_class': {n: {'IoU': pct(i), 'Acc': pct(a)} for n, i, a in zip(names, iou, acc)}}
