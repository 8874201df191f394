"""The axial shift: fast path == official reference bit for bit; reference == the official index rule."""
import itertools
import math

import pytest
import torch

from asmlp.ops import axial_shift, axial_shift_reference, channel_groups

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
FORMATS = (torch.contiguous_format, torch.channels_last)
SHAPES = [
    (1, 96, 12, 10),  # AS-MLP-T stage-0 channels, groups [20, 20, 20, 20, 16]
    (2, 7, 5, 6),  # C not divisible by any shift size
    (1, 3, 4, 9),  # C < shift size: fewer groups than offsets
    (2, 1, 3, 3),  # single channel
    (1, 16, 1, 7),  # H = 1
    (2, 10, 6, 1),  # W = 1
    (3, 20, 2, 2),  # map smaller than the offsets
]


def fresh(shape, dtype, memory_format):
    """New random values on every call (never zeros), so no test passes on stale or unwritten memory."""
    x = torch.randn(shape, dtype=torch.float64).add_(torch.sign(torch.randn(shape, dtype=torch.float64)) * 0.5)
    return x.to(dtype).contiguous(memory_format=memory_format)


def index_rule(x, dim, shift_size, dilation):
    """The official CUDA kernel's rule, element by element: group g = c // ceil(C/s), read in[pos - (g - s//2) d]."""
    n, c, h, w = x.shape
    group = math.ceil(c / shift_size)
    out = torch.zeros_like(x)
    for ci, hi, wi in itertools.product(range(c), range(h), range(w)):
        offset = (ci // group - shift_size // 2) * dilation
        src = [hi, wi]
        src[dim - 2] -= offset
        if 0 <= src[0] < h and 0 <= src[1] < w:
            out[:, ci, hi, wi] = x[:, ci, src[0], src[1]]
    return out


@pytest.mark.parametrize('shift_size', [1, 3, 5, 7, 9])
@pytest.mark.parametrize('dilation', [1, 2, 3])
def test_fast_equals_reference_forward_and_backward(shift_size, dilation):
    for shape, dtype, memory_format, dim in itertools.product(SHAPES, DTYPES, FORMATS, (2, 3, -2, -1)):
        x = fresh(shape, dtype, memory_format).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        out = axial_shift(x, dim, shift_size, dilation)
        ref = axial_shift_reference(x_ref, dim, shift_size, dilation)
        case = f'{shape} {dtype} {memory_format} dim={dim}'
        assert out.dtype == dtype and out.shape == x.shape, case
        assert torch.equal(out, ref), case
        assert out.is_contiguous(memory_format=memory_format), case
        grad = fresh(shape, dtype, memory_format)
        out.backward(grad)
        ref.backward(grad)
        assert torch.equal(x.grad, x_ref.grad), case


@pytest.mark.parametrize('shift_size,dilation', [(3, 1), (5, 1), (7, 1), (3, 2), (5, 3)])
def test_reference_follows_the_official_index_rule(shift_size, dilation):
    for shape, dim in itertools.product([(2, 11, 5, 7), (1, 96, 3, 4), (1, 2, 4, 4)], (2, 3)):
        x = fresh(shape, torch.float64, torch.contiguous_format)
        assert torch.equal(axial_shift_reference(x, dim, shift_size, dilation),
                           index_rule(x, dim, shift_size, dilation))


def test_paper_example_shift_5_along_w():
    # the official shift (svip-lab/AS-MLP models/shift_cuda.py):
    # channel groups 0..4 read in[w+2], in[w+1], in[w], in[w-1], in[w-2]
    x = torch.arange(1., 10.).expand(1, 5, 1, 9).contiguous()
    rows = axial_shift(x, 3, 5)[0, :, 0].tolist()
    assert rows == [
        [3, 4, 5, 6, 7, 8, 9, 0, 0],
        [2, 3, 4, 5, 6, 7, 8, 9, 0],
        [1, 2, 3, 4, 5, 6, 7, 8, 9],
        [0, 1, 2, 3, 4, 5, 6, 7, 8],
        [0, 0, 1, 2, 3, 4, 5, 6, 7],
    ]


@pytest.mark.parametrize('channels,sizes', [
    (96, [20, 20, 20, 20, 16]), (192, [39] * 4 + [36]), (384, [77] * 4 + [76]), (768, [154] * 4 + [152]),
    (128, [26] * 4 + [24]), (1024, [205] * 4 + [204]), (3, [1, 1, 1]),
])
def test_channel_groups_follow_torch_chunk(channels, sizes):
    groups = channel_groups(channels, 5)
    assert [c1 - c0 for c0, c1, _ in groups] == sizes
    assert [t.shape[0] for t in torch.chunk(torch.empty(channels), 5)] == sizes
    assert [offset for *_, offset in groups] == list(range(-2, -2 + len(sizes)))


def test_out_of_place_and_input_untouched():
    x = fresh((2, 12, 6, 5), torch.float32, torch.contiguous_format)
    before = x.clone()
    out = axial_shift(x, 3, 5)
    assert torch.equal(x, before)
    assert out.data_ptr() != x.data_ptr()


def test_strided_view_input():
    base = fresh((2, 24, 9, 11), torch.float32, torch.contiguous_format)
    view = base[:, 3:20:2, 1:, ::2]  # not dense: the per-group route handles any strides
    assert torch.equal(axial_shift(view, 3, 5, 2), axial_shift_reference(view, 3, 5, 2))
    assert torch.equal(axial_shift(view, 2, 3), axial_shift_reference(view, 2, 3))


def test_gradcheck_and_second_order():
    x = fresh((1, 7, 4, 5), torch.float64, torch.contiguous_format).requires_grad_()
    for dim in (2, 3):
        assert torch.autograd.gradcheck(lambda t: axial_shift(t, dim, 5, 2), (x,))
        assert torch.autograd.gradgradcheck(lambda t: axial_shift(t, dim, 3), (x,))


@pytest.mark.parametrize('kwargs,match', [
    (dict(dim=1), 'dim'), (dict(dim=0), 'dim'), (dict(dim=4), 'dim'), (dict(dim=2.0), 'dim'),
    (dict(shift_size=0), 'shift_size'), (dict(shift_size=2), 'shift_size'), (dict(shift_size=-3), 'shift_size'),
    (dict(shift_size=5.0), 'shift_size'), (dict(shift_size=True), 'shift_size'),
    (dict(dilation=0), 'dilation'), (dict(dilation=-1), 'dilation'), (dict(dilation=1.5), 'dilation'),
])
def test_bad_arguments_are_named(kwargs, match):
    args = dict(dim=3, shift_size=5, dilation=1) | kwargs
    x = torch.randn(1, 4, 3, 3)
    for fn in (axial_shift, axial_shift_reference):
        with pytest.raises(ValueError, match=match):
            fn(x, **args)


@pytest.mark.parametrize('x,match', [
    (torch.randn(4, 3, 3), '4-D'), (torch.randn(1, 1, 4, 3, 3), '4-D'),
    (torch.ones(1, 4, 3, 3, dtype=torch.int64), 'float'), (torch.randn(1, 0, 3, 3), 'C, H, W >= 1'),
    (torch.randn(1, 4, 0, 3), 'C, H, W >= 1'),
])
def test_bad_tensors_are_refused(x, match):
    with pytest.raises(ValueError, match=match):
        axial_shift(x, 3)


@pytest.mark.parametrize('dilation', [1, 2])
def test_traced_formulation_equals_reference_and_its_adjoint(dilation):
    """``axial_shift_traced`` (what traced graphs record) == the reference; ``sign=-1`` is the reference's
    vector-Jacobian product (the adjoint), computed by autograd through the official pad/roll/cat code."""
    from asmlp.ops import axial_shift_traced
    for shape, memory_format, dim, shift_size in itertools.product(SHAPES, FORMATS, (2, 3), (3, 5, 7)):
        x = fresh(shape, torch.float64, memory_format).requires_grad_()
        case = f'{shape} {memory_format} dim={dim} shift={shift_size}'
        ref = axial_shift_reference(x, dim, shift_size, dilation)
        assert torch.equal(axial_shift_traced(x, dim, shift_size, dilation), ref), case
        grad = fresh(shape, torch.float64, memory_format)
        vjp, = torch.autograd.grad(ref, x, grad)
        assert torch.equal(axial_shift_traced(grad, dim, shift_size, dilation, sign=-1), vjp), case


def test_bench_shift_rows_in_bf16_on_the_cpu():
    """``bench shift --precision bf16``: the same four timings per direction in that dtype; no Triton column on a
    CPU (the interpreter is not a benchmark)."""
    from asmlp.bench.shift import bench_shift, format_rows
    rows = bench_shift(shapes=[(1, 10, 6, 7)], repeat=3, precision='bf16')
    assert [r['axis'] for r in rows] == ['W', 'H']
    assert all(set(r) == {'shape', 'axis', 'copy', 'official', 'materialised', 'fast'} for r in rows)
    lines = format_rows(rows).splitlines()
    assert 'triton' not in lines[0] and len({line.count('|') for line in lines}) == 1
