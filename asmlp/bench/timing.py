"""Wall-clock timing of warm runs, and a description of the machine they ran on."""
from __future__ import annotations

import platform
import time
from typing import Callable

import torch

from ..engine.timing import Timing, summarize  # noqa: F401  (public here too)


def time_fn(fn: Callable[[], object], warmup: int = 20, repeat: int = 200, max_seconds: float = 10.,
            device: torch.device | str | None = None) -> Timing:
    """Median and 10th/90th percentiles of ``fn()`` after ``warmup`` calls (stops early after ``max_seconds``).

    On a CUDA ``device`` each call is bracketed by CUDA events (the GPU's time from the first to the last kernel
    the call queued; the queue is drained before each call), elsewhere by the wall clock.
    """
    cuda = device is not None and torch.device(device).type == 'cuda'
    for _ in range(warmup):
        fn()
    samples = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < repeat and (len(samples) < 3 or time.perf_counter() < deadline):
        if cuda:
            torch.cuda.synchronize(device)
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(begin.elapsed_time(end))
        else:
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
    return summarize(samples)


def check_device(name: str) -> torch.device:
    """``name`` as a torch device that exists here (``cpu``, ``cuda``, ``cuda:1``), else a one-line ValueError."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f'unknown device {name!r} (cpu or cuda[:index]): {error}') from None
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'device {name!r}: no CUDA GPU on this machine (torch {torch.__version__})')
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ValueError(f'device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)')
        return torch.device('cuda', index)
    if device.type != 'cpu':
        raise ValueError(f'device {name!r}: the benchmarks run on cpu or cuda')
    return device


def device_description(device: torch.device) -> str:
    """The GPU's name and torch's TF32 settings for a CUDA device, else the CPU description."""
    if device.type != 'cuda':
        return machine_description()
    return (f'{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}; fp32 '
            f'matmul precision {torch.get_float32_matmul_precision()!r}, cuDNN TF32 '
            f'{"on" if torch.backends.cudnn.allow_tf32 else "off"}; host: {machine_description()}')


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
