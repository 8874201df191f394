"""The explainer (asmlp.explain) against independent references.

* the cross of one AS-MLP block and its compositions: written out from the paper's rule (s positions along the row
  and s along the column, ``dilation`` apart; AS-MLP paper §3.2-3.3), composed by brute force;
* the shift animation: the paper's Fig. 2b case by hand, every frame against ``np.roll`` of the padded input;
* theoretical RFs: hand-derived masks (cross of 4x4 patches, Swin windows, ViT global), the stage extents of
  derived from the official code's strides and shifts, timm's own Swin attention mask, and the gradient support
  of the real backbones;
* ERF: exact zeros outside the theoretical RF (GroupNorm statistics frozen), side effects on the model;
* figures: real frames that differ, Play/Pause and a slider wired to the frame names.
"""
import itertools
import json

import numpy as np
import plotly
import pytest
import timm
import torch
from timm.models.swin_transformer import SwinTransformerBlock

import asmlp  # noqa: F401  (registers asmlp_tiny with timm)
from asmlp.explain import (PRESETS, effective_rf, erf_area_ratio, erf_figure, mixing_figure, mixing_pattern,
                           normalize_erf, rf_animation_figure, rf_extent, shift_animation_figure, shift_frames,
                           theoretical_rf)
from asmlp.explain.receptive_field import _swin_labels
from asmlp.models.swin import SwinPyramid
from asmlp.models.vit import ViTFeatures
from asmlp.ops import channel_groups


# ---------------------------------------------------------------------------------------------- references

def cross(shift_size, dilation, size, offsets=None):
    """The paper's one-block footprint: offsets along the row (W branch) and the column (H branch)."""
    r = shift_size // 2
    offsets = [j * dilation for j in range(-r, r + 1)] if offsets is None else offsets
    out = np.zeros((size, size), dtype=bool)
    c = size // 2
    for o in offsets:
        if 0 <= c + o < size:
            out[c, c + o] = True
            out[c + o, c] = True
    return out


def compose(pattern, step):
    """Minkowski sum of a pattern with a (centred) step pattern, by brute force over every pair of positions."""
    size = pattern.shape[0]
    c = size // 2
    out = np.zeros_like(pattern)
    for (y, x), (dy, dx) in itertools.product(zip(*np.nonzero(pattern)), zip(*np.nonzero(step))):
        yy, xx = y + dy - c, x + dx - c
        if 0 <= yy < size and 0 <= xx < size:
            out[yy, xx] = True
    return out


def numpy_shift(x, axis, shift_size, dilation):
    """Zero-fill shift, written independently: channel group g (ceil(C/s) channels) moves by (g - s//2) * d."""
    out = np.zeros_like(x)
    size = -(-x.shape[0] // shift_size)
    n = x.shape[axis]
    for c in range(x.shape[0]):
        offset = (c // size - shift_size // 2) * dilation
        for i in range(n):
            if 0 <= i - offset < n:
                src = [slice(None)] * x.ndim
                dst = [slice(None)] * x.ndim
                src[0] = dst[0] = c
                src[axis], dst[axis] = i - offset, i
                out[tuple(dst)] = x[tuple(src)]
    return out


def token_mask_to_pixels(tokens, patch, size):
    return np.kron(tokens, np.ones((patch, patch), dtype=bool))[:size[0], :size[1]]


def randomised(module, seed=0):
    """Random affine norms and position-bias tables (a unit LayerNorm makes a channel sum constant)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g), alpha=0.2)
            elif 'relative_position_bias_table' in name:
                p.copy_(torch.randn(p.shape, generator=g))
    return module


# ------------------------------------------------------------------------------------------ mixing pattern

@pytest.mark.parametrize('s, d', [(3, 1), (5, 1), (3, 2), (7, 3), (1, 1), (5, 2)])
def test_mixing_pattern_is_the_papers_cross(s, d):
    size = 2 * (s // 2) * d + 5
    got = mixing_pattern(s, d, size=size)
    assert got.dtype == bool and got.shape == (size, size)
    np.testing.assert_array_equal(got, cross(s, d, size))
    assert got.sum() == 2 * s - 1
    row = np.zeros_like(got)
    row[size // 2] = cross(s, d, size)[size // 2]
    np.testing.assert_array_equal(mixing_pattern(s, d, size=size, branch='W'), row)
    np.testing.assert_array_equal(mixing_pattern(s, d, size=size, branch='H'), row.T)


@pytest.mark.parametrize('s, d', [(3, 1), (5, 1), (3, 2), (7, 3)])
@pytest.mark.parametrize('blocks', [2, 3])
def test_mixing_pattern_composes_crosses(s, d, blocks):
    size = 2 * blocks * (s // 2) * d + 3
    step = cross(s, d, size)
    expected = step
    for _ in range(blocks - 1):
        expected = compose(expected, step)
    np.testing.assert_array_equal(mixing_pattern(s, d, blocks, size=size), expected)


def test_mixing_pattern_default_size_and_borders():
    assert mixing_pattern(5, 1).shape == (7, 7)
    assert mixing_pattern(5, 1, 2).shape == (11, 11)
    # a 3x3 map: the zero fill beyond the border is not mixed
    np.testing.assert_array_equal(mixing_pattern(5, 1, size=3), cross(3, 1, 3))
    assert mixing_pattern(3, 1, 0).sum() == 1


def test_mixing_pattern_with_fewer_groups_than_shift_size():
    # 8 channels, shift 5: groups of ceil(8/5) = 2 channels -> 4 groups, offsets -2..+1; out[i] = in[i - offset]
    offsets = [off for *_, off in channel_groups(8, 5)]
    assert offsets == [-2, -1, 0, 1]
    reads = [-o for o in offsets]  # relative positions read
    np.testing.assert_array_equal(mixing_pattern(5, 1, size=9, channels=8), cross(5, 1, 9, offsets=reads))


def test_mixing_pattern_rejects_bad_arguments():
    for bad in (dict(shift_size=4), dict(shift_size=0), dict(dilation=0), dict(block_count=-1), dict(branch='X')):
        with pytest.raises(ValueError):
            mixing_pattern(**{**dict(shift_size=3), **bad})


# --------------------------------------------------------------------------------------- shift animation

def test_shift_frames_paper_fig2b():
    # C=3, w=5, shift size 3: the three parts move by -1, 0, +1 with zero padding (grey)
    data = shift_frames(channels=3, height=1, width=5, shift_size=3)
    np.testing.assert_array_equal(data['input'][:, 0], [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15]])
    np.testing.assert_array_equal(data['shift_w'][:, 0], [[2, 3, 4, 5, 0], [6, 7, 8, 9, 10], [0, 11, 12, 13, 14]])
    np.testing.assert_array_equal(data['fill_w'][:, 0], [[0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    # H = 1: every H offset but 0 leaves the map
    np.testing.assert_array_equal(data['shift_h'][:, 0], [[0] * 5, [6, 7, 8, 9, 10], [0] * 5])
    assert [g['offset'] for g in data['groups']] == [-1, 0, 1]
    assert data['pad'] == 1


@pytest.mark.parametrize('c, h, w, s, d', [(5, 7, 9, 3, 1), (7, 4, 6, 5, 1), (4, 5, 5, 3, 2), (3, 1, 5, 3, 1)])
def test_shift_frames_follow_channel_groups(c, h, w, s, d):
    data = shift_frames(c, h, w, s, d)
    x = data['input']
    assert len(np.unique(x)) == x.size and x.min() > 0
    groups = channel_groups(c, s, d)
    assert [(g['start'], g['stop'], g['offset']) for g in data['groups']] == groups
    pad = data['pad']
    assert pad == s // 2 * d
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    for direction, axis in (('W', 2), ('H', 1)):
        np.testing.assert_array_equal(data[f'shift_{direction.lower()}'], numpy_shift(x, axis, s, d))
        np.testing.assert_array_equal(data[f'fill_{direction.lower()}'],
                                      numpy_shift(np.ones_like(x), axis, s, d) == 0)
        steps = [st for st in data['steps'] if st['direction'] == direction]
        moving = [g for g in groups if g[2] != 0]
        assert [st['group'] for st in steps[:-1]] == [groups.index(g) for g in moving]
        for st in steps[:-1]:
            assert not st['cropped'] and st['offset'] == groups[st['group']][2]
            for gi, (c0, c1, off) in enumerate(groups):
                expected = np.roll(padded[c0:c1], off, axis=axis) if gi <= st['group'] else padded[c0:c1]
                np.testing.assert_array_equal(st['canvas'][c0:c1], expected, err_msg=f'{st["name"]} group {gi}')
        crop = steps[-1]
        assert crop['cropped']
        np.testing.assert_array_equal(crop['canvas'], np.pad(numpy_shift(x, axis, s, d),
                                                              ((0, 0), (pad, pad), (pad, pad))))
    first = data['steps'][0]
    assert first['direction'] == 'input'
    np.testing.assert_array_equal(first['canvas'], padded)
    names = [st['name'] for st in data['steps']]
    assert len(set(names)) == len(names)


def _heatmaps(frame):
    return [np.asarray(t.z, dtype=float) for t in frame.data if t.type == 'heatmap']


def _frames_differ(fig, count=None):
    """Consecutive frames differ in their heatmaps (the first ``count`` pairs; default all)."""
    frames = fig.frames
    assert len(frames) > 1
    pairs = list(zip(frames, frames[1:]))[:count]
    for a, b in pairs:
        assert any(not np.array_equal(p, q, equal_nan=True) for p, q in zip(_heatmaps(a), _heatmaps(b))), \
            (a.name, b.name)


def _has_controls(fig):
    names = [f.name for f in fig.frames]
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert any('Play' in label for label in labels) and any('Pause' in label for label in labels)
    assert all(b.method == 'animate' for b in fig.layout.updatemenus[0].buttons)
    steps = fig.layout.sliders[0].steps
    assert [st.args[0][0] for st in steps] == names
    assert all(st.method == 'animate' for st in steps)
    payload = json.loads(fig.to_json())
    assert len(payload['frames']) == len(names)


def test_shift_animation_figure_frames():
    fig = shift_animation_figure(channels=5, height=7, width=9, shift_size=3)
    data = shift_frames(5, 7, 9, 3)
    assert [f.name for f in fig.frames] == [st['name'] for st in data['steps']]
    _frames_differ(fig)
    _has_controls(fig)
    # the titles name the moving group and its direction
    assert 'left' in fig.frames[1].layout.title.text and 'group 0' in fig.frames[1].layout.title.text


def test_mixing_figure_static_and_animated():
    fig = mixing_figure()
    assert len(fig.data) == 3 and not fig.frames
    for trace, (s, d) in zip(fig.data, [(3, 1), (5, 1), (3, 2)]):
        size = np.asarray(trace.z).shape[0]
        np.testing.assert_array_equal(np.asarray(trace.z) > 0, cross(s, d, size))
    fig = mixing_figure(configs=[(3, 1), (7, 3)], blocks=3)
    assert len(fig.frames) == 3
    _frames_differ(fig)
    _has_controls(fig)


# ------------------------------------------------------------------------------------------- theoretical RF

def test_asmlp_rf_first_block_is_a_cross_of_patches():
    steps = theoretical_rf('asmlp', input_size=224)
    assert len(steps) == 13 and steps[0].label == 'patch embed'
    grid = np.zeros((56, 56), dtype=bool)
    grid[28, 28] = True
    np.testing.assert_array_equal(steps[0].mask, token_mask_to_pixels(grid, 4, (224, 224)))
    tokens = np.zeros((56, 56), dtype=bool)
    c = 28
    tokens[c, c - 2:c + 3] = tokens[c - 2:c + 3, c] = True  # shift 5: arm s // 2 = 2 patches
    np.testing.assert_array_equal(steps[1].mask, token_mask_to_pixels(tokens, 4, (224, 224)))
    assert rf_extent(steps[1].mask) == dict(height=20, width=20, area_fraction=9 * 16 / 224 ** 2)


@pytest.mark.parametrize('shift_size, dilation', [(5, 1), (3, 2)])
def test_asmlp_rf_second_block_composes_crosses(shift_size, dilation):
    steps = theoretical_rf('asmlp', dict(shift_size=shift_size, dilation=dilation), input_size=(96, 96))
    step = cross(shift_size, dilation, 24)  # the 24x24 token grid, centre token 12
    tokens = compose(step, step)
    np.testing.assert_array_equal(steps[2].mask, token_mask_to_pixels(tokens, 4, (96, 96)))
    assert steps[2].mask.sum() > steps[1].mask.sum()


def test_asmlp_rf_stage_extents_match_reference():
    # derived from AS-MLP-T's shifts and strides: stage outputs C1..C4 = 36, 104, 496, 768 px (bounding box)
    steps = theoretical_rf('asmlp', input_size=1024)
    ends = [2, 4, 10, 12]
    assert [rf_extent(steps[i].mask)['height'] for i in ends] == [36, 104, 496, 768]
    assert [rf_extent(steps[i].mask)['width'] for i in ends] == [36, 104, 496, 768]
    # a staircase diamond, not a square: full width only through the centre token (pixels 512..543 of stage 4's
    # token 16), empty at the corners of its bounding box
    c4 = steps[12].mask
    full_rows = np.nonzero(c4.sum(1) == 768)[0]
    assert (full_rows.min(), full_rows.max()) == (512, 543)
    assert c4[144:912, 144:912].sum() == c4.sum() and not c4[144, 144] and not c4[911, 911]
    assert c4.sum() < 0.6 * 768 ** 2


def test_vit_rf_is_global_after_one_block():
    steps = theoretical_rf('vit', input_size=224)
    assert len(steps) == 13
    expected = np.zeros((224, 224), dtype=bool)
    expected[112:128, 112:128] = True  # the centre token (7, 7) of the 14x14 grid
    np.testing.assert_array_equal(steps[0].mask, expected)
    assert all(st.mask.all() for st in steps[1:])


def test_swin_rf_window_then_shifted_window():
    steps = theoretical_rf('swin', input_size=224)
    # centre token 28 of the 56x56 grid; window 7: W-MSA window [28, 35)
    expected = np.zeros((224, 224), dtype=bool)
    expected[112:140, 112:140] = True
    np.testing.assert_array_equal(steps[1].mask, expected)
    # SW-MSA (shift 3): the centre's shifted window holds tokens [24, 31), whose W-MSA windows span [21, 35)
    expected = np.zeros((224, 224), dtype=bool)
    expected[84:140, 84:140] = True
    np.testing.assert_array_equal(steps[2].mask, expected)
    assert 'SW-MSA' in steps[2].label and 'W-MSA' in steps[1].label


@pytest.mark.parametrize('size', [224, 512, (97, 131)])
def test_rf_grows_monotonically(size):
    for arch in PRESETS:
        steps = theoretical_rf(arch, input_size=size)
        areas = [st.mask.sum() for st in steps]
        assert areas == sorted(areas), arch
        assert all((a.mask <= b.mask).all() for a, b in zip(steps, steps[1:])), arch
        assert steps[-1].mask.shape == ((size, size) if isinstance(size, int) else size)


@pytest.mark.parametrize('h, w, window, shift', [(20, 20, 4, 2), (24, 15, 3, 1), (7, 7, 7, 3), (14, 21, 7, 3)])
def test_swin_labels_match_timm_attention_mask(h, w, window, shift):
    hp, wp = -(-h // window) * window, -(-w // window) * window
    block = SwinTransformerBlock(dim=4, input_resolution=(hp, wp), num_heads=1, window_size=window,
                                 shift_size=shift, always_partition=True)
    mask = block.get_attn_mask(torch.zeros(1, hp, wp, 4))  # (nW, N, N): 0 = may attend
    labels = np.roll(_swin_labels(h, w, window, shift), (-shift, -shift), axis=(0, 1))  # the rolled frame
    windows = labels.reshape(hp // window, window, wp // window, window).transpose(0, 2, 1, 3).reshape(-1, window ** 2)
    same = windows[:, :, None] == windows[:, None, :]
    np.testing.assert_array_equal(same, mask.numpy() == 0)


def test_rf_rejects_bad_arguments():
    with pytest.raises(ValueError):
        theoretical_rf('resnet')
    with pytest.raises(ValueError):
        theoretical_rf('swin', dict(shift_size=3))
    with pytest.raises(ValueError):
        theoretical_rf('vit', input_size=(0, 10))


def test_rf_animation_figure():
    fig = rf_animation_figure(input_size=224)
    assert len(fig.frames) == 13
    _frames_differ(fig, count=10)  # at 224 px all three are global from block 11 on: only the titles change
    assert len({json.dumps(f.to_plotly_json(), cls=plotly.utils.PlotlyJSONEncoder) for f in fig.frames}) == 13
    _has_controls(fig)
    assert len(fig.data) == 6  # a heatmap and the output-token box per architecture
    titles = [a.text for a in fig.frames[1].layout.annotations]
    assert any('AS-MLP-T' in t and '20x20' in t for t in titles)


# ----------------------------------------------------------------------------------------------------- ERF

def _support(erf):
    return erf > erf.max() * 1e-12


@pytest.mark.parametrize('embed_dim', [8, 10])
def test_asmlp_erf_is_zero_outside_theoretical_rf(embed_dim):
    torch.manual_seed(0)
    model = timm.create_model('asmlp_tiny', features_only=True, embed_dim=embed_dim, depths=(1, 1, 1, 1))
    image = torch.randn(1, 3, 64, 64)
    rf = theoretical_rf('asmlp', dict(depths=(1, 1, 1, 1), embed_dim=embed_dim), input_size=64)
    frozen = effective_rf(model, image, objective='sum', grad='abs', norm_stats='frozen')
    assert [m.shape for m in frozen] == [(64, 64)] * 4
    for stage, erf in enumerate(frozen):
        mask = rf[stage + 1].mask  # one block per stage: step k + 1 ends stage k
        assert (erf[~mask] == 0).all(), stage
        np.testing.assert_array_equal(erf > 0, mask)
        assert erf[32, 32] > 0
    # the true gradient also flows through GroupNorm(1, C)'s statistics, i.e. everywhere
    live = effective_rf(model, image, objective='sum', grad='abs')
    outside = ~rf[1].mask
    assert (live[0][outside] > 0).all()
    assert live[0][outside].max() < 0.2 * live[0].max()


def test_asmlp_erf_default_objective_centre():
    torch.manual_seed(1)
    model = timm.create_model('asmlp_tiny', features_only=True, embed_dim=8, depths=(1, 1, 1, 1))
    image = torch.randn(1, 3, 64, 64)
    erfs = effective_rf(model, image, norm_stats='frozen')  # RepLKNet: relu objective, relu gradient
    rf = theoretical_rf('asmlp', dict(depths=(1, 1, 1, 1), embed_dim=8), input_size=64)
    assert (erfs[0][~rf[1].mask] == 0).all()
    assert erfs[0][30:34, 30:34].sum() > 0


def test_swin_erf_support_equals_theoretical_rf():
    # window 4 at 72 px: the 18x18 stage-1 map is padded to 20 before the cyclic shift (mmseg / HF)
    torch.manual_seed(0)
    model = randomised(SwinPyramid('swin_tiny_patch4_window7_224', embed_dim=12, depths=(2, 2, 2, 2),
                                   num_heads=(1, 1, 1, 1), window_size=4))
    image = torch.randn(1, 3, 72, 72)
    rf = theoretical_rf('swin', dict(depths=(2, 2, 2, 2), window_size=4), input_size=72)
    erfs = effective_rf(model, image, objective='sum', grad='abs')
    for stage, erf in enumerate(erfs):
        np.testing.assert_array_equal(_support(erf), rf[2 * stage + 2].mask, err_msg=f'stage {stage}')
    assert not rf[2].mask.all()  # stage 1 is local


def test_vit_erf_reaches_far_from_the_centre():
    torch.manual_seed(0)
    model = ViTFeatures('vit_small_patch16_384', img_size=64, out_indices=(0, 1), embed_dim=32, depth=2,
                        num_heads=2)
    image = torch.randn(1, 3, 64, 64)
    erfs = effective_rf(model, image, objective='sum', grad='abs')
    assert [e.shape for e in erfs] == [(64, 64)] * 2
    for erf in erfs:
        assert erf[:16, :16].sum() > 0 and erf[-16:, -16:].sum() > 0  # corner patches, far from the centre
        assert _support(erf).all()
    only_last = effective_rf(model, image, stages=[-1], objective='sum', grad='abs')
    np.testing.assert_allclose(only_last[0], erfs[1], rtol=1e-5, atol=1e-12)


def test_erf_leaves_the_model_alone():
    model = timm.create_model('asmlp_tiny', features_only=True, embed_dim=8, depths=(1, 1, 1, 1))
    model.train()
    model.layers[0].eval()  # a mixed state must come back as it was
    modes = {name: m.training for name, m in model.named_modules()}
    first = next(model.parameters())
    first.grad = torch.full_like(first, 3.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = torch.randn(2, 3, 48, 40)
    effective_rf(model, image, norm_stats='frozen')
    effective_rf(model, image)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(first.grad, torch.full_like(first, 3.0))
    assert all(p.grad is None for p in list(model.parameters())[1:])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())
    assert image.grad is None and not image.requires_grad


def test_erf_under_inference_mode():
    model = timm.create_model('asmlp_tiny', features_only=True, embed_dim=8, depths=(1, 1, 1, 1))
    image = torch.randn(1, 3, 32, 32)
    expected = effective_rf(model, image, stages=[0])
    with torch.inference_mode():
        got = effective_rf(model, torch.randn(1, 3, 32, 32).copy_(image), stages=[0])
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[0].sum() > 0


def test_erf_rejects_bad_arguments():
    model = timm.create_model('asmlp_tiny', features_only=True, embed_dim=8, depths=(1, 1, 1, 1))
    for bad in (dict(objective='max'), dict(grad='square'), dict(norm_stats='off')):
        with pytest.raises(ValueError):
            effective_rf(model, torch.zeros(1, 3, 32, 32), **bad)
    with pytest.raises(ValueError):
        effective_rf(model, torch.zeros(3, 32, 32))


def test_normalize_and_area_ratio():
    erf = np.zeros((11, 11))
    erf[5, 5] = 9.0
    np.testing.assert_allclose(normalize_erf(erf, 'log')[5, 5], 1.0)
    assert erf_area_ratio(erf) == {t: (1, 1 / 121) for t in (0.2, 0.3, 0.5, 0.99)}
    assert normalize_erf(np.zeros((3, 3))).max() == 0
    np.testing.assert_allclose(normalize_erf(erf * 0 + 4, 'power'), 1.0)
    # uniform map: the smallest centred square with more than t of the total, by brute force
    flat = np.ones((9, 9))
    for t, (side, ratio) in erf_area_ratio(flat, (0.2, 0.5, 0.99)).items():
        brute = min(k for k in (1, 3, 5, 7, 9) if k * k > t * 81 or k == 9)
        assert side == brute and ratio == pytest.approx(brute ** 2 / 81)
    with pytest.raises(ValueError):
        normalize_erf(erf, 'sqrt')


def test_erf_figure():
    rng = np.random.default_rng(0)
    maps = {'A': [rng.random((300, 300)) for _ in range(3)], 'B': [rng.random((300, 300)) for _ in range(2)]}
    fig = erf_figure(maps, max_cells=100)
    assert len(fig.data) == 5
    for trace in fig.data:
        z = np.asarray(trace.z)
        assert z.shape == (100, 100) and 0 <= z.min() and z.max() <= 1 and trace.dx == 3
    json.loads(fig.to_json())
    assert len(erf_figure([rng.random((20, 20))]).data) == 1
