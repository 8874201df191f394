"""Segmentation of one image by one model, with the GPU out-of-memory ladder, and the timings that estimate what
a request will cost (MS+flip included) before it runs."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from .. import viz
from ..errors import first_line
from ..precision import autocast
from .cache import ModelCache, release_gpu
from .devices import resolve_precision

__all__ = ['Segmentation', 'Timings', 'segment_one', 'inference_size', 'measure_view_cost']

log = logging.getLogger('asmlp.engine')
ADE20K_CLASSES = 150


@dataclass
class Segmentation:
    name: str
    title: str
    labels: np.ndarray
    status: Any
    seconds: float
    device: str
    precision: str
    input_size: tuple[int, int]
    legend: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what happened on the way (GPU out of memory, weights retry)


def inference_size(image_shape, short_side: int) -> tuple[int, int]:
    """The (height, width) a model sees for an image of ``image_shape`` at test short side ``short_side`` (mmseg's
    keep-ratio resize into (4 S, S))."""
    from ..preprocess import rescale_size
    return rescale_size(*image_shape[:2], (4 * int(short_side), int(short_side)))


def measure_view_cost(device: torch.device, size: tuple[int, int] = (256, 256), classes: int = ADE20K_CLASSES,
                      repeat: int = 3) -> float:
    """Seconds per image pixel of what each MS+flip view does at the image's size besides the network: resize
    ``classes`` logits to the image (bilinear, :func:`asmlp.models.label_maps.resize_logits`), softmax them and add
    them to the running sum (:func:`asmlp.models.tta.ms_flip_probabilities`). Measured on a ``size`` canvas from
    eighth-size logits, the best of ``repeat``: tens of milliseconds."""
    from ..models.label_maps import resize_logits
    device = torch.device(device)
    logits = torch.randn(1, classes, size[0] // 8, size[1] // 8, device=device)
    total = torch.zeros(1, classes, *size, device=device)
    best = math.inf
    with torch.inference_mode():
        for _ in range(repeat):
            start = time.perf_counter()
            total.add_(resize_logits(logits, size).softmax(dim=1))
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
    return best / (size[0] * size[1])


class Timings:
    """Seconds of each model's last run, keyed by (name, device type, precision, inference size, augmentation), and
    the estimates made from them (:meth:`estimate`)."""

    def __init__(self):
        self._seconds: dict[tuple, float] = {}
        self._view_cost: dict[str, float] = {}  # device type -> seconds per image pixel of one MS+flip view

    def record(self, name: str, device: torch.device, precision: str, size: tuple[int, int], aug: str,
               seconds: float) -> None:
        self._seconds[(name, torch.device(device).type, precision, tuple(size), aug)] = seconds

    def seconds(self, name: str, device: torch.device, precision: str, size: tuple[int, int],
                aug: str = 'none') -> Optional[float]:
        return self._seconds.get((name, torch.device(device).type, precision, tuple(size), aug))

    def view_cost(self, device: torch.device) -> float:
        """:func:`measure_view_cost` on ``device``'s type, measured on first use (the engine does it with the turn
        of the first MS+flip request; an estimate asked for before that measures it then)."""
        kind = torch.device(device).type
        if kind not in self._view_cost:
            self._view_cost[kind] = measure_view_cost(torch.device(device))
        return self._view_cost[kind]

    def estimate(self, image_shape, names, device: torch.device, precision: str, short_side: int,
                 aug: str = 'none') -> Optional[float]:
        """The model time of a request: per model its last time with the same device, precision, inference size
        and augmentation; for MS+flip never run at that size yet, :func:`asmlp.models.tta.cost_factor` (17.375) x
        its single-scale time plus 12 views x :meth:`view_cost` x the image's pixels (each view resizes and
        softmaxes 150 classes at the image's size, which single scale avoids). None while a model has no time."""
        from ..models.tta import MS_RATIOS, cost_factor
        size = inference_size(image_shape, short_side)
        total = 0.0
        for name in names:
            seconds = self.seconds(name, device, precision, size, aug)
            if seconds is None:
                single = self.seconds(name, device, precision, size, 'none')
                if single is None:
                    return None
                seconds = cost_factor(aug) * single
                if aug == 'ms-flip':
                    views = 2 * len(MS_RATIOS)
                    seconds += views * self.view_cost(device) * image_shape[0] * image_shape[1]
            total += seconds
        return total


def segment_one(models: ModelCache, timings: Timings, image: np.ndarray, name: str, device: torch.device,
                precision: str, short_side: int, aug: str = 'none',
                progress: Optional[Callable[[float, str], None]] = None, index: int = 0,
                count: int = 1) -> Segmentation:
    """``name``'s label map (uint8 when it fits) of ``image`` at the image's size. On a CUDA out-of-memory error
    the model runs again at half the short side on the GPU, then on the CPU (the GPU copy evicted), each with a
    note; the failed forward's memory is released outside the ``except`` block (its traceback pins it)."""
    from ..models.tta import segment as tta_segment
    from ..zoo import model_entry
    title = model_entry(name)['title']
    if progress is not None:
        verb = 'Running' if models.contains(name, device) else 'Loading (first use) and running'
        progress(index / count, f'{verb} {title}')
    attempts = [(device, precision, short_side)]
    if device.type == 'cuda':
        if short_side // 2 >= 64:
            attempts.append((device, precision, short_side // 2))
        attempts.append((torch.device('cpu'), precision if precision in ('fp32', 'bf16') else
                         resolve_precision('auto', torch.device('cpu')), short_side))
    notes = []
    for k, (d, p, s) in enumerate(attempts):
        try:
            loaded = models.get(name, d)
            start = time.perf_counter()
            with torch.inference_mode(), autocast(d, p):
                labels = tta_segment(loaded.model, image, aug, s)
            seconds = time.perf_counter() - start
            timings.record(name, d, p, inference_size(image.shape, s), aug, seconds)
            break
        except torch.cuda.OutOfMemoryError as error:
            if d.type != 'cuda' or k == len(attempts) - 1:
                raise
            why = first_line(error, 120)
        # out of the except block: the error's traceback (and the tensors its frames hold) is gone
        next_device, _, next_short = attempts[k + 1]
        if next_device.type == 'cpu':
            models.drop((name, str(d)))  # also frees the model's GPU memory
        release_gpu()
        notes.append(f'GPU out of memory at short side {s} px ({why}); ' +
                     (f'ran at {next_short} px instead' if next_device.type == 'cuda'
                      else 'ran on the CPU instead (slower)'))
        log.warning('%s: %s', name, notes[-1])
    if loaded.degraded:
        notes.append(f'weights: {first_line(loaded.status.problems[0])} — looked up again on a request after '
                     f'{models.retry_after:g} s')
    labels = np.asarray(labels)
    if labels.size and 0 <= labels.min() and labels.max() < 256:
        labels = labels.astype(np.uint8)
    return Segmentation(name=name, title=title, labels=labels, status=loaded.status, seconds=seconds,
                        device=d.type, precision=p, input_size=inference_size(image.shape, s),
                        legend=viz.legend(labels), notes=notes)
