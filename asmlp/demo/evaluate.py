"""Held-out evaluation of a segmenter on generated scenes: per-class IoU over the scene classes, and their mean."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..preprocess import ADE20K_MEAN, ADE20K_STD
from ..synthetic import SCENE_CLASSES, generate_batch, heldout_seeds
from .recipes import DEMO_SIZE, EVAL_SCENES

__all__ = ['IoUReport', 'to_tensor', 'predict_batch', 'iou_report', 'evaluate']


@dataclass(frozen=True)
class IoUReport:
    """``iou``: class name -> IoU (None when the class is neither in the labels nor predicted); ``miou``: mean over
    the scene classes that occur; ``pixel_accuracy``; ``scenes``: how many scenes."""
    iou: dict[str, Optional[float]]
    miou: float
    pixel_accuracy: float
    scenes: int

    def as_dict(self) -> dict:
        return {'miou': round(self.miou, 4), 'pixel_accuracy': round(self.pixel_accuracy, 4), 'scenes': self.scenes,
                'iou': {k: None if v is None else round(v, 4) for k, v in self.iou.items()}}


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> normalised float32 (N, 3, H, W), as :func:`asmlp.preprocess.preprocess`."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(ADE20K_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(ADE20K_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.inference_mode()
def predict_batch(model: nn.Module, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Label maps (N, H, W) int64 for (N, H, W, 3) uint8 images at their own size (eval mode, fp32)."""
    was_training = model.training
    model.eval()
    try:
        out = [model(to_tensor(images[i:i + batch_size])).argmax(1).numpy()
               for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(out)


def iou_report(pred: np.ndarray, labels: np.ndarray, classes: dict[str, int] = SCENE_CLASSES) -> IoUReport:
    """IoU per class summed over all pixels of all scenes (intersections / unions of the whole set)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    iou = {}
    for name, index in classes.items():
        p, t = pred == index, labels == index
        union = int(np.count_nonzero(p | t))
        iou[name] = int(np.count_nonzero(p & t)) / union if union else None
    present = [v for v in iou.values() if v is not None]
    return IoUReport(iou=iou, miou=float(np.mean(present)) if present else 0.0,
                     pixel_accuracy=float(np.mean(pred == labels)), scenes=len(labels))


def evaluate(model: nn.Module, scenes: int = EVAL_SCENES, size: int = DEMO_SIZE,
             seeds: Optional[Sequence] = None) -> IoUReport:
    """IoU of ``model`` on the held-out scenes ``heldout_seeds(scenes)`` (or ``seeds``) at ``size``."""
    images, labels = generate_batch(heldout_seeds(scenes) if seeds is None else seeds, size)
    return iou_report(predict_batch(model, images), labels)
