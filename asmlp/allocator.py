"""glibc malloc settings for CPU inference: freed activation buffers stay in the process for reuse.

By default glibc serves allocations above a (dynamic) threshold with fresh ``mmap`` pages and gives them back on
``free``; every large activation then pays the kernel's page faults and zeroing on first touch -- filling a fresh
210 MB tensor takes ~72 ms on the 2-core EPYC VM of BENCHMARKS.md, filling it again 7 ms. Raising the mmap threshold to
its 64-bit maximum (32 MiB) and the trim threshold keeps those buffers in the heap: the three T/S segmenters at
512x683 (bf16) ran in 3.55-3.73 s instead of 3.83-3.97 s. The price is a resident size that stays at its peak.
"""
from __future__ import annotations

import ctypes
import logging
import platform
import sys

__all__ = ['keep_freed_memory']

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit for this setting on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 2 ** 31 - 1  # the largest value mallopt takes (an int): in effect, never trim


def keep_freed_memory() -> bool:
    """Apply the settings (process-wide); True when they took effect, False where the C library is not glibc."""
    if not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc':
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    if not ok:
        logging.getLogger('asmlp').warning('mallopt refused the allocator settings; continuing with the defaults')
    return ok
