"""Precision choices for inference: which CPUs run bfloat16 natively, and the matching autocast context.

``$ASMLP_CPU_BF16`` (``0`` or ``1``) overrides the CPU detection, so that tests, benchmarks and subprocesses can force
either path on any machine: ``0`` makes precision 'auto' fp32 on a CPU with native bf16, ``1`` makes it bf16 where
the CPU has none (torch then emulates bf16: correct, only slower).
"""
from __future__ import annotations

import contextlib
import functools
import os

import torch

PRECISIONS = ('fp32', 'bf16', 'fp16')
CPU_BF16_ENV = 'ASMLP_CPU_BF16'


@functools.lru_cache(maxsize=1)
def cpu_bf16_native() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    checks = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')
    if any(getattr(torch.cpu, name, lambda: False)() for name in checks):
        return True
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
    except OSError:
        return False
    return ' avx512_bf16' in flags or ' amx_bf16' in flags


def cpu_bf16_supported() -> bool:
    """Whether CPU inference should use bf16 for precision 'auto': ``$ASMLP_CPU_BF16`` when set, else
    :func:`cpu_bf16_native`."""
    forced = os.environ.get(CPU_BF16_ENV, '').strip()
    if forced in ('0', '1'):
        return forced == '1'
    if forced:
        raise ValueError(f'{CPU_BF16_ENV} must be 0 or 1 (or unset to detect the CPU), got {forced!r}')
    return cpu_bf16_native()


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``precision`` ('fp32': no autocast, 'bf16', 'fp16') on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if precision == 'fp32':
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16 if precision == 'bf16' else torch.float16)
