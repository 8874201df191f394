"""Operators: the axial shift (reference, fast CPU path, Triton kernels) and AS-MLP's fused token mixing.

``use_backend(name)`` / ``$ASMLP_SHIFT_BACKEND`` choose the implementation (:mod:`asmlp.ops.backends`).
"""
from . import custom_ops  # registers torch.ops.asmlp.* (no Triton import)
from .backends import BACKENDS, get_backend, resolve_backend, use_backend
from .shift import (
    axial_shift, axial_shift_mlp, axial_shift_pair, axial_shift_reference, axial_shift_traced, channel_groups,
    fused_token_mixing_applies,
)

__all__ = ['BACKENDS', 'axial_shift', 'axial_shift_mlp', 'axial_shift_pair', 'axial_shift_reference',
           'axial_shift_traced', 'channel_groups', 'fused_token_mixing_applies', 'get_backend', 'resolve_backend', 'use_backend']
