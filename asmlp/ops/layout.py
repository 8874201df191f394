"""Memory layout rules shared by the fused op's fake (meta) implementation and its Triton kernel."""
from __future__ import annotations

import torch

__all__ = ['output_format']


def output_format(x: torch.Tensor) -> torch.memory_format:
    """Memory format of the fused op's output: channels_last for a channels_last ``x``, else contiguous."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
