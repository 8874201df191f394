"""Peak activation memory of a forward: the bytes of the tensors it creates that are alive at the same time.

Parameters, buffers and the input are not counted (they exist before the call and are reported separately).
CPU and meta tensors: torch's ``MemTracker`` (a ``TorchDispatchMode`` that follows every storage an op creates
until it is freed); it is exact for the tensors and independent of the allocator, which keeps freed memory for
reuse (``asmlp/allocator.py``) so that the process's resident size no longer grows. CUDA:
``torch.cuda.max_memory_allocated`` above what was allocated before the call.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.distributed._tools.mem_tracker import MemTracker

__all__ = ['peak_activation_bytes']


def peak_activation_bytes(forward: Callable[[], object], *existing, device: torch.device | str = 'cpu') -> int:
    """Peak bytes of the tensors ``forward()`` creates (activations and temporaries, its output included), on
    ``device``. ``existing``: modules and tensors that exist before the call (the model, the input), never counted.
    What ``forward`` returns is released before this returns."""
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        forward()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    tracker = MemTracker()
    if existing:
        tracker.track_external(*existing)
    with tracker:
        forward()
    peak = tracker.get_tracker_snapshot('peak').get(device, {})
    return int(sum(value for key, value in peak.items() if key in ('Activation', 'Temp')))
