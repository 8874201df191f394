"""Operators: the axial shift (reference, fast CPU path, Triton kernels) and AS-MLP's fused token mixing.

``use_backend(name)`` / ``$ASMLP_SHIFT_BACKEND`` choose the implementation (:mod:`asmlp.ops.backends`);
``triton_problem(device)`` says where the Triton kernels cannot run, ``auto_choice(device)`` what ``auto`` picks.
"""
from . import custom_ops  # registers torch.ops.asmlp.* (no Triton import)
from .backends import BACKENDS, auto_choice, get_backend, resolve_backend, triton_problem, use_backend
from .shift import (
    axial_shift, axial_shift_mlp, axial_shift_pair, axial_shift_reference, axial_shift_traced, channel_groups,
    fused_token_mixing_applies,
)
from .tf32 import tf32_disabled

__all__ = ['BACKENDS', 'auto_choice', 'axial_shift', 'axial_shift_mlp', 'axial_shift_pair', 'axial_shift_reference',
           'axial_shift_traced', 'channel_groups', 'custom_ops', 'fused_token_mixing_applies', 'get_backend',
           'resolve_backend', 'tf32_disabled', 'triton_problem', 'use_backend']
