"""Precision choices for inference: which CPUs run bfloat16 natively, and the matching autocast context."""
from __future__ import annotations

import contextlib
import functools

import torch

PRECISIONS = ('fp32', 'bf16', 'fp16')


@functools.lru_cache(maxsize=1)
def cpu_bf16_supported() -> bool:
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


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``precision`` ('fp32': no autocast, 'bf16', 'fp16') on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if precision == 'fp32':
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16 if precision == 'bf16' else torch.float16)
