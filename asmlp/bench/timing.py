"""Wall-clock timing of warm runs, and a description of the machine they ran on."""
from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    def __str__(self) -> str:
        return f'{self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, n={self.runs})'


def time_fn(fn: Callable[[], object], warmup: int = 20, repeat: int = 200, max_seconds: float = 10.) -> Timing:
    """Median and 10th/90th percentiles of ``fn()`` after ``warmup`` calls (stops early after ``max_seconds``)."""
    for _ in range(warmup):
        fn()
    samples = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < repeat and (len(samples) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return summarize(samples)


def summarize(samples_ms: list[float]) -> Timing:
    """Median and 10th/90th percentiles of timings in milliseconds."""
    deciles = statistics.quantiles(samples_ms, n=10) if len(samples_ms) > 1 else list(samples_ms) * 9
    return Timing(statistics.median(samples_ms), deciles[0], deciles[-1], len(samples_ms))


def machine_description() -> str:
    """CPU model, core count, torch version and thread count, for benchmark reports."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    import os
    return (f'{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, '
            f'{torch.get_num_threads()} threads, Python {platform.python_version()}')
