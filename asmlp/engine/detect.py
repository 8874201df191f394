"""Instances of one image from one COCO detector (:mod:`asmlp.detectors`), with the GPU out-of-memory fallback to
the CPU: :class:`Detection`."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..errors import first_line
from ..precision import autocast
from .cache import ModelCache, release_gpu
from .devices import resolve_precision

__all__ = ['Detection', 'detect_one']

log = logging.getLogger('asmlp.engine')


@dataclass
class Detection:
    """One detector's answer: ``instances`` (:class:`asmlp.models.detection.Instances`: boxes xyxy, scores,
    labels 0..79, masks at the image's size; mmdet's test ``score_thr`` applied, no other threshold), the weights'
    ``status``, the seconds of ``predict`` (preprocessing, inference, mask pasting), where it ran, and the size
    the detector saw (mmdet's keep-ratio resize into its ``img_scale``)."""
    name: str
    title: str
    instances: Any
    status: Any
    seconds: float
    device: str
    precision: str
    input_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def detect_one(models: ModelCache, image: np.ndarray, name: str, device: torch.device, precision: str,
               progress: Optional[Callable[[float, str], None]] = None, index: int = 0,
               count: int = 1) -> Detection:
    """``name``'s instances in ``image`` (HxWx3 uint8 RGB). On a CUDA out-of-memory error it runs again on the CPU
    (the GPU copy evicted), with a note."""
    from ..detectors import detector_entry
    from ..preprocess import rescale_size
    title = detector_entry(name)['title']
    if progress is not None:
        verb = 'Running' if models.contains(name, device) else 'Loading (first use) and running'
        progress(index / count, f'{verb} {title}')
    notes = []
    attempts = [(device, precision)]
    if device.type == 'cuda':
        attempts.append((torch.device('cpu'), precision if precision in ('fp32', 'bf16') else
                         resolve_precision('auto', torch.device('cpu'))))
    for k, (d, p) in enumerate(attempts):
        try:
            loaded = models.get(name, d)
            start = time.perf_counter()
            with torch.inference_mode(), autocast(d, p):
                instances = loaded.model.predict(image)
            seconds = time.perf_counter() - start
            break
        except torch.cuda.OutOfMemoryError as error:
            if k == len(attempts) - 1:
                raise
            why = first_line(error, 120)
        models.drop((name, str(d)))  # out of the except block: the failed forward's tensors are released
        release_gpu()
        notes.append(f'GPU out of memory ({why}); ran on the CPU instead (slower)')
        log.warning('%s: %s', name, notes[-1])
    if loaded.degraded:
        notes.append(f'weights: {first_line(loaded.status.problems[0])} — looked up again on a request after '
                     f'{models.retry_after:g} s')
    size = rescale_size(image.shape[0], image.shape[1], loaded.model.img_scale)
    return Detection(name=name, title=title, instances=instances, status=loaded.status, seconds=seconds,
                     device=d.type, precision=p, input_size=tuple(size), notes=notes)
