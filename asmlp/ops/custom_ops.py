"""The Triton backend as PyTorch custom operators (``torch.ops.asmlp.*``), so autograd, ``torch.compile``,
FakeTensor / meta tensors and ``FlopCounterMode`` all see them as ordinary ops.

* ``asmlp::shift(x, dim, shift_size, dilation, sign) -> Tensor``: one direction; backward = the same op with
  ``-sign`` (the adjoint of a zero-fill shift is the opposite shift).
* ``asmlp::shift_pair(x, shift_size, dilation, sign) -> (Tensor, Tensor)``: (W-shifted, H-shifted) from one
  read of ``x``; backward = ``asmlp::shift_pair_adjoint``, whose backward is ``shift_pair`` again (any order).
* ``asmlp::shift_mlp(x, weight_w, bias_w, weight_h, bias_h, shift_size, dilation) -> Tensor``: AS-MLP's token
  mixing ``GELU(conv_W(shift_W x)) + GELU(conv_H(shift_H x))`` in one kernel (1x1 convs as matmuls over the
  channels, exact erf GELU). FLOPs: two matmuls, ``2 * M * N * K`` each with M = N*H*W pixels, N = output
  and K = input channels, exactly what ``FlopCounterMode`` counts for the two unfused 1x1 convs (bias excluded
  in both). Its backward (training) is the unfused computation's vector-Jacobian product.

The real implementations import :mod:`asmlp.ops.shift_triton` lazily; the fake (meta) implementations need no
Triton at all. Registered as ``torch.library.custom_op`` (opaque to Inductor, which calls the kernel as is):
``triton_op`` would let Inductor trace into the kernels, but it needs a real Triton launch under fake tensors
and cannot run the CPU interpreter path.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import register_flop_formula

from .layout import output_format

__all__ = ['shift', 'shift_mlp', 'shift_pair', 'shift_pair_adjoint']


def _triton():
    from . import shift_triton
    return shift_triton


# --------------------------------------------------------------------------------------------------------------------
# plain shift


@torch.library.custom_op('asmlp::shift', mutates_args=())
def shift(x: torch.Tensor, dim: int, shift_size: int, dilation: int, sign: int) -> torch.Tensor:
    return _triton().shift(x, dim, shift_size, dilation, sign)


@shift.register_fake
def _(x, dim, shift_size, dilation, sign):
    return torch.empty_like(x, memory_format=torch.preserve_format)


def _shift_setup(ctx, inputs, output):
    _, ctx.dim, ctx.shift_size, ctx.dilation, ctx.sign = inputs


def _shift_backward(ctx, grad):
    return shift(grad, ctx.dim, ctx.shift_size, ctx.dilation, -ctx.sign), None, None, None, None


shift.register_autograd(_shift_backward, setup_context=_shift_setup)


# --------------------------------------------------------------------------------------------------------------------
# two directions from one read, and the adjoint


@torch.library.custom_op('asmlp::shift_pair', mutates_args=())
def shift_pair(x: torch.Tensor, shift_size: int, dilation: int, sign: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _triton().shift_pair(x, shift_size, dilation, sign)


@shift_pair.register_fake
def _(x, shift_size, dilation, sign):
    out = torch.empty_like(x, memory_format=torch.preserve_format)
    return out, torch.empty_like(out)


@torch.library.custom_op('asmlp::shift_pair_adjoint', mutates_args=())
def shift_pair_adjoint(grad_w: torch.Tensor, grad_h: torch.Tensor, shift_size: int, dilation: int,
                       sign: int) -> torch.Tensor:
    return _triton().shift_pair_adjoint(grad_w, grad_h, shift_size, dilation, sign)


@shift_pair_adjoint.register_fake
def _(grad_w, grad_h, shift_size, dilation, sign):
    return torch.empty_like(grad_w, memory_format=torch.preserve_format)


def _pair_setup(ctx, inputs, output):
    ctx.args = inputs[-3:]


def _pair_backward(ctx, grad_w, grad_h):
    shift_size, dilation, sign = ctx.args
    return shift_pair_adjoint(grad_w, grad_h, shift_size, dilation, sign), None, None, None


def _pair_adjoint_backward(ctx, grad):
    grad_w, grad_h = shift_pair(grad, *ctx.args)
    return grad_w, grad_h, None, None, None


shift_pair.register_autograd(_pair_backward, setup_context=_pair_setup)
shift_pair_adjoint.register_autograd(_pair_adjoint_backward, setup_context=_pair_setup)


# --------------------------------------------------------------------------------------------------------------------
# fused token mixing


@torch.library.custom_op('asmlp::shift_mlp', mutates_args=())
def shift_mlp(x: torch.Tensor, weight_w: torch.Tensor, bias_w: Optional[torch.Tensor], weight_h: torch.Tensor,
              bias_h: Optional[torch.Tensor], shift_size: int, dilation: int) -> torch.Tensor:
    return _triton().shift_mlp(x, weight_w, bias_w, weight_h, bias_h, shift_size, dilation)


@shift_mlp.register_fake
def _(x, weight_w, bias_w, weight_h, bias_h, shift_size, dilation):
    batch, _, height, width = x.shape
    return torch.empty((batch, weight_w.shape[0], height, width), dtype=x.dtype, device=x.device,
                       memory_format=output_format(x))


def _mlp_setup(ctx, inputs, output):
    x, weight_w, bias_w, weight_h, bias_h, shift_size, dilation = inputs
    ctx.save_for_backward(x, weight_w, bias_w, weight_h, bias_h)
    ctx.args = shift_size, dilation


def _mlp_backward(ctx, grad):
    """Recompute the shifted inputs and pre-activations, then the unfused computation's gradients (all PyTorch /
    ``torch.ops.asmlp`` ops, so higher-order gradients work too)."""
    x, weight_w, bias_w, weight_h, bias_h = ctx.saved_tensors
    shift_size, dilation = ctx.args
    shifted = shift_pair(x, shift_size, dilation, 1)
    grads_x, grads = [], []
    for x_s, weight, bias in zip(shifted, (weight_w, weight_h), (bias_w, bias_h)):
        weight4 = weight.reshape(weight.shape[0], -1, 1, 1)
        pre = F.conv2d(x_s, weight4, bias)
        grad_pre = torch.ops.aten.gelu_backward(grad, pre, approximate='none')
        grads_x.append(F.conv2d(grad_pre, weight4.transpose(0, 1)))
        grad_weight = torch.einsum('nohw,nchw->oc', grad_pre, x_s).reshape(weight.shape)
        grads.append((grad_weight, None if bias is None else grad_pre.sum((0, 2, 3))))
    grad_x = shift_pair_adjoint(grads_x[0], grads_x[1], shift_size, dilation, 1)
    (grad_ww, grad_bw), (grad_wh, grad_bh) = grads
    return grad_x, grad_ww, grad_bw, grad_wh, grad_bh, None, None


shift_mlp.register_autograd(_mlp_backward, setup_context=_mlp_setup)


@register_flop_formula(torch.ops.asmlp.shift_mlp)
def _shift_mlp_flops(x_shape, weight_w_shape, bias_w_shape, weight_h_shape, bias_h_shape, *args, out_shape=None,
                     **kwargs) -> int:
    """Two 1x1 convs = two (N*H*W x K) @ (K x Cout) matmuls, 2*M*N*K FLOPs each (as aten.convolution counts)."""
    batch, channels, height, width = x_shape
    pixels = batch * height * width
    return 2 * pixels * channels * weight_w_shape[0] + 2 * pixels * channels * weight_h_shape[0]
