"""Single-scale and multi-scale + flip test-time inference of a :class:`~asmlp.models.segmenter.Segmenter`, the one
code path of ``evaluate``, ``predict`` and the app.

- ``none`` (single scale): keep-ratio resize into the model's test scale ``(4 * short_side, short_side)`` (mmseg's
  (2048, 512) for the ADE20K models; zoo ``inference.short_side``), whole or slide inference, logits resized to
  the image, argmax (:meth:`Segmenter.predict`).
- ``ms-flip`` (mmseg 0.x ``tools/test.py --aug-test``): scales ``(int(long * r), int(short * r))`` for r in
  :data:`MS_RATIOS` (``pipelines/test_time_aug.py``), each unflipped and horizontally flipped: 12 views. Each view
  runs by the model's inference mode (slide crops keep their size in pixels), its logits are resized to the
  image, softmaxed and un-flipped (``EncoderDecoder.inference``); the probabilities are averaged and the argmax
  taken (``EncoderDecoder.aug_test``). The network sees :func:`cost_factor` (about 17.4x) the pixels of a
  single-scale pass; each view also resizes and softmaxes all classes at the image's size.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..preprocess import check_rgb_image, preprocess
from .label_maps import resize_logits

__all__ = ['AUGS', 'MS_RATIOS', 'aug_scales', 'cost_factor', 'ms_flip_probabilities', 'segment', 'img_scale']

AUGS = ('none', 'ms-flip')
MS_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # mmseg 0.x tools/test.py --aug-test


def img_scale(short_side: int) -> tuple[int, int]:
    """mmseg's img_scale (long side cap, short side) for a test short side: (2048, 512) for 512."""
    return (4 * int(short_side), int(short_side))


def aug_scales(short_side: int, ratios: Sequence[float] = MS_RATIOS) -> list[tuple[int, int]]:
    """The MS scales of ``MultiScaleFlipAug``: ``(int(long * r), int(short * r))``."""
    long, short = img_scale(short_side)
    return [(int(long * r), int(short * r)) for r in ratios]


def cost_factor(aug: str, ratios: Sequence[float] = MS_RATIOS) -> float:
    """Pixels processed relative to one single-scale pass: 1 for 'none', sum(2 r^2) = 17.375 for 'ms-flip'."""
    _check_aug(aug)
    return 1.0 if aug == 'none' else float(sum(2 * r * r for r in ratios))


def _check_aug(aug: str) -> None:
    if aug not in AUGS:
        raise ValueError(f'test-time augmentation must be one of {AUGS}, got {aug!r}')


@torch.inference_mode()
def ms_flip_probabilities(model, image: np.ndarray, scales: Sequence[tuple[int, int]],
                          flip: bool = True) -> torch.Tensor:
    """(1, C, H, W) float32 class probabilities of an RGB uint8 image averaged over the views: every scale,
    unflipped and (``flip``) flipped; at the image's size (H, W)."""
    height, width = check_rgb_image(image).shape[:2]
    param = next(model.parameters())
    total, views = None, 0
    for scale in scales:
        x = preprocess(image, scale).to(device=param.device, dtype=param.dtype)
        for flipped in ((False, True) if flip else (False,)):
            view = (x.flip(-1) if flipped else x).contiguous(memory_format=torch.channels_last)
            probs = _class_softmax(resize_logits(model(view), (height, width)))
            if flipped:
                probs = probs.flip(-1)
            probs = probs.contiguous(memory_format=torch.channels_last)  # one layout: the sum runs at copy speed
            total = probs if total is None else total.add_(probs)
            views += 1
    return total.div_(views)


def _class_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes (dim 1) of NCHW logits, float32 at least; channels_last logits (classes innermost)
    are normalised along their contiguous dimension (4x faster on the CPU than softmax(dim=1) on that layout)."""
    logits = logits.float() if logits.dtype != torch.float64 else logits
    if logits.is_contiguous(memory_format=torch.channels_last) and not logits.is_contiguous():
        return logits.permute(0, 2, 3, 1).softmax(-1).permute(0, 3, 1, 2)
    return logits.softmax(dim=1)


def segment(model, image: np.ndarray, aug: str = 'none', short_side: Optional[int] = None) -> np.ndarray:
    """Label map (H, W) int64 of an RGB uint8 image: ``aug`` 'none' or 'ms-flip' at test short side ``short_side``
    (default: the model's ``inference.short_side``)."""
    _check_aug(aug)
    short = int(short_side or model.inference.short_side)
    if aug == 'none':
        return model.predict(image, scale=img_scale(short))
    return ms_flip_probabilities(model, image, aug_scales(short)).argmax(1)[0].cpu().numpy()
