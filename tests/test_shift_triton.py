"""Triton kernels on every device where they run here: CPU tensors under the interpreter (TRITON_INTERPRET=1, set in
conftest.py: CI), CUDA tensors with the interpreter off (a GPU machine: ``TRITON_INTERPRET=0 pytest ...``); the other
device is skipped with the reason (:func:`asmlp.ops.triton_problem`). The plain shift is a bit-exact copy of the
reference in every dtype and layout (forward and backward); the fused token mixing matches reference shift + 1x1
convs + exact GELU computed in fp64 (TF32 off). Fresh random inputs each run (never zeros); every kernel output is
NaN-filled before the kernel runs (``POISON_OUTPUTS``), so an element a kernel misses fails the test.
"""
import itertools

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('triton')

from asmlp.ops import (  # noqa: E402
    axial_shift, axial_shift_pair, axial_shift_reference, tf32_disabled, triton_problem, use_backend,
)
from asmlp.ops import shift_triton  # noqa: E402

DEVICES = [pytest.param(name, marks=pytest.mark.skipif(bool(triton_problem(name)), reason=triton_problem(name)))
           for name in ('cpu', 'cuda')]

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
FORMATS = (torch.contiguous_format, torch.channels_last)
SHAPES = [  # none divides the tile sizes
    (2, 13, 7, 9),
    (1, 7, 5, 6),  # C not divisible by the shift size
    (3, 3, 4, 9),  # C < shift size: fewer groups than offsets
    (1, 20, 1, 7),  # H = 1
    (2, 10, 6, 1),  # W = 1
    (1, 96, 3, 5),  # AS-MLP-T stage-0 channels
]
SHIFTS = [(s, d) for s in (3, 5, 7, 9) for d in (1, 2, 3)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    monkeypatch.setattr(shift_triton, 'POISON_OUTPUTS', True)


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device the kernels run on here; fp32 convolutions of the references without TF32."""
    with tf32_disabled():
        yield torch.device(request.param)


def fresh(shape, dtype, memory_format=torch.contiguous_format, device='cpu'):
    """New random values on every call, bounded away from zero."""
    x = torch.randn(shape, dtype=torch.float64)
    x = x + torch.sign(x) * 0.5
    return x.to(device=device, dtype=dtype).contiguous(memory_format=memory_format)


@pytest.mark.parametrize('shift_size,dilation', SHIFTS)
def test_plain_shift_is_bit_exact(shift_size, dilation, device):
    cases = list(itertools.product(DTYPES, FORMATS))
    for i, (dtype, memory_format) in enumerate(cases):
        shape = SHAPES[(i + shift_size + dilation) % len(SHAPES)]
        x = fresh(shape, dtype, memory_format, device)
        ref_w, ref_h = (axial_shift_reference(x, dim, shift_size, dilation) for dim in (3, 2))
        case = f'{shape} {dtype} {memory_format}'
        out_w, out_h = shift_triton.shift_pair(x, shift_size, dilation)
        assert torch.equal(out_w, ref_w) and torch.equal(out_h, ref_h), case
        assert out_w.is_contiguous(memory_format=memory_format) and out_h.is_contiguous(memory_format=memory_format)
        single = shift_triton.shift(x, 2 if i % 2 else 3, shift_size, dilation)
        assert torch.equal(single, ref_h if i % 2 else ref_w), case
        # the adjoint: the opposite shift (single) and the two-input gather-sum (pair)
        grad_w, grad_h = fresh(shape, dtype, memory_format, device), fresh(shape, dtype, memory_format, device)
        leaf = x.clone().requires_grad_()
        torch.autograd.backward([axial_shift_reference(leaf, 3, shift_size, dilation),
                                 axial_shift_reference(leaf, 2, shift_size, dilation)], [grad_w, grad_h])
        assert torch.equal(shift_triton.shift_pair_adjoint(grad_w, grad_h, shift_size, dilation), leaf.grad), case
        back = shift_triton.shift(grad_w, 3, shift_size, dilation, -1)
        assert torch.equal(back, torch.autograd.grad(axial_shift_reference(leaf, 3, shift_size, dilation), leaf,
                                                     grad_w)[0]), case


@pytest.mark.parametrize('memory_format', FORMATS)
def test_small_tiles_partial_in_both_grid_axes(memory_format, device):
    """Tiles much smaller than the tensor: several programs along rows and columns, ragged last tiles."""
    for dtype, (shift_size, dilation) in [(torch.float16, (5, 1)), (torch.float32, (7, 2))]:
        x = fresh((2, 11, 5, 7), dtype, memory_format, device)
        out_w, out_h = shift_triton.shift_pair(x, shift_size, dilation, block=24, block_q=4)
        assert torch.equal(out_w, axial_shift_reference(x, 3, shift_size, dilation))
        assert torch.equal(out_h, axial_shift_reference(x, 2, shift_size, dilation))
        grad_w, grad_h = fresh(x.shape, dtype, memory_format, device), fresh(x.shape, dtype, memory_format, device)
        expected = shift_triton.shift_pair_adjoint(grad_w, grad_h, shift_size, dilation)
        assert torch.equal(shift_triton.shift_pair_adjoint(grad_w, grad_h, shift_size, dilation, block=24,
                                                           block_q=4), expected)


def test_strided_views_and_int64_indexing(monkeypatch, device):
    """Inputs that are neither contiguous nor channels_last (views), and the 64-bit index path."""
    base = fresh((2, 12, 9, 16), torch.float32, device=device)
    views = [base[:, 1:11, 1:8, ::2], base.permute(0, 1, 3, 2),
             base.contiguous(memory_format=torch.channels_last)[..., 3:]]
    for int64 in (False, True):
        monkeypatch.setattr(shift_triton, '_needs_int64', lambda *tensors: int64)
        for x in views:
            out_w, out_h = shift_triton.shift_pair(x, 5, 2)
            assert torch.equal(out_w, axial_shift_reference(x, 3, 5, 2))
            assert torch.equal(out_h, axial_shift_reference(x, 2, 5, 2))
    x = fresh((1, 20, 6, 7), torch.float32, device=device)
    w = fresh((20, 20), torch.float32, device=device)
    expected = shift_triton.shift_mlp(x, w, None, w, None, 5, 1)
    monkeypatch.setattr(shift_triton, '_needs_int64', lambda *tensors: True)
    assert torch.allclose(shift_triton.shift_mlp(x, w, None, w, None, 5, 1), expected, rtol=0, atol=1e-6)


def test_shift_ops_autograd_bit_exact_through_backend(device):
    """Backend "triton": forward, first and second order gradients equal the reference's bit for bit."""
    for dtype, memory_format in [(torch.float32, torch.channels_last), (torch.bfloat16, torch.contiguous_format)]:
        x = fresh((2, 9, 5, 6), dtype, memory_format, device)
        leaf, leaf_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
        grads = [fresh(x.shape, dtype, memory_format, device).requires_grad_() for _ in range(2)]
        with use_backend('triton'):
            outs = axial_shift_pair(leaf, 5, 1)
            single = axial_shift(leaf, 2, 3, 2)
        refs = axial_shift_reference(leaf_ref, 3, 5, 1), axial_shift_reference(leaf_ref, 2, 5, 1)
        assert all(torch.equal(a, b) for a, b in zip(outs, refs))
        assert torch.equal(single, axial_shift_reference(x, 2, 3, 2))
        g, = torch.autograd.grad(outs, leaf, grads, create_graph=True)  # shift_pair_adjoint
        g_ref, = torch.autograd.grad(refs, leaf_ref, grads, create_graph=True)
        assert torch.equal(g, g_ref)
        probe = fresh(x.shape, dtype, memory_format, device)  # double backward: the adjoint's adjoint is shift_pair
        for a, b in zip(torch.autograd.grad(g, grads, probe), torch.autograd.grad(g_ref, grads, probe)):
            assert torch.equal(a, b)
        probe = fresh(x.shape, dtype, memory_format, device)
        assert torch.equal(torch.autograd.grad(single, leaf, probe)[0],
                           torch.autograd.grad(axial_shift_reference(leaf_ref, 2, 3, 2), leaf_ref, probe)[0])


# --------------------------------------------------------------------------------------------------------------------
# fused token mixing


def mlp_reference_fp64(x, weight_w, bias_w, weight_h, bias_h, shift_size, dilation):
    """Reference shift + 1x1 convs + exact GELU, all in fp64."""
    x = x.double()
    conv = [(w.double().reshape(w.shape[0], -1, 1, 1), None if b is None else b.double())
            for w, b in ((weight_w, bias_w), (weight_h, bias_h))]
    return sum(F.gelu(F.conv2d(axial_shift_reference(x, dim, shift_size, dilation), w, b))
               for dim, (w, b) in zip((3, 2), conv))


def relative_error(out, ref):
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


def mlp_params(channels, out_channels, dtype, bias=True, device='cpu'):
    scale = channels ** -0.5
    params = []
    for _ in range(2):
        params += [(fresh((out_channels, channels, 1, 1), torch.float64, device=device) * scale).to(dtype),
                   fresh((out_channels,), torch.float64, device=device).mul(0.3).to(dtype) if bias else None]
    return params


MLP_CASES = [  # (shape, out_channels, shift_size, dilation, blocks)
    ((2, 20, 7, 9), 20, 5, 1, None),
    ((1, 20, 5, 11), 20, 3, 2, (16, 16, 16)),  # K loop of two blocks, the second ragged; N and M ragged
    ((2, 37, 6, 5), 24, 7, 1, (32, 16, 16)),  # Cout != Cin
    ((1, 33, 9, 4), 33, 9, 3, None),
    ((1, 18, 3, 8), 18, 3, 3, (16, 32, 16)),
]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('memory_format', FORMATS)
def test_fused_token_mixing_matches_fp64_reference(dtype, memory_format, device):
    worst = 0.
    for i, (shape, out_channels, shift_size, dilation, blocks) in enumerate(MLP_CASES):
        x = fresh(shape, dtype, memory_format, device)
        params = mlp_params(shape[1], out_channels, dtype, bias=i != 2, device=device)
        out = shift_triton.shift_mlp(x, *params, shift_size, dilation, blocks=blocks)
        ref = mlp_reference_fp64(x, *params, shift_size, dilation)
        assert out.dtype == dtype and out.shape == ref.shape
        assert out.is_contiguous(memory_format=memory_format)
        assert torch.isfinite(out).all()
        error = relative_error(out, ref)
        assert error <= TOLERANCE[dtype], (shape, shift_size, dilation, blocks, error)
        worst = max(worst, error)
    print(f'fused {dtype} {memory_format} {device}: max relative error {worst:.2e}')


def test_fused_op_through_backend_and_autograd(device):
    """``axial_shift_mlp`` with backend triton: the fused op without grad; with grad the unfused path, whose
    gradients equal the fused op's own backward (``torch.ops.asmlp.shift_mlp`` called directly)."""
    from asmlp.ops import axial_shift_mlp
    x = fresh((2, 10, 6, 7), torch.float32, torch.channels_last, device)
    params = mlp_params(10, 10, torch.float32, device=device)
    ref = mlp_reference_fp64(x, *params, 5, 1)
    calls = []
    real = shift_triton.shift_mlp
    with use_backend('triton'), pytest.MonkeyPatch.context() as mp:
        mp.setattr(shift_triton, 'shift_mlp', lambda *a, **k: calls.append(1) or real(*a, **k))
        with torch.no_grad():
            assert relative_error(axial_shift_mlp(x, *params, 5, 1), ref) <= 1e-5 and calls == [1]
        leaves = [t.clone().requires_grad_() for t in (x, *params)]
        out = axial_shift_mlp(*leaves, 5, 1)  # grad needed: unfused (shift_pair + convs)
        assert calls == [1] and relative_error(out, ref) <= 1e-5
        probe = fresh(out.shape, torch.float32, device=device)
        expected = torch.autograd.grad(out, leaves, probe)
        fused_leaves = [t.detach().clone().requires_grad_() for t in leaves]
        fused = torch.ops.asmlp.shift_mlp(*fused_leaves, 5, 1)
        got = torch.autograd.grad(fused, fused_leaves, probe)
    assert calls == [1, 1]
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
