"""fp32 without TF32: the setting under which fp32 results on a GPU are compared with references.

On Ampere and newer GPUs cuDNN convolutions use TF32 (10-bit mantissa products) for fp32 by default, which moves
results by about 1e-3 relative; checks against fp32 references turn it off for matrix products and convolutions
(https://pytorch.org/docs/stable/notes/cuda.html#tensorfloat-32-tf32-on-ampere-and-later-devices).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ['tf32_disabled']


@contextlib.contextmanager
def tf32_disabled() -> Iterator[None]:
    """Full fp32 matrix products (``set_float32_matmul_precision('highest')``) and cuDNN convolutions without
    TF32 inside the block; the previous settings come back on exit. Process-wide (torch's settings are)."""
    matmul = torch.get_float32_matmul_precision()
    cudnn = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision('highest')
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn
