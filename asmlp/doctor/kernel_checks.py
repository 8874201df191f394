"""Doctor checks of the axial-shift operators on one device.

* ``shift``: a backend (``reference``, ``fast``, ``triton``) on a device, in one dtype: both shifted copies of
  :func:`asmlp.ops.axial_shift_pair`, the single shift :func:`asmlp.ops.axial_shift` and the gradients of both must
  equal the ``reference`` backend on the CPU **bit for bit** (a shift is a copy; its backward a copy, or for the
  pair the sum of two copies, rounded as PyTorch rounds it).
* ``fused``: AS-MLP's token mixer (:class:`asmlp.models.asmlp.AxialShift`: conv, norm, GELU, the two shifted 1x1
  conv branches with GELU and sum, norm, conv) with backend ``triton`` (the branches fused into one kernel) against
  the same module with backend ``fast`` (shift copies + cuDNN / oneDNN convolutions) on the same device and dtype:
  max |fused - eager| / max |eager| at most 1e-4 in fp32 (TF32 off), 2e-2 in fp16 / bf16.
* ``auto``: which backend ``auto`` picks for tensors on the device, and why (:func:`asmlp.ops.auto_choice`).
"""
from __future__ import annotations

import torch

from ..ops import (
    auto_choice, axial_shift, axial_shift_pair, get_backend, tf32_disabled, triton_problem, use_backend,
)
from ..ops.backends import ENV_VAR
from .outcome import Mismatch, Skip, difference, relative_error

__all__ = ['DTYPES', 'FUSED_LIMITS', 'SHIFT_CASES', 'check_auto', 'check_fused', 'check_shift', 'random_values']

DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
# (shape, memory format, shift size, dilation): ragged channel groups (13 / 5), channels_last with dilation 2
SHIFT_CASES = (((2, 13, 7, 9), torch.contiguous_format, 5, 1), ((1, 24, 6, 10), torch.channels_last, 3, 2))
FUSED_SHAPE = (2, 40, 10, 10)  # 40 channels: ragged K and N tiles of the fused kernel
FUSED_LIMITS = {'fp32': 1e-4, 'fp16': 2e-2, 'bf16': 2e-2}


def random_values(shape, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """Seeded random CPU values bounded away from zero (a missed or zero-filled element shows)."""
    x = torch.randn(shape, dtype=torch.float64, generator=generator)
    return (x + torch.sign(x) * 0.5).to(dtype)


def _bf16_problem(device: torch.device, dtype: torch.dtype) -> str:
    if dtype == torch.bfloat16 and device.type == 'cuda':
        with torch.cuda.device(device):
            if not torch.cuda.is_bf16_supported():
                return f'{torch.cuda.get_device_name(device)} has no bf16'
    return ''


def _shift_outputs(x: torch.Tensor, grad_w: torch.Tensor, grad_h: torch.Tensor, shift_size: int,
                   dilation: int) -> dict[str, torch.Tensor]:
    """Forward and backward of the shift pair and of the single H shift, with the selected backend."""
    leaf = x.detach().clone().requires_grad_()
    out_w, out_h = axial_shift_pair(leaf, shift_size, dilation)
    pair_grad, = torch.autograd.grad((out_w, out_h), leaf, (grad_w, grad_h))
    single = axial_shift(leaf, 2, shift_size, dilation)
    single_grad, = torch.autograd.grad(single, leaf, grad_h)
    return {'forward W': out_w, 'forward H': out_h, 'backward of the pair': pair_grad, 'forward H alone': single,
            'backward of H alone': single_grad}


def check_shift(device: str, backend: str, dtype_name: str) -> str:
    device, dtype = torch.device(device), DTYPES[dtype_name]
    problem = (triton_problem(device) if backend == 'triton' else '') or _bf16_problem(device, dtype)
    if problem:
        raise Skip(problem)
    generator = torch.Generator().manual_seed(0)
    elements = 0
    for shape, memory_format, shift_size, dilation in SHIFT_CASES:
        x, grad_w, grad_h = (random_values(shape, dtype, generator) for _ in range(3))
        with use_backend('reference'):
            expected = _shift_outputs(x, grad_w, grad_h, shift_size, dilation)
        on_device = [t.to(device).contiguous(memory_format=memory_format) for t in (x, grad_w, grad_h)]
        with use_backend(backend):
            got = _shift_outputs(*on_device, shift_size, dilation)
        case = f'{"x".join(map(str, shape))} {"channels_last" if memory_format == torch.channels_last else "NCHW"}'
        for what, reference in expected.items():
            problem = difference(got[what], reference)
            if problem:
                raise Mismatch(f'{what}, {case}, shift {shift_size} dilation {dilation}: {problem}')
            elements += reference.numel()
    return (f'forward and backward bit-identical to the CPU reference ({len(SHIFT_CASES)} cases, NCHW and '
            f'channels_last, {elements} elements)')


def check_fused(device: str, dtype_name: str) -> str:
    from torch.utils.flop_counter import FlopCounterMode

    from ..models.asmlp import AxialShift
    device, dtype = torch.device(device), DTYPES[dtype_name]
    problem = triton_problem(device) or _bf16_problem(device, dtype)
    if problem:
        raise Skip(problem)
    torch.manual_seed(0)
    module = AxialShift(FUSED_SHAPE[1]).eval().to(device=device, dtype=dtype)
    x = random_values(FUSED_SHAPE, dtype, torch.Generator().manual_seed(0))
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), tf32_disabled():
        with use_backend('fast'):
            eager = module(x)
        with use_backend('triton'), counter:
            fused = module(x)
    if torch.ops.asmlp.shift_mlp not in counter.get_flop_counts()['Global']:
        raise Mismatch('the fused kernel did not run (backend "triton" took the unfused path)')
    error, limit = relative_error(fused, eager), FUSED_LIMITS[dtype_name]
    measure = f'max |fused - eager| / max |eager| = {error:.1e}'
    if not error <= limit:
        raise Mismatch(f'{measure}, above the {limit:g} limit ({"x".join(map(str, FUSED_SHAPE))} channels_last)')
    return f'{measure} (limit {limit:g}{", TF32 off" if dtype == torch.float32 and device.type == "cuda" else ""})'


def check_auto(device: str) -> str:
    backend, why = auto_choice(device)
    selected = get_backend()
    note = (f'; this process selects "{selected}" instead (use_backend or ${ENV_VAR})' if selected != 'auto'
            else '')
    return f'"auto" runs {backend}: {why}{note}'
