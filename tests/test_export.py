"""torch.export and torch.compile give what eager gives: AS-MLP blocks and the classifier on every shift backend in
NCHW and channels_last, and every segmenter family (UperNet on AS-MLP / Swin, SETR Naive / PUP / MLA, whole and
slide inference); an exported segmenter through AOTInductor (the ahead-of-time route of ZeroGPU Spaces).

Eager is the reference; it is itself tested against the official code (tests/test_shift.py, test_asmlp.py, ...).
fp32 outputs must agree to 1e-5 of the output's largest magnitude (the ops are the same; only kernel choices and
fusions may round differently).
"""
import pytest
import timm
import torch

import asmlp  # noqa: F401  (registers the timm models)
from asmlp.models.asmlp import AxialShift, AxialShiftedBlock
from asmlp.models.heads import MLANeck, SETRMLAHead, SETRUPHead
from asmlp.models.segmenter import InferenceConfig, Segmenter
from asmlp.models.vit import ViTFeatures
from asmlp.ops import use_backend
from asmlp.ops.backends import triton_status
from asmlp.zoo import build_segmenter

FORMATS = {'NCHW': torch.contiguous_format, 'channels_last': torch.channels_last}
BACKENDS = ['reference', 'fast', pytest.param('triton', marks=pytest.mark.skipif(
    bool(triton_status()), reason='Triton does not import here'))]
NANO_ZOO = ['upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano']


def assert_close(actual, expected, what=''):
    scale = expected.abs().max().item()
    diff = (actual - expected).abs().max().item()
    assert diff <= 1e-5 * scale, f'{what}: max |diff| {diff:.3g} against output scale {scale:.3g}'


def tiny_classifier():
    torch.manual_seed(0)
    return timm.create_model('asmlp_tiny', embed_dim=16, depths=(1, 1, 2, 1), num_classes=10).eval()


def image(height=64, width=96, fmt=torch.contiguous_format, channels=3):
    return torch.randn(1, channels, height, width, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=fmt)


def exported(model, x, **kwargs):
    return torch.export.export(model, (x,), **kwargs).module()


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('fmt', FORMATS)
def test_axial_shift_block_exports_and_compiles_exactly(backend, fmt):
    """The issue's case: a channels_last map after GroupNorm/GELU exported with the fast backend was off by up to
    3.4."""
    torch.manual_seed(0)
    mixer, block = AxialShift(16).eval(), AxialShiftedBlock(16).eval()
    x = torch.randn(1, 16, 8, 9).contiguous(memory_format=FORMATS[fmt])
    with use_backend(backend), torch.no_grad():
        for module in (mixer, block):
            expected = module(x)
            assert_close(exported(module, x)(x), expected, f'{type(module).__name__} exported')
            torch._dynamo.reset()
            compiled = torch.compile(module, backend='aot_eager', fullgraph=True)
            assert_close(compiled(x), expected, f'{type(module).__name__} compiled (aot_eager)')


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('fmt', FORMATS)
def test_classifier_exports_and_compiles_exactly(backend, fmt):
    model, x = tiny_classifier(), image(fmt=FORMATS[fmt])
    with use_backend(backend), torch.no_grad():
        expected = model(x)
        assert_close(exported(model, x)(x), expected, 'exported')
        torch._dynamo.reset()
        assert_close(torch.compile(model, backend='aot_eager', fullgraph=True)(x), expected, 'compiled')


def test_classifier_training_graph_gradients_match_eager():
    """Export for training keeps autograd: gradients through the traced shift equal eager's (the fast path's own
    backward is the opposite shift; the traced one differentiates pads and a concatenation)."""
    model, x = tiny_classifier(), image(fmt=torch.channels_last)
    model.train()  # drop path 0.2: use the deterministic part only
    for m in model.modules():
        if type(m).__name__ == 'DropPath':
            m.drop_prob = 0.
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    grads = []
    for fn in (model, compiled):
        model.zero_grad()
        fn(x).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for (name, _), eager, traced in zip(model.named_parameters(), *grads):
        assert_close(traced, eager, name)


def tiny_setr(kind: str, mode: str = 'whole') -> Segmenter:
    """SETR Naive / MLA shaped like the zoo's ViT-L models (same heads, same neck), narrowed to run in milliseconds."""
    torch.manual_seed(0)
    vit = dict(img_size=64, patch_size=8, embed_dim=32, depth=4, num_heads=2)
    if kind == 'naive':
        backbone = ViTFeatures('vit_small_patch16_384', out_indices=(0, 1, 2, 3), cls_token_in_blocks=True, **vit)
        head, neck = SETRUPHead(in_channels=32, channels=16, num_convs=1, up_scale=4, kernel_size=1, in_index=3), None
    else:
        backbone = ViTFeatures('vit_small_patch16_384', out_indices=(0, 1, 2, 3), cls_token_in_blocks=False, **vit)
        neck, head = MLANeck((32,) * 4, 16), SETRMLAHead((16,) * 4, channels=32, mla_channels=8, up_scale=4)
    inference = InferenceConfig(mode, crop_size=(64, 64), stride=(43, 43))
    return Segmenter(backbone, head, neck=neck, inference=inference).eval()


SEGMENTERS = {
    **{name: (lambda name=name: build_segmenter(name).eval()) for name in NANO_ZOO},
    'setr_naive (tiny)': lambda: tiny_setr('naive'),
    'setr_mla (tiny)': lambda: tiny_setr('mla'),
    'setr_pup_vit_nano, slide': lambda: Segmenter(
        **{k: getattr(build_segmenter('setr_pup_vit_nano'), k) for k in ('backbone', 'decode_head')},
        inference=InferenceConfig('slide', crop_size=(64, 64), stride=(43, 43))).eval(),
}


@pytest.mark.parametrize('name', SEGMENTERS)
def test_segmenter_exports_exactly(name):
    """Static shapes: ``torch.export.export(model, (x,))`` works and the program equals eager (NCHW and
    channels_last inputs). Before, tracing cached fake interpolation matrices on the heads (and so broke eager)."""
    torch.manual_seed(0)
    model = SEGMENTERS[name]()
    for fmt in FORMATS.values():
        x = image(64, 96, fmt)
        with torch.no_grad():
            program = exported(model, x)
            expected = model(x)  # after the export: tracing must leave nothing behind that eager then uses
            assert_close(program(x), expected, f'{name} {fmt}')


def test_compiled_segmenter_equals_eager():
    model, x = build_segmenter('upernet_asmlp_nano').eval(), image(64, 96)
    with torch.no_grad():
        expected = model(x)
        torch._dynamo.reset()
        assert_close(torch.compile(model, backend='aot_eager', fullgraph=True)(x), expected, 'compiled')


@pytest.mark.slow
def test_inductor_compiled_block_equals_eager():
    """The real compiler (Inductor, C++ kernels) on an AS-MLP block, both memory formats (the whole classifier
    goes through Inductor in the AOTInductor test below and in ``python -m asmlp bench compile``)."""
    torch.manual_seed(0)
    block = AxialShiftedBlock(16).eval()
    with torch.no_grad():
        torch._dynamo.reset()
        compiled = torch.compile(block)
        for fmt in FORMATS.values():
            x = torch.randn(1, 16, 8, 9).contiguous(memory_format=fmt)
            assert_close(compiled(x), block(x), f'inductor {fmt}')


@pytest.mark.slow
def test_aot_inductor_package_of_the_smallest_segmenter(tmp_path):
    """``torch._inductor.aoti_compile_and_package`` of the exported SETR-PUP nano (the smallest zoo model), loaded
    back and run: equal to eager."""
    model, x = build_segmenter('setr_pup_vit_nano').eval(), image(64, 64)
    with torch.no_grad():
        program = torch.export.export(model, (x,))
        path = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / 'setr.pt2'))
        loaded = torch._inductor.aoti_load_package(path)
        assert_close(loaded(x), model(x), 'AOTInductor')


@pytest.mark.parametrize('name', ['classifier', 'upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano'])
def test_compile_makes_one_graph_per_input_shape(name):
    """No graph breaks in the models' own code and no recompiles: one graph for repeated calls of one input shape
    and memory format. Before, Dynamo hit its recompile limit in the fast shift (strides and dispatch keys) and
    recompiled the block forward per channel width."""
    from torch._dynamo.testing import CompileCounter
    model = tiny_classifier() if name == 'classifier' else build_segmenter(name).eval()
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    with torch.no_grad():
        for _ in range(3):
            compiled(image(64, 96))
    assert counter.frame_count == 1, f'{counter.frame_count} graphs for one input shape'
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(image(64, 96))
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons


@pytest.mark.slow
def test_compiled_classifier_goes_dynamic_after_a_second_shape():
    """Dynamo's automatic dynamic shapes: a second input size compiles one graph with symbolic H, W, which then
    serves a third size (the classifier's shape logic is all symbolic: padding, merging, the shift's groups)."""
    from torch._dynamo.testing import CompileCounter
    model = tiny_classifier()
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    with torch.no_grad():
        for size in ((64, 96), (96, 64), (80, 112)):
            assert_close(compiled(image(*size)), model(image(*size)), f'{size}')
    assert counter.frame_count == 2, f'{counter.frame_count} graphs for three input shapes'


@pytest.mark.slow
def test_classifier_exports_with_dynamic_height_and_width():
    """``Dim.AUTO`` heights and widths stay symbolic (padding, patch merging and the shift's groups are all shape
    arithmetic): one program serves other sizes, odd ones included, equal to eager."""
    model = tiny_classifier()
    with torch.no_grad():
        program = torch.export.export(model, (image(64, 64),), dynamic_shapes=(
            {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO},))
        assert len(program.range_constraints) == 2  # H and W, not specialised
        module = program.module()
        for size in ((64, 64), (96, 160), (100, 77)):
            assert_close(module(image(*size)), model(image(*size)), f'{size}')
