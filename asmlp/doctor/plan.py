"""The checks ``python -m asmlp doctor`` runs on this machine, by name, in order.

Names: ``backend/auto/<device>``, ``shift/<device>/<backend>/<dtype>``, ``fused/<device>/<dtype>``,
``demo/<model>/<device>/<precision>``, ``compile/<device>``; ``<device>`` is ``cpu`` or ``cuda:<index>``.
``quick`` skips the slow ones (the demo-model forwards on the CPU, and ``torch.compile``).
"""
from __future__ import annotations

from functools import partial

from .outcome import Check

__all__ = ['QUICK_SKIP', 'plan']

QUICK_SKIP = '--quick'
CPU_DEMO_PRECISIONS = ('bf16',)  # CPU fp32 is the reference itself; bf16 is what "auto" picks on a bf16 CPU
GPU_DEMO_PRECISIONS = ('fp32', 'fp16', 'bf16')


def plan(devices: list[str], quick: bool) -> list[Check]:
    """Every check for ``devices`` (``'cpu'`` first, then ``'cuda:<i>'``)."""
    from ..demo.recipes import DEMO_MODELS
    from .kernel_checks import DTYPES, check_auto, check_fused, check_shift
    from .model_checks import check_compile, check_demo
    checks = [Check(f'backend/auto/{device}', partial(check_auto, device)) for device in devices]
    for device in devices:
        backends = ('fast', 'triton') if device == 'cpu' else ('reference', 'fast', 'triton')
        checks += [Check(f'shift/{device}/{backend}/{dtype}', partial(check_shift, device, backend, dtype))
                   for backend in backends for dtype in DTYPES]
    for device in devices:
        checks += [Check(f'fused/{device}/{dtype}', partial(check_fused, device, dtype)) for dtype in DTYPES]
    for name in DEMO_MODELS:
        for device in devices:
            cpu = device == 'cpu'
            skip = f'{QUICK_SKIP}: demo-model forwards on the CPU are slow' if quick and cpu else None
            checks += [Check(f'demo/{name}/{device}/{precision}', partial(check_demo, name, device, precision), skip)
                       for precision in (CPU_DEMO_PRECISIONS if cpu else GPU_DEMO_PRECISIONS)]
    skip = f'{QUICK_SKIP}: torch.compile takes tens of seconds' if quick else None
    checks += [Check(f'compile/{device}', partial(check_compile, device), skip) for device in devices]
    return checks
