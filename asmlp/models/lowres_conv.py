"""Convolutions of bilinearly resized maps, computed at the low resolution: same function, fewer MACs.

UperNet's ``fpn_bottleneck`` (Xiao et al. 2018; mmseg ``UPerHead``) runs a 3x3 conv over the concatenation of four
maps, three of them upsampled from 1/8, 1/16 and 1/32 to 1/4 resolution; SETR-PUP (Zheng et al. 2021) runs its 3x3
convs on 2x-upsampled maps. A conv is linear and a bilinear resize acts on each channel alike, so for a k x k kernel
with "same" zero padding

    conv(resize(x), W) = sum_{ky,kx} S_{ky,kx}( resize( W_{ky,kx} x ) )

where ``W_{ky,kx} x`` is a 1x1 conv at the LOW resolution and ``S`` shifts by (ky - k//2, kx - k//2) with zero fill.
The resize is separable (``R_h`` along H, ``R_w`` along W, each a matrix with <= 2 non-zeros a row), and a shift of
its output is a shift of the matrix's rows, so the sum collapses into two matrix products per map:

    out = sum_ky A_ky (sum_kx Z_{ky,kx} B_kx^T),   A_ky = S_ky R_h,  B_kx = S_kx R_w,  Z = W_{ky,kx} x.

The matrices are obtained from ``F.interpolate`` itself (applied to an identity), so ``align_corners`` and the
size-based scale follow PyTorch exactly. In float64 the result equals the direct computation to ~1e-14
(``tests/test_lowres_conv.py``); in bf16 it differs from fp32 by the same ~0.4% as the direct bf16 conv does.

This is an inference speed-up only: FLOP counts (:func:`asmlp.metrics.count_gmacs`) follow the papers' architecture
and run inside :func:`direct_convolutions`, as does training (the heads use it only in eval mode).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

__all__ = ['conv_of_resized', 'direct_convolutions', 'lowres_enabled', 'interpolation_matrix', 'resized_conv_macs',
           'use_lowres']

_ENABLED = contextvars.ContextVar('asmlp_lowres_conv', default=True)


def lowres_enabled() -> bool:
    """Whether heads may use :func:`conv_of_resized` (False inside :func:`direct_convolutions`)."""
    return _ENABLED.get()


@contextlib.contextmanager
def direct_convolutions() -> Iterator[None]:
    """Within this context the heads compute convolutions of resized maps literally, as the papers describe them."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _eager_cache(fn):
    """``functools.lru_cache`` for eager calls only: while tracing (``torch.compile`` / ``torch.export``) the tensor
    is computed in the graph instead, so no fake tensor is cached (and later handed to eager code) or becomes an
    exported program's constant."""
    cached = functools.lru_cache(maxsize=256)(fn)

    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args) if torch.compiler.is_compiling() else cached(*args)

    wrapper.cache_clear, wrapper.cache_info = cached.cache_clear, cached.cache_info
    return wrapper


@_eager_cache
def interpolation_matrix(size_in: int, size_out: int, align_corners: bool) -> torch.Tensor:
    """(size_out, size_in) float64 matrix of a 1-D bilinear resize, as ``F.interpolate`` computes it."""
    eye = torch.eye(size_in, dtype=torch.float64).view(1, size_in, size_in, 1)
    return F.interpolate(eye, size=(size_out, 1), mode='bilinear', align_corners=align_corners)[0, :, :, 0].T


def _shift_rows(matrix: torch.Tensor, offset: int) -> torch.Tensor:
    """Row r of the result is row r + offset of ``matrix`` (zero where that is outside): a zero-filled shift."""
    out = torch.zeros_like(matrix)
    n = matrix.shape[0]
    lo, hi = max(0, -offset), min(n, n - offset)
    if lo < hi:
        out[lo:hi] = matrix[lo + offset:hi + offset]
    return out


def _tap_matrices(size_in: int, size_out: int, kernel: int, align_corners: bool) -> torch.Tensor:
    """(kernel, size_out, size_in): the resize matrix shifted for each kernel tap along one axis."""
    matrix = interpolation_matrix(size_in, size_out, align_corners)
    return torch.stack([_shift_rows(matrix, tap - kernel // 2) for tap in range(kernel)])


@_eager_cache
def _column_taps(size_in: int, size_out: int, kernel: int, align_corners: bool) -> torch.Tensor:
    """(size_out, kernel * size_in), column index kx * size_in + j: the W-step's right-hand matrix."""
    taps = _tap_matrices(size_in, size_out, kernel, align_corners)
    return taps.permute(1, 0, 2).reshape(size_out, kernel * size_in)


@_eager_cache
def _row_taps(size_in: int, size_out: int, kernel: int, align_corners: bool) -> torch.Tensor:
    """(size_out, size_in * kernel), column index i * kernel + ky: the H-step's left-hand matrix."""
    taps = _tap_matrices(size_in, size_out, kernel, align_corners)
    return taps.permute(1, 2, 0).reshape(size_out, size_in * kernel)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls on ``x`` run in: the autocast dtype where autocast is on for its device, else its own."""
    try:
        if torch.is_autocast_enabled(x.device.type):
            return torch.get_autocast_dtype(x.device.type)
    except RuntimeError:  # a device type without autocast (meta)
        pass
    return x.dtype


def resized_conv_macs(in_size: Sequence[int], out_size: Sequence[int], in_channels: int, out_channels: int,
                      kernel: int) -> tuple[int, int]:
    """(direct, low-resolution) multiply-accumulates of ``conv(resize(x))`` for one map of ``in_size`` (h, w)."""
    (h, w), (height, width) = in_size, out_size
    taps = kernel * kernel
    direct = taps * in_channels * out_channels * height * width
    lowres = (taps * in_channels * out_channels * h * w  # the per-tap 1x1 convs
              + kernel * kernel * h * width * w * out_channels  # along W: per tap, (W x w) @ (w x C) for each row
              + height * width * out_channels * kernel * h)  # along H, taps and rows summed in one product
    return direct, lowres


def use_lowres(maps: Sequence[torch.Tensor], weight_out_channels: int, kernel: int, size: Sequence[int]) -> bool:
    """True when :func:`conv_of_resized` is enabled and needs at most half the MACs of the direct convs.

    Half, not less: its products run below the conv kernels' efficiency and it copies the tap maps once (measured
    with bf16 on a 2-core EPYC: UperNet-T's bottleneck at 512x683 0.21 s instead of 0.76 s, MAC ratio 0.17; SETR-PUP's
    last conv, ratio 0.67, 0.22 s against 0.24 s -- no gain worth the path, so it stays direct).
    """
    if not lowres_enabled():
        return False
    direct = lowres = 0
    for x in maps:
        d, low = resized_conv_macs(x.shape[-2:], size, x.shape[1], weight_out_channels, kernel)
        direct, lowres = direct + d, lowres + low
    return 2 * lowres <= direct


def conv_of_resized(maps: Sequence[torch.Tensor], weights: Sequence[torch.Tensor], size: Sequence[int],
                    align_corners: bool = False) -> torch.Tensor:
    """``sum_i conv2d(interpolate(maps[i], size, 'bilinear'), weights[i], padding=k // 2)`` without bias, computed
    at the maps' own resolutions. ``weights[i]``: (C_out, C_in_i, k, k), k odd and the same for all. Returns an
    (N, C_out, H, W) tensor in channels_last memory."""
    if len(maps) != len(weights) or not maps:
        raise ValueError(f'need as many weights as maps (>= 1), got {len(maps)} maps and {len(weights)} weights')
    height, width = size  # ints, or symbolic sizes while tracing (int() would specialise them)
    batch = maps[0].shape[0]
    out_channels, _, kernel, kernel_w = weights[0].shape
    if kernel != kernel_w or kernel % 2 == 0:
        raise ValueError(f'conv_of_resized needs square odd kernels, got {kernel}x{kernel_w}')
    dtype = _compute_dtype(maps[0])
    rows, row_mats = [], []
    for x, weight in zip(maps, weights):
        if weight.shape[0] != out_channels or weight.shape[2:] != (kernel, kernel) or weight.shape[1] != x.shape[1]:
            raise ValueError(f'weight {tuple(weight.shape)} does not fit map {tuple(x.shape)} and '
                             f'({out_channels}, C, {kernel}, {kernel})')
        _, in_channels, h, w = x.shape
        # Z[n, i, j, ky, kx, o] = sum_c W[o, c, ky, kx] x[n, c, i, j]: every tap's 1x1 conv in one GEMM.
        taps = weight.permute(1, 2, 3, 0).reshape(in_channels, kernel * kernel * out_channels)
        z = torch.matmul(x.permute(0, 2, 3, 1).to(dtype), taps.to(dtype))
        # Along W: for each (n, i, ky), sum_kx B_kx @ Z[n, i, :, ky, kx, :] as one product over K = (kx, j).
        z = z.view(batch, h, w, kernel, kernel, out_channels).permute(0, 1, 3, 4, 2, 5)
        z = z.reshape(batch * h * kernel, kernel * w, out_channels)
        cols = _column_taps(w, width, kernel, align_corners).to(device=x.device, dtype=dtype)
        rows.append(torch.matmul(cols, z).view(batch, h * kernel, width * out_channels))  # K index: i * k + ky
        row_mats.append(_row_taps(h, height, kernel, align_corners))
    # Along H: taps, rows and maps summed in one product.
    row_mat = torch.cat(row_mats, 1).to(device=maps[0].device, dtype=dtype)
    out = torch.matmul(row_mat, torch.cat(rows, 1) if len(rows) > 1 else rows[0])
    return out.view(batch, height, width, out_channels).permute(0, 3, 1, 2)
