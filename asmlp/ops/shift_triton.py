"""Triton kernels for the axial shift and for AS-MLP's shift-fused token mixing.

Imported lazily (only when the ``triton`` backend runs), so a missing or broken Triton never affects CPU use.
CPU tensors run only under ``TRITON_INTERPRET=1`` (Triton's interpreter, which must be set before this module is
imported: ``@triton.jit`` reads it when the kernels are defined). Only Triton APIs present in 3.6 are used.

Shift semantics (:func:`asmlp.ops.channel_groups`): channel ``c`` belongs to group ``c // ceil(C / s)`` and moves by
``offset(c) = sign * (c // ceil(C / s) - s // 2) * dilation`` along its axis, ``out[..., i] = in[..., i - offset]``,
zero where ``i - offset`` falls outside the map. ``sign = -1`` is the adjoint (the backward of ``sign = 1``).

Kernels:

* :func:`_shift_kernel`, the plain shift, **one read of the input for both directions**: every program loads a
  ``BLOCK_R x BLOCK_Q`` tile of ``x`` once and stores it to the W-shifted output at ``w + offset`` and to the
  H-shifted output at ``h + offset`` (masked where that leaves the map); each output position whose source
  ``i - offset`` lies outside the map is zero-filled by the program that owns that position. So every output
  element is written exactly once. The tile's inner axis is the memory-contiguous one (W for NCHW, C for
  channels_last); any strides work (input and output strides are separate).
* :func:`_shift_adjoint_kernel`, the backward of the two-output shift: ``dx[p] = dW[p + offset_W] + dH[p + offset_H]``
  (gathers, zero outside the map), summed in fp32 for 16-bit types, which rounds exactly like PyTorch's add.
* :func:`_shift_mlp_kernel`, the fused token mixing ``GELU(W1 shift_W(x) + b1) + GELU(W2 shift_H(x) + b2)`` as
  one GEMM with two accumulators: M = N*H*W pixels, N = output channels, K = input channels. The A tiles are
  loaded straight from ``x`` at per-K-row offsets (channel ``k`` reads ``x[.., k, h, w - offset(k)]`` for the W
  branch and ``x[.., k, h - offset(k), w]`` for the H branch, masked to zero outside the map): no shifted copy
  is ever written. Bias, exact (erf) GELU and the branch sum run in the fp32 epilogue. fp32 uses full-precision
  dots (``input_precision='ieee'``, no TF32); fp16 / bf16 accumulate in fp32.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .layout import output_format

__all__ = ['INTERPRET', 'shift', 'shift_mlp', 'shift_pair', 'shift_pair_adjoint']

INTERPRET = os.environ.get('TRITON_INTERPRET', '0') == '1'
"""Whether the kernels were defined under Triton's interpreter (the environment when this module was imported)."""

POISON_OUTPUTS = False
"""Tests set this: outputs are NaN-filled before the kernels run, so an element a kernel misses cannot pass."""

_INT32_LIMIT = 2 ** 31 - 1
_SHIFT_BLOCK = 8192 if INTERPRET else 2048  # elements per program of the plain shift kernels
_SHIFT_MAX_Q = 1024 if INTERPRET else 256  # cap of the inner (contiguous) tile axis


def _check_device(*tensors: torch.Tensor) -> None:
    devices = {t.device for t in tensors if t is not None}
    if len(devices) != 1:
        raise RuntimeError(f'asmlp triton kernels: all tensors must be on one device, got {sorted(map(str, devices))}')
    device = devices.pop()
    if device.type == 'cpu' and not INTERPRET:
        raise RuntimeError(
            'asmlp triton backend: CPU tensors run only under the Triton interpreter; set TRITON_INTERPRET=1 in '
            'the environment before asmlp.ops.shift_triton is first imported, or use the "fast" backend on CPU')
    if device.type not in ('cpu', 'cuda'):
        raise RuntimeError(f'asmlp triton backend: unsupported device {device}')


def _new(out: torch.Tensor) -> torch.Tensor:
    return out.fill_(float('nan')) if POISON_OUTPUTS else out


def _channels_last(t: torch.Tensor) -> bool:
    """Whether channels are the innermost axis of ``t`` (the tile's contiguous axis then is C, else W)."""
    return t.size(1) > 1 and t.stride(1) < t.stride(3)


def _max_offset(t: torch.Tensor) -> int:
    return sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()))


def _needs_int64(*tensors: torch.Tensor) -> bool:
    return any(t.numel() > _INT32_LIMIT or _max_offset(t) > _INT32_LIMIT for t in tensors)


def _shift_tiling(out: torch.Tensor, block: int | None, block_q: int | None) -> tuple[bool, int, int, int, int]:
    """``(channels_last, R, Q, BLOCK_R, BLOCK_Q)``: tile rows R (N*C*H or N*H*W) by the contiguous axis Q (W or C)."""
    batch, channels, height, width = out.shape
    channels_last = _channels_last(out)
    rows, inner = (batch * height * width, channels) if channels_last else (batch * channels * height, width)
    block_q = block_q or min(triton.next_power_of_2(inner), _SHIFT_MAX_Q)
    block_r = 1 << (max(1, (block or _SHIFT_BLOCK) // block_q).bit_length() - 1)  # a power of two
    return channels_last, rows, inner, block_r, block_q


@triton.jit
def _tile_coordinates(pid_r, pid_q, R, Q, C, H, W,
                      CHANNELS_LAST: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_Q: tl.constexpr,
                      INT64: tl.constexpr):
    """(n, c, h, w) index tensors (broadcastable to BLOCK_R x BLOCK_Q) and the in-bounds mask of one tile."""
    r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    q = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    if INT64:
        r = r.to(tl.int64)
        q = q.to(tl.int64)
    mask = (r < R)[:, None] & (q < Q)[None, :]
    if CHANNELS_LAST:  # rows (n, h, w), columns c
        w = r % W
        t = r // W
        h = t % H
        n = t // H
        c = q[None, :]
        w = w[:, None]
    else:  # rows (n, c, h), columns w
        h = r % H
        t = r // H
        c = t % C
        n = t // C
        c = c[:, None]
        w = q[None, :]
    return n[:, None], c, h[:, None], w, mask


@triton.jit
def _shift_kernel(
        x_ptr, out_w_ptr, out_h_ptr,
        R, Q, C, H, W,
        sxn, sxc, sxh, sxw,
        son, soc, soh, sow,
        group, half, step,
        WRITE_W: tl.constexpr, WRITE_H: tl.constexpr, CHANNELS_LAST: tl.constexpr,
        BLOCK_R: tl.constexpr, BLOCK_Q: tl.constexpr, INT64: tl.constexpr,
):
    """Plain shift: load one tile of x, scatter it to the W- and/or H-shifted outputs, zero-fill what enters."""
    n, c, h, w, mask = _tile_coordinates(tl.program_id(0), tl.program_id(1), R, Q, C, H, W,
                                         CHANNELS_LAST, BLOCK_R, BLOCK_Q, INT64)
    offset = (c // group - half) * step  # per channel: a row or a column of the tile
    value = tl.load(x_ptr + n * sxn + c * sxc + h * sxh + w * sxw, mask=mask)
    zero = tl.zeros([BLOCK_R, BLOCK_Q], dtype=out_w_ptr.dtype.element_ty)
    base = n * son + c * soc
    if WRITE_W:
        dst = w + offset  # where this element goes
        src = w - offset  # where this position's value comes from: outside the map -> zero
        tl.store(out_w_ptr + base + h * soh + dst * sow, value, mask=mask & (dst >= 0) & (dst < W))
        tl.store(out_w_ptr + base + h * soh + w * sow, zero, mask=mask & ((src < 0) | (src >= W)))
    if WRITE_H:
        dst = h + offset
        src = h - offset
        tl.store(out_h_ptr + base + dst * soh + w * sow, value, mask=mask & (dst >= 0) & (dst < H))
        tl.store(out_h_ptr + base + h * soh + w * sow, zero, mask=mask & ((src < 0) | (src >= H)))


@triton.jit
def _bf16_rtne(v):
    """fp32 -> bf16, round to nearest even, with integer ops: identical to the hardware conversion on the GPU, and
    exact under Triton's interpreter too (whose float -> bf16 cast truncates)."""
    bits = v.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    rounded = tl.where(v != v, 0x7FC0, rounded)  # NaN stays a (quiet) NaN
    return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _store_rounded(ptr, value, mask, OUT_BF16: tl.constexpr):
    """Store fp32 ``value`` rounded to nearest even into ``ptr``'s element type."""
    if OUT_BF16:
        tl.store(ptr, _bf16_rtne(value), mask=mask)
    else:
        tl.store(ptr, value.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _shift_adjoint_kernel(
        gw_ptr, gh_ptr, out_ptr,
        R, Q, C, H, W,
        swn, swc, swh, sww,
        shn, shc, shh, shw,
        son, soc, soh, sow,
        group, half, step,
        UPCAST: tl.constexpr, OUT_BF16: tl.constexpr, CHANNELS_LAST: tl.constexpr,
        BLOCK_R: tl.constexpr, BLOCK_Q: tl.constexpr, INT64: tl.constexpr,
):
    """Adjoint of the two-output shift: dx[p] = dW[w + offset] + dH[h + offset] (zero outside the map)."""
    n, c, h, w, mask = _tile_coordinates(tl.program_id(0), tl.program_id(1), R, Q, C, H, W,
                                         CHANNELS_LAST, BLOCK_R, BLOCK_Q, INT64)
    offset = (c // group - half) * step
    src_w = w + offset
    src_h = h + offset
    from_w = tl.load(gw_ptr + n * swn + c * swc + h * swh + src_w * sww,
                     mask=mask & (src_w >= 0) & (src_w < W), other=0.0)
    from_h = tl.load(gh_ptr + n * shn + c * shc + src_h * shh + w * shw,
                     mask=mask & (src_h >= 0) & (src_h < H), other=0.0)
    out_ptrs = out_ptr + n * son + c * soc + h * soh + w * sow
    if UPCAST:  # 16-bit: the fp32 sum rounded once to nearest even equals PyTorch's 16-bit sum bit for bit
        _store_rounded(out_ptrs, from_w.to(tl.float32) + from_h.to(tl.float32), mask, OUT_BF16)
    else:
        tl.store(out_ptrs, from_w + from_h, mask=mask)


def _groups(channels: int, shift_size: int) -> tuple[int, int]:
    return -(-channels // shift_size), shift_size // 2


def _launch_shift(x: torch.Tensor, out_w, out_h, shift_size: int, dilation: int, sign: int,
                  block: int | None = None, block_q: int | None = None) -> None:
    out = out_w if out_w is not None else out_h
    channels_last, rows, inner, block_r, block_q = _shift_tiling(out, block, block_q)
    _, channels, height, width = x.shape
    group, half = _groups(channels, shift_size)
    grid = (triton.cdiv(rows, block_r), triton.cdiv(inner, block_q))
    _shift_kernel[grid](
        x, out_w if out_w is not None else out_h, out_h if out_h is not None else out_w,
        rows, inner, channels, height, width,
        *x.stride(), *out.stride(),
        group, half, sign * dilation,
        WRITE_W=out_w is not None, WRITE_H=out_h is not None, CHANNELS_LAST=channels_last,
        BLOCK_R=block_r, BLOCK_Q=block_q, INT64=_needs_int64(x, out), num_warps=4,
    )


def shift(x: torch.Tensor, dim: int, shift_size: int, dilation: int, sign: int = 1, *,
          block: int | None = None, block_q: int | None = None) -> torch.Tensor:
    """One direction (``dim`` 2 = H, 3 = W); the output keeps ``x``'s memory format. ``block*`` are test knobs."""
    _check_device(x)
    out = _new(torch.empty_like(x, memory_format=torch.preserve_format))
    if x.numel():
        _launch_shift(x, out if dim == 3 else None, out if dim == 2 else None, shift_size, dilation, sign,
                      block, block_q)
    return out


def shift_pair(x: torch.Tensor, shift_size: int, dilation: int, sign: int = 1, *,
               block: int | None = None, block_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(shift along W, shift along H)`` of ``x`` from one read of ``x`` (one kernel, two outputs)."""
    _check_device(x)
    out_w = _new(torch.empty_like(x, memory_format=torch.preserve_format))
    out_h = _new(torch.empty_like(out_w))
    if x.numel():
        _launch_shift(x, out_w, out_h, shift_size, dilation, sign, block, block_q)
    return out_w, out_h


def shift_pair_adjoint(grad_w: torch.Tensor, grad_h: torch.Tensor, shift_size: int, dilation: int, sign: int = 1,
                       *, block: int | None = None, block_q: int | None = None) -> torch.Tensor:
    """Adjoint of :func:`shift_pair` with the same ``sign``: ``shift_W^T(grad_w) + shift_H^T(grad_h)``."""
    _check_device(grad_w, grad_h)
    out = _new(torch.empty_like(grad_w, memory_format=torch.preserve_format))
    if out.numel():
        channels_last, rows, inner, block_r, block_q = _shift_tiling(out, block, block_q)
        _, channels, height, width = out.shape
        group, half = _groups(channels, shift_size)
        grid = (triton.cdiv(rows, block_r), triton.cdiv(inner, block_q))
        _shift_adjoint_kernel[grid](
            grad_w, grad_h, out, rows, inner, channels, height, width,
            *grad_w.stride(), *grad_h.stride(), *out.stride(),
            group, half, sign * dilation,
            UPCAST=out.element_size() < 4, OUT_BF16=out.dtype == torch.bfloat16, CHANNELS_LAST=channels_last,
            BLOCK_R=block_r, BLOCK_Q=block_q, INT64=_needs_int64(grad_w, grad_h, out), num_warps=4,
        )
    return out


# --------------------------------------------------------------------------------------------------------------------
# fused token mixing


@triton.jit
def _gelu(v):
    return 0.5 * v * (1.0 + tl.math.erf(v * 0.7071067811865476))


@triton.jit
def _shift_mlp_kernel(
        x_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, out_ptr,
        M, N, K, H, W,
        sxn, sxc, sxh, sxw,
        son, soc, soh, sow,
        s1n, s1k, s2n, s2k,
        group, half, dilation,
        HAS_BIAS: tl.constexpr, IEEE: tl.constexpr, DOT_FP32: tl.constexpr, OUT_BF16: tl.constexpr,
        INT64: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """out[m, n] = GELU(sum_k W1[n, k] xW[m, k] + b1[n]) + GELU(sum_k W2[n, k] xH[m, k] + b2[n]), m = (b, h, w).

    xW[m, k] = x[b, k, h, w - off(k)] and xH[m, k] = x[b, k, h - off(k), w], zero outside the map: the shift is
    the address and mask of the A-tile loads. Programs are numbered N-block fastest, so the programs that share
    one M-block of x run together and read it from L2.
    """
    pid = tl.program_id(0)
    num_n = tl.cdiv(N, BLOCK_N)
    pid_m = pid // num_n
    pid_n = pid % num_n
    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n_out = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if INT64:
        m = m.to(tl.int64)
    m_mask = m < M
    n_mask = n_out < N
    w = m % W
    t = m // W
    h = t % H
    b = t // H
    x_rows = x_ptr + b * sxn  # [BLOCK_M] row bases
    acc_w = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_h = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_mask = k < K
        offset = (k // group - half) * dilation  # per K row
        src_w = w[:, None] - offset[None, :]
        src_h = h[:, None] - offset[None, :]
        a_mask = m_mask[:, None] & k_mask[None, :]
        a_base = x_rows[:, None] + k[None, :] * sxc
        a_w = tl.load(a_base + h[:, None] * sxh + src_w * sxw,
                      mask=a_mask & (src_w >= 0) & (src_w < W), other=0.0)
        a_h = tl.load(a_base + src_h * sxh + w[:, None] * sxw,
                      mask=a_mask & (src_h >= 0) & (src_h < H), other=0.0)
        b_mask = k_mask[:, None] & n_mask[None, :]
        b_w = tl.load(w1_ptr + n_out[None, :] * s1n + k[:, None] * s1k, mask=b_mask, other=0.0)
        b_h = tl.load(w2_ptr + n_out[None, :] * s2n + k[:, None] * s2k, mask=b_mask, other=0.0)
        if DOT_FP32:  # the interpreter's dot reads bf16 as raw integers: widen first (exact)
            a_w = a_w.to(tl.float32)
            a_h = a_h.to(tl.float32)
            b_w = b_w.to(tl.float32)
            b_h = b_h.to(tl.float32)
        if IEEE:
            acc_w = tl.dot(a_w, b_w, acc_w, input_precision='ieee')
            acc_h = tl.dot(a_h, b_h, acc_h, input_precision='ieee')
        else:
            acc_w = tl.dot(a_w, b_w, acc_w)
            acc_h = tl.dot(a_h, b_h, acc_h)
    if HAS_BIAS:
        acc_w += tl.load(b1_ptr + n_out, mask=n_mask, other=0.0).to(tl.float32)[None, :]
        acc_h += tl.load(b2_ptr + n_out, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    result = _gelu(acc_w) + _gelu(acc_h)
    out_offsets = (b * son + h * soh + w * sow)[:, None] + n_out[None, :] * soc
    _store_rounded(out_ptr + out_offsets, result, m_mask[:, None] & n_mask[None, :], OUT_BF16)


def _mlp_configs() -> list:
    return [
        triton.Config({'BLOCK_M': bm, 'BLOCK_N': bn, 'BLOCK_K': bk}, num_warps=warps, num_stages=stages)
        for bm, bn, bk, warps, stages in [
            (128, 64, 32, 4, 3), (64, 64, 32, 4, 3), (128, 128, 32, 8, 3), (64, 128, 32, 4, 4), (128, 32, 32, 4, 4),
        ]
    ]


_shift_mlp_autotuned = None if INTERPRET else triton.autotune(
    configs=_mlp_configs(), key=['M', 'N', 'K', 'H', 'W'])(_shift_mlp_kernel)

def shift_mlp(x: torch.Tensor, weight_w: torch.Tensor, bias_w, weight_h: torch.Tensor, bias_h,
              shift_size: int, dilation: int, *, blocks: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Fused token mixing (see the module docstring). Weights (Cout, Cin) or (Cout, Cin, 1, 1); biases or None.

    ``blocks=(BLOCK_M, BLOCK_N, BLOCK_K)`` fixes the tiling (tests); otherwise autotuned on the GPU and
    (64, <=64, 32) under the interpreter.
    """
    _check_device(x, weight_w, weight_h, bias_w, bias_h)
    weight_w = weight_w.reshape(weight_w.shape[0], -1)
    weight_h = weight_h.reshape(weight_h.shape[0], -1)
    batch, channels, height, width = x.shape
    out_channels = weight_w.shape[0]
    out = _new(torch.empty((batch, out_channels, height, width), dtype=x.dtype, device=x.device,
                           memory_format=output_format(x)))
    if not out.numel():
        return out
    group, half = _groups(channels, shift_size)
    has_bias = bias_w is not None
    M, N, K = batch * height * width, out_channels, channels
    args = (x, weight_w, bias_w if has_bias else weight_w, weight_h, bias_h if has_bias else weight_h, out,
            M, N, K, height, width, *x.stride(), *out.stride(), *weight_w.stride(), *weight_h.stride(),
            group, half, dilation)
    dot_fp32 = INTERPRET and x.dtype == torch.bfloat16
    flags = dict(HAS_BIAS=has_bias, IEEE=x.dtype == torch.float32 or dot_fp32, DOT_FP32=dot_fp32,
                 OUT_BF16=x.dtype == torch.bfloat16, INT64=_needs_int64(x, out))
    if blocks is None and _shift_mlp_autotuned is not None:
        grid = lambda meta: (triton.cdiv(M, meta['BLOCK_M']) * triton.cdiv(N, meta['BLOCK_N']),)  # noqa: E731
        _shift_mlp_autotuned[grid](*args, **flags)
    else:
        block_m, block_n, block_k = blocks or (64, min(64, max(16, triton.next_power_of_2(N))), 32)
        grid = (triton.cdiv(M, block_m) * triton.cdiv(N, block_n),)
        _shift_mlp_kernel[grid](*args, **flags, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4)
    return out
