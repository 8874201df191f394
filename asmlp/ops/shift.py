"""Axial shift: the token-mixing primitive of AS-MLP (Lian et al., arXiv 2107.08391, ICLR 2022).

Semantics (svip-lab/AS-MLP ``models/shift_cuda.py`` and svip-lab/AS-MLP-Semantic-Segmentation
``mmseg/models/backbones/asmlp.py``): the channels of an NCHW tensor are split into contiguous groups of
``ceil(C / shift_size)`` channels (``torch.chunk`` order, the last group may be smaller and with ``C < shift_size``
there are fewer groups than ``shift_size``). Group ``g`` moves along ``dim`` by ``(g - shift_size // 2) * dilation``
positions, ``out[..., i] = in[..., i - offset]``, and positions that come from outside the map are zero.
``dilation`` is this project's extension (the paper's ablation, Table 3); the official code has dilation 1.

Implementations (backends, :mod:`asmlp.ops.backends`):

* :func:`axial_shift_reference` restates the official pad / chunk / roll / cat / narrow code (the oracle,
  backend ``reference``);
* the fast path (backend ``fast``) writes each output element exactly once: one slice copy per channel group for
  the part that stays inside the map and one zero fill for the part that enters from outside. Its backward is the
  same shift with negated offsets (a zero-fill shift's adjoint), so gradients of any order stay exact copies.
  Its ``as_strided`` plan is only right for the strides it was made for, and a traced graph (``torch.compile``,
  ``torch.export``) may give a tensor other strides at run time than its fake tensor had while tracing: so
  while tracing the fast backend records :func:`axial_shift_traced` instead, one constant pad per channel group
  (a negative pad crops) and a concatenation -- stride-agnostic aten ops that Inductor fuses into one kernel;
* Triton kernels (backend ``triton``, :mod:`asmlp.ops.shift_triton` through the ``torch.ops.asmlp`` custom ops of
  :mod:`asmlp.ops.custom_ops`): the same copies, both directions from one read of the input, and AS-MLP's whole
  token mixing fused into one GEMM kernel at inference (:func:`axial_shift_mlp`).

:func:`axial_shift`, :func:`axial_shift_pair` and :func:`axial_shift_mlp` dispatch to the selected backend
(``asmlp.ops.use_backend(name)`` or ``$ASMLP_SHIFT_BACKEND``; default ``auto``: Triton for CUDA tensors, else fast).
Every backend gives bit-identical shifts; :func:`axial_shift_mlp` agrees to floating-point rounding.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .backends import resolve_backend

__all__ = ['FUSED_DTYPES', 'axial_shift', 'axial_shift_mlp', 'axial_shift_pair', 'axial_shift_reference',
           'axial_shift_traced', 'channel_groups', 'fused_token_mixing_applies', 'validate_shift_args']

_FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def validate_shift_args(x: torch.Tensor, dim: int, shift_size: int, dilation: int) -> int:
    """Check the arguments of an axial shift and return ``dim`` normalised to 2 (H) or 3 (W)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'x must be a torch.Tensor, got {type(x).__name__}')
    if x.dim() != 4:
        raise ValueError(f'x must be a 4-D NCHW tensor, got shape {tuple(x.shape)}')
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f'x must be float64, float32, float16 or bfloat16, got {x.dtype}')
    if any(s < 1 for s in x.shape[1:]):
        raise ValueError(f'x must have C, H, W >= 1, got shape {tuple(x.shape)}')
    if isinstance(dim, bool) or not isinstance(dim, int) or dim not in (2, 3, -2, -1):
        raise ValueError(f'dim must be 2 (H) or 3 (W) (or -2 / -1), got {dim!r}')
    if isinstance(shift_size, bool) or not isinstance(shift_size, int) or shift_size < 1 or shift_size % 2 == 0:
        raise ValueError(f'shift_size must be an odd integer >= 1, got {shift_size!r}')
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f'dilation must be an integer >= 1, got {dilation!r}')
    return dim % 4


def channel_groups(channels: int, shift_size: int, dilation: int = 1) -> list[tuple[int, int, int]]:
    """``(first_channel, end_channel, offset)`` per channel group, in ``torch.chunk`` order.

    >>> channel_groups(96, 5)
    [(0, 20, -2), (20, 40, -1), (40, 60, 0), (60, 80, 1), (80, 96, 2)]
    """
    size = math.ceil(channels / shift_size)
    half = shift_size // 2
    return [(c0, min(c0 + size, channels), (g - half) * dilation) for g, c0 in enumerate(range(0, channels, size))]


def axial_shift_reference(x: torch.Tensor, dim: int, shift_size: int = 5, dilation: int = 1) -> torch.Tensor:
    """The official shift (seg/det repos, ``torch_shift``), restated with ``dilation``: pad, chunk, roll, cat,
    narrow."""
    dim = validate_shift_args(x, dim, shift_size, dilation)
    _, _, height, width = x.shape
    pad = (shift_size // 2) * dilation
    padded = F.pad(x, (pad, pad, pad, pad), 'constant', 0)
    chunks = torch.chunk(padded, shift_size, 1)
    shifts = range(-pad, pad + 1, dilation)
    rolled = torch.cat([torch.roll(chunk, shift, dim) for chunk, shift in zip(chunks, shifts)], 1)
    return torch.narrow(torch.narrow(rolled, 2, pad, height), 3, pad, width)


def axial_shift_traced(x: torch.Tensor, dim: int, shift_size: int = 5, dilation: int = 1,
                       sign: int = 1) -> torch.Tensor:
    """The shift as one ``F.pad`` per channel group (pad one side by the offset, crop the other) and a ``torch.cat``.

    No stride assumptions, so it is what the ``fast`` backend records in traced graphs (``torch.compile``,
    ``torch.export``, where run-time strides may differ from the traced ones); exact copies like every backend.
    ``sign=-1`` is the adjoint. Autograd differentiates the pads and the concatenation (exact, any order).
    """
    dim = validate_shift_args(x, dim, shift_size, dilation)
    length = x.shape[dim]
    parts = []
    for c0, c1, offset in channel_groups(x.shape[1], shift_size, dilation):
        offset = max(-length, min(sign * offset, length))  # a group moved out entirely is all zeros
        pad = (offset, -offset) if dim == 3 else (0, 0, offset, -offset)
        parts.append(F.pad(x[:, c0:c1], pad))
    return torch.cat(parts, 1) if len(parts) > 1 else parts[0]


Region = tuple  # (size, stride, offset) of an ``as_strided`` view, offset relative to the tensor's start


@functools.lru_cache(maxsize=512)
def _shift_plan(
        shape: tuple[int, ...],
        src_stride: tuple[int, ...],
        dst_stride: tuple[int, ...],
        dim: int,
        shift_size: int,
        dilation: int,
        sign: int,
) -> tuple[tuple[tuple[Region, Region], ...], tuple[Region, ...]]:
    """The copies ``(dst, src)`` and zero fills that make up one shift, as ``as_strided`` regions.

    Channel group ``g`` moves by ``sign * (g - shift_size // 2) * dilation``; ``sign=-1`` is the adjoint (backward).
    Contiguous NCHW tensors take a "flat" route: because the offset is linear in ``g``, all equal-size groups are
    moved by ONE strided copy over the flattened ``(C/groups) * H * W`` blocks, which also writes the few positions
    that come from outside the map (they read a neighbouring row / channel); those border bands are then zeroed
    with ``shift_size - 1`` small fills, bands shared by all groups whose offset reaches them. Any other layout
    (channels_last, views) takes the per-group route: one copy of the kept part and one fill of the entering part.
    Either way every output element is produced from one read of the input (border bands: written, then zeroed).
    """
    batch, channels, height, width = shape
    length = shape[dim]
    groups = [(c0, c1, sign * offset) for c0, c1, offset in channel_groups(channels, shift_size, dilation)]
    copies: list[tuple[Region, Region]] = []
    fills: list[Region] = []

    def region(stride, c0, c1, start, size_along_dim):
        size = [batch, c1 - c0, height, width]
        size[dim] = size_along_dim
        return tuple(size), stride, c0 * stride[1] + start * stride[dim]

    def exact(c0, c1, offset):
        kept = length - abs(offset)
        if kept <= 0:
            fills.append(region(dst_stride, c0, c1, 0, length))
            return
        read, write = (0, offset) if offset > 0 else (-offset, 0)
        copies.append((region(dst_stride, c0, c1, write, kept), region(src_stride, c0, c1, read, kept)))
        if offset:
            fills.append(region(dst_stride, c0, c1, 0 if offset > 0 else kept, abs(offset)))

    group_size = groups[0][1] - groups[0][0]
    full = [g for g in groups if g[1] - g[0] == group_size]
    contiguous = src_stride == dst_stride == (channels * height * width, height * width, width, 1)
    step = src_stride[dim] * dilation * sign
    block = group_size * height * width
    first_read = groups[0][2] * -src_stride[dim]
    last_read = (batch - 1) * src_stride[0] + (len(full) - 1) * (block - step) + first_read + block - 1
    if contiguous and len(full) > 1 and block - step > 0 and first_read >= 0 and last_read < math.prod(shape):
        flat = (batch, len(full), block)
        copies.append(((flat, (src_stride[0], block, 1), 0), (flat, (src_stride[0], block - step, 1), first_read)))
        for band in range(1, shift_size // 2 + 1):
            lo, hi = (band - 1) * dilation, min(band * dilation, length)
            if lo >= length:
                break
            # offsets are multiples of the dilation and monotone in g: the groups a band reaches are contiguous
            from_before = [(c0, c1) for c0, c1, offset in full if offset > lo]
            from_after = [(c0, c1) for c0, c1, offset in full if -offset > lo]
            for reached, start in ((from_before, lo), (from_after, length - hi)):
                if reached:
                    fills.append(region(dst_stride, reached[0][0], reached[-1][1], start, hi - lo))
        rest = groups[len(full):]
    else:
        rest = groups
    for group in rest:
        exact(*group)
    return tuple(copies), tuple(fills)


def _shift_groups(x: torch.Tensor, dim: int, shift_size: int, dilation: int, sign: int) -> torch.Tensor:
    """Run the :func:`_shift_plan` of ``x`` into a new tensor with ``x``'s memory format."""
    out = torch.empty_like(x, memory_format=torch.preserve_format)
    copies, fills = _shift_plan(tuple(x.shape), x.stride(), out.stride(), dim, shift_size, dilation, sign)
    base = x.storage_offset()
    for (size, stride, offset), (src_size, src_stride, src_offset) in copies:
        out.as_strided(size, stride, offset).copy_(x.as_strided(src_size, src_stride, base + src_offset))
    for size, stride, offset in fills:
        out.as_strided(size, stride, offset).zero_()
    return out


class _AxialShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, shift_size, dilation, sign):
        ctx.args = (dim, shift_size, dilation, -sign)
        return _shift_groups(x, dim, shift_size, dilation, sign)

    @staticmethod
    def backward(ctx, grad_out):
        return _AxialShift.apply(grad_out, *ctx.args), None, None, None, None


def axial_shift(x: torch.Tensor, dim: int, shift_size: int = 5, dilation: int = 1) -> torch.Tensor:
    """Shift the channel groups of NCHW ``x`` along ``dim`` (2 = H, 3 = W); see the module docstring.

    Out of place, keeps ``x``'s memory format (contiguous or channels_last; the ``reference`` backend returns the
    official code's strided view), supports autograd. Bit-identical to :func:`axial_shift_reference` on every
    backend.
    """
    dim = validate_shift_args(x, dim, shift_size, dilation)
    backend = resolve_backend(x)
    if backend == 'triton':
        return torch.ops.asmlp.shift(x, dim, shift_size, dilation, 1)
    if backend == 'reference':
        return axial_shift_reference(x, dim, shift_size, dilation)
    if torch.compiler.is_compiling():  # traced strides are not the run-time strides: no as_strided plan
        return axial_shift_traced(x, dim, shift_size, dilation)
    return _AxialShift.apply(x, dim, shift_size, dilation, 1)


def axial_shift_pair(x: torch.Tensor, shift_size: int = 5, dilation: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(axial_shift(x, 3), axial_shift(x, 2))``: the W- and H-shifted copies AS-MLP's two branches read.

    The ``triton`` backend writes both from one read of ``x`` (one kernel; its backward is one kernel too).
    """
    validate_shift_args(x, 3, shift_size, dilation)
    if resolve_backend(x) == 'triton':
        return torch.ops.asmlp.shift_pair(x, shift_size, dilation, 1)
    return axial_shift(x, 3, shift_size, dilation), axial_shift(x, 2, shift_size, dilation)


FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    device_type = x.device.type
    if device_type in ('cuda', 'cpu') and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def _check_mlp_args(x, weight_w, bias_w, weight_h, bias_h) -> None:
    channels = x.shape[1]
    for name, weight, bias in (('weight_w', weight_w, bias_w), ('weight_h', weight_h, bias_h)):
        if weight.dim() not in (2, 4) or weight.shape[1] != channels or weight.shape[2:] not in ((), (1, 1)):
            raise ValueError(f'{name} must be (Cout, {channels}) or (Cout, {channels}, 1, 1), '
                             f'got {tuple(weight.shape)}')
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f'bias of {name} must have shape ({weight.shape[0]},), got {tuple(bias.shape)}')
    if weight_w.shape[0] != weight_h.shape[0]:
        raise ValueError(f'the two branches must have the same output channels, got {weight_w.shape[0]} and '
                         f'{weight_h.shape[0]}')
    if (bias_w is None) != (bias_h is None):
        raise ValueError('either both branches have a bias or neither')


def fused_token_mixing_applies(x: torch.Tensor, weight_w: torch.Tensor, bias_w, weight_h: torch.Tensor,
                               bias_h) -> bool:
    """Whether :func:`axial_shift_mlp` runs the fused kernel for these tensors: backend ``triton``, no gradient
    needed (inference; training takes the unfused path), fp32 / fp16 / bf16 (or autocast to one of them), and
    all tensors of one dtype (unless autocast casts them)."""
    if resolve_backend(x) != 'triton':
        return False
    tensors = [t for t in (x, weight_w, bias_w, weight_h, bias_h) if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    dtype = _compute_dtype(x)
    return dtype in FUSED_DTYPES and (dtype != x.dtype or all(t.dtype == dtype for t in tensors))


def axial_shift_mlp(x: torch.Tensor, weight_w: torch.Tensor, bias_w: torch.Tensor | None, weight_h: torch.Tensor,
                    bias_h: torch.Tensor | None, shift_size: int = 5, dilation: int = 1) -> torch.Tensor:
    """AS-MLP's token mixing: ``GELU(conv_W(shift_W(x))) + GELU(conv_H(shift_H(x)))`` (1x1 convs, exact GELU).

    ``weight_*`` are the 1x1 conv weights, (Cout, C, 1, 1) or (Cout, C); ``bias_*`` their biases (or both None).
    Where :func:`fused_token_mixing_applies`, one Triton kernel computes it without ever writing a shifted copy
    (``torch.ops.asmlp.shift_mlp``); otherwise the shifts of the selected backend feed ``F.conv2d`` and ``F.gelu``.
    The output keeps ``x``'s memory format (contiguous or channels_last).
    """
    validate_shift_args(x, 3, shift_size, dilation)
    _check_mlp_args(x, weight_w, bias_w, weight_h, bias_h)
    if fused_token_mixing_applies(x, weight_w, bias_w, weight_h, bias_h):
        dtype = _compute_dtype(x)
        cast = (lambda t: t if t is None else t.to(dtype))  # noqa: E731  (autocast, like F.conv2d's)
        return torch.ops.asmlp.shift_mlp(cast(x), cast(weight_w), cast(bias_w), cast(weight_h), cast(bias_h),
                                         shift_size, dilation)
    x_w, x_h = axial_shift_pair(x, shift_size, dilation)
    weight_w = weight_w.reshape(weight_w.shape[0], -1, 1, 1)
    weight_h = weight_h.reshape(weight_h.shape[0], -1, 1, 1)
    return F.gelu(F.conv2d(x_w, weight_w, bias_w)) + F.gelu(F.conv2d(x_h, weight_h, bias_h))
