"""Timings of warm runs: median and 10th / 90th percentiles (the engine's measurements, ``python -m asmlp bench``)."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ['Timing', 'summarize', 'time_calls']


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    def __str__(self) -> str:
        return f'{self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, n={self.runs})'


def summarize(samples_ms: list[float]) -> Timing:
    """Median and 10th/90th percentiles of timings in milliseconds."""
    deciles = statistics.quantiles(samples_ms, n=10) if len(samples_ms) > 1 else list(samples_ms) * 9
    return Timing(statistics.median(samples_ms), deciles[0], deciles[-1], len(samples_ms))


def time_calls(fn: Callable[[], None], runs: int, device) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``fn`` (at least one); CUDA events on a GPU."""
    import torch
    times = []
    for _ in range(max(1, runs)):
        if torch.device(device).type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times
