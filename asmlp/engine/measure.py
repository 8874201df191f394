"""Measurements of a model on this machine beside the papers' numbers: warm latency, GMACs, parameters and the
peak activation memory of one timed forward (:func:`asmlp.memory.peak_activation_bytes`), with the same counted
on the meta device at the papers' 512x2048 (:func:`asmlp.counts_cache.cached_segmenter_metrics`)."""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch

from ..precision import autocast
from .cache import ModelCache
from .timing import summarize, time_calls

__all__ = ['Measurement', 'measure_one', 'PAPER_SIZE']

PAPER_SIZE = (512, 2048)  # the papers' GMACs and the counted memory are at 512x2048 (H x W)


@dataclass(frozen=True)
class Measurement:
    name: str
    device: str
    precision: str
    input: str                      # 'HxW' the model saw
    latency_ms: float               # median of the timed runs
    p10_ms: float
    p90_ms: float
    runs: int
    gmacs: float                    # at the input size (counted)
    gmacs_512x2048: float           # counted at the papers' size
    params: int
    activation_mib: float           # peak activation memory of one timed forward, measured
    param_mib: float
    activation_mib_512x2048: float  # counted in fp32 on the meta device
    paper_params: Optional[float]
    paper_gmacs: Optional[float]
    paper_miou_ss: Optional[float]
    paper_miou_ms: Optional[float]

    def as_dict(self) -> dict:
        """The fields as a dict (the rows of :func:`asmlp.report.metrics_table` and of the API's table)."""
        return asdict(self)


@functools.lru_cache(maxsize=256)
def _counted(name: str, size: tuple[int, int]) -> dict:
    from ..counts_cache import cached_segmenter_metrics
    return cached_segmenter_metrics(name, size)


def measure_one(models: ModelCache, name: str, x: torch.Tensor, device: torch.device, precision: str,
                runs: int) -> Measurement:
    """Measure the zoo model ``name`` on the preprocessed input ``x`` (already on ``device``): one warm-up, ``runs``
    timed forwards (CUDA events on a GPU), one forward under the memory tracker."""
    from ..memory import peak_activation_bytes
    loaded = models.get(name, device)

    def forward():
        with torch.inference_mode(), autocast(device, precision):
            loaded.model(x)
        if device.type == 'cuda':
            torch.cuda.synchronize()
    forward()  # warm-up
    timing = summarize(time_calls(forward, runs, device))
    at_size = _counted(name, tuple(x.shape[-2:]))
    paper = _counted(name, PAPER_SIZE)
    return Measurement(
        name=name, device=device.type, precision=precision, input=f'{x.shape[-2]}x{x.shape[-1]}',
        latency_ms=timing.median_ms, p10_ms=timing.p10_ms, p90_ms=timing.p90_ms, runs=timing.runs,
        gmacs=at_size['gmacs'], gmacs_512x2048=paper['gmacs'], params=at_size['params'],
        activation_mib=peak_activation_bytes(forward, loaded.model, x, device=device) / 2**20,
        param_mib=at_size['param_mib'], activation_mib_512x2048=paper['activation_mib'],
        paper_params=paper['paper_params'], paper_gmacs=paper['paper_gmacs'], paper_miou_ss=paper['paper_miou_ss'],
        paper_miou_ms=paper['paper_miou_ms'])


def model_input(image: np.ndarray, short_side: int, device: torch.device) -> torch.Tensor:
    """The image as the models take it (mmseg preprocessing at test short side ``short_side``), channels-last on
    ``device``, as :meth:`asmlp.models.segmenter.Segmenter.predict` feeds it."""
    from ..preprocess import preprocess
    return preprocess(image, (4 * int(short_side), int(short_side))).to(device).contiguous(
        memory_format=torch.channels_last)
