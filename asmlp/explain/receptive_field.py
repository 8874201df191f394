"""Theoretical receptive field (RF) of the centre output position, block by block, at input-pixel resolution.

The RF of an output position is the set of input pixels its value can depend on through the network's data path.
It is computed by propagating a binary support map backward, layer by layer, from a one-hot at the centre
``(h // 2, w // 2)`` of the layer's output grid to the image:

* patch embedding (``p x p``, stride ``p``, right/bottom zero padding): each token reads its ``p x p`` pixels;
* patch merging (2x2 gather, odd maps zero-padded right/bottom): each token reads its 2x2 tokens;
* AS-MLP block: the token mixer reads, for every position, the W-shift offsets along the row and the H-shift
  offsets along the column (the adjoint of the project's :func:`asmlp.ops.axial_shift`, see
  :func:`asmlp.explain.shift_anim.mixing_pattern`); the MLP and the residual are pointwise;
* Swin block (mmseg / HF semantics, as :class:`asmlp.models.swin.SwinPyramid`): the token map is padded
  right/bottom to a window multiple; W-MSA (even blocks) lets a token read every token of its window; SW-MSA (odd
  blocks) cyclically shifts the padded map by ``window // 2``, and a token reads the tokens of its shifted window
  that carry the same attention-mask region label (the mask of timm / mmseg); MLP and residual pointwise;
* ViT block: global self-attention (every token reads every token).

What is left out, on purpose (the usual convention; the effective RF of :mod:`asmlp.explain.erf` shows it):

* AS-MLP's norms are ``GroupNorm(1, C)`` over the whole map: their mean/variance make every output depend, very
  weakly, on every input. The RF here is the data path with the statistics held fixed (the ERF with
  ``norm_stats='frozen'`` equals it exactly; see the tests);
* Swin's masked attention adds -100 to the logits of other regions rather than -inf, so their weight is ~1e-44,
  not 0; those positions are treated as not attended.

The AS-MLP mixing uses the channel groups of the stage's channel count (``embed_dim * 2 ** stage``; None: every
offset present): a map with few channels can have fewer groups than ``shift_size`` (8 channels, shift 5: groups of
2, offsets -2..+1), and then the cross is one-sided.

Presets: :data:`PRESETS` ``'asmlp'`` = AS-MLP-T (patch 4, depths 2-2-6-2, shift 5, dilation 1, C 96), ``'swin'`` =
Swin-T (patch 4, depths 2-2-6-2, window 7), ``'vit'`` = ViT-S/16 (patch 16, 12 blocks); 12 blocks each.
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .figures import EMPTY, GROUP_COLOURS, INK, MUTED, animation_controls, apply_style, block_reduce, \
    discrete_colourscale, map_axes, tint
from .shift_anim import _mixer_support

__all__ = ['PRESETS', 'RFStep', 'theoretical_rf', 'rf_extent', 'rf_animation_figure']

PRESETS: dict[str, dict] = {
    'asmlp': dict(name='AS-MLP-T', patch_size=4, depths=(2, 2, 6, 2), shift_size=5, dilation=1, embed_dim=96),
    'swin': dict(name='Swin-T', patch_size=4, depths=(2, 2, 6, 2), window_size=7),
    'vit': dict(name='ViT-S/16', patch_size=16, depth=12),
}


class RFStep(NamedTuple):
    """One depth step: a label and the (H, W) bool mask of input pixels the centre output position depends on."""
    label: str
    mask: np.ndarray


class _Net(NamedTuple):
    layers: list[tuple]  # (kind, *params) in forward order
    grids: list[tuple[int, int]]  # input grid of each layer (layers[0]'s is the image); grids[i + 1] = its output
    steps: list[tuple[int, str]]  # (layer index whose output is recorded, label)


def _config(arch: str, config: Mapping | None) -> dict:
    if arch not in PRESETS:
        raise ValueError(f'arch must be one of {sorted(PRESETS)}, got {arch!r}')
    unknown = set(config or {}) - set(PRESETS[arch])
    if unknown:
        raise ValueError(f'unknown {arch} config keys {sorted(unknown)}; known: {sorted(PRESETS[arch])}')
    return {**PRESETS[arch], **(config or {})}


def _network(arch: str, cfg: dict, input_size: tuple[int, int]) -> _Net:
    layers: list[tuple] = [('embed', cfg['patch_size'])]
    steps = [(0, 'patch embed')]
    if arch == 'vit':
        for b in range(cfg['depth']):
            layers.append(('global',))
            steps.append((len(layers) - 1, f'block {b + 1}'))
    else:
        for i, depth in enumerate(cfg['depths']):
            if i > 0:
                layers.append(('merge',))
            for b in range(depth):
                if arch == 'asmlp':
                    channels = None if cfg['embed_dim'] is None else cfg['embed_dim'] * 2 ** i
                    layers.append(('asmlp', cfg['shift_size'], cfg['dilation'], channels))
                    steps.append((len(layers) - 1, f'stage {i + 1} · block {b + 1}'))
                else:
                    window = cfg['window_size']
                    shift = window // 2 if b % 2 else 0
                    layers.append(('swin', window, shift))
                    kind = 'SW-MSA' if shift else 'W-MSA'
                    steps.append((len(layers) - 1, f'stage {i + 1} · block {b + 1} ({kind})'))
    grids = [tuple(input_size)]
    for layer in layers:
        h, w = grids[-1]
        if layer[0] == 'embed':
            grids.append((math.ceil(h / layer[1]), math.ceil(w / layer[1])))
        elif layer[0] == 'merge':
            grids.append((math.ceil(h / 2), math.ceil(w / 2)))
        else:
            grids.append((h, w))
    return _Net(layers, grids, steps)


def _swin_labels(h: int, w: int, window: int, shift: int) -> np.ndarray:
    """Attention-group label of every token of the window-padded (Hp, Wp) map: tokens attend within one label.

    W-MSA: the window. SW-MSA: in the rolled frame (``torch.roll(x, -shift)``: rolled[i] = x[i + shift]) the window
    and the mask region (timm/mmseg slices ``(0, -window)``, ``(-window, -shift)``, ``(-shift, None)`` per axis);
    mapped back to the original positions by rolling the other way.
    """
    hp, wp = math.ceil(h / window) * window, math.ceil(w / window) * window
    rows, cols = np.arange(hp), np.arange(wp)
    win = (rows[:, None] // window) * (wp // window) + cols[None, :] // window
    if not shift:
        return win

    def region(idx, n):
        return np.where(idx < n - window, 0, np.where(idx < n - shift, 1, 2))

    label = win * 9 + region(rows, hp)[:, None] * 3 + region(cols, wp)[None, :]
    return np.roll(label, (shift, shift), axis=(0, 1))  # original position a sits at rolled a - shift


def _backward(net: _Net, last: int, seed: np.ndarray) -> np.ndarray:
    """Propagate the support ``seed`` (bool, on layer ``last``'s output grid) back to the input pixels."""
    support = seed
    for index in range(last, -1, -1):
        layer = net.layers[index]
        h, w = net.grids[index]
        kind = layer[0]
        if kind == 'embed':
            p = layer[1]
            support = np.kron(support, np.ones((p, p), dtype=bool))[:h, :w]
        elif kind == 'merge':
            support = np.kron(support, np.ones((2, 2), dtype=bool))[:h, :w]
        elif kind == 'asmlp':
            mixed = _mixer_support(torch.from_numpy(support), layer[1], layer[2], channels=layer[3]).numpy()
            support = mixed | support  # the residual (the mixer's offset-0 group already reads the position)
        elif kind == 'swin':
            labels = _swin_labels(h, w, layer[1], layer[2])
            hit = np.unique(labels[:h, :w][support])
            support = np.isin(labels[:h, :w], hit) | support
        elif kind == 'global':
            support = np.full((h, w), bool(support.any()))
        else:  # pragma: no cover - _network builds only the kinds above
            raise AssertionError(kind)
    return support.astype(bool)


def _centre_seed(grid: tuple[int, int]) -> np.ndarray:
    seed = np.zeros(grid, dtype=bool)
    seed[grid[0] // 2, grid[1] // 2] = True
    return seed


def _check_size(input_size) -> tuple[int, int]:
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f'input_size must be (H, W) positive integers, got {input_size!r}')
    return size


def theoretical_rf(arch: str, config: Mapping | None = None, input_size: int | tuple[int, int] = (224, 224),
                   ) -> list[RFStep]:
    """The theoretical RF of the centre output position after the patch embedding and after every block.

    ``arch``: 'asmlp', 'swin' or 'vit'; ``config`` overrides keys of the preset (:data:`PRESETS`), e.g.
    ``{'depths': (1, 1, 1, 1)}`` or ``{'shift_size': 3, 'dilation': 2}``. Returns ``[RFStep(label, mask)]``:
    ``1 + number of blocks`` entries, ``mask`` an ``input_size`` bool array. The centre is that of the map the
    step outputs, so after a patch merging it is the centre of the coarser grid.
    """
    size = _check_size(input_size)
    net = _network(arch, _config(arch, config), size)
    return [RFStep(label, _backward(net, last, _centre_seed(net.grids[last + 1]))) for last, label in net.steps]


def _token_boxes(arch: str, config: Mapping | None, input_size) -> list[tuple[int, int, int, int]]:
    """Pixel box ``(y0, y1, x0, x1)`` of the centre token of every step's output (the position whose RF it is)."""
    size = _check_size(input_size)
    net = _network(arch, _config(arch, config), size)
    boxes = []
    for last, _ in net.steps:
        # only the resampling layers: where the token sits, not what it reads
        support = _centre_seed(net.grids[last + 1])
        for index in range(last, -1, -1):
            layer, (h, w) = net.layers[index], net.grids[index]
            if layer[0] in ('embed', 'merge'):
                f = layer[1] if layer[0] == 'embed' else 2
                support = np.kron(support, np.ones((f, f), dtype=bool))[:h, :w]
        ys, xs = np.nonzero(support)
        boxes.append((int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1))
    return boxes


def rf_extent(mask: np.ndarray) -> dict:
    """Bounding box and area of an RF mask: ``{'height', 'width'}`` in pixels, ``area_fraction`` of the image."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return dict(height=0, width=0, area_fraction=0.0)
    return dict(height=int(ys.max() - ys.min() + 1), width=int(xs.max() - xs.min() + 1),
                area_fraction=float(mask.mean()))


def rf_animation_figure(input_size: int | tuple[int, int] = (224, 224), archs: Sequence[str] = ('asmlp', 'swin', 'vit'),
                        configs: Mapping[str, Mapping] | None = None, max_cells: int = 64,
                        duration_ms: int = 700) -> go.Figure:
    """Theoretical RF over depth, the architectures side by side; one frame per depth step.

    Panel ``a``, frame ``k``: the RF after ``k`` blocks (0 = patch embedding) of ``archs[a]``; dark = already in
    the RF at step ``k - 1``, bright = new at this step; the small box is the output token whose RF it is.
    Architectures with fewer steps keep their last one. Maps are shown at most ``max_cells`` cells a side: a cell
    is ``factor`` x ``factor`` pixels, ``factor`` a multiple of the smallest patch size (at 224 px: 4, the exact
    patch grid), and any pixel in the RF marks the cell.
    """
    size = _check_size(input_size)
    configs = dict(configs or {})
    archs = list(archs)
    if not archs:
        raise ValueError('archs must name at least one architecture')
    results = {a: theoretical_rf(a, configs.get(a), size) for a in archs}
    boxes = {a: _token_boxes(a, configs.get(a), size) for a in archs}
    names = {a: _config(a, configs.get(a))['name'] for a in archs}
    n_steps = max(len(r) for r in results.values())
    fig = make_subplots(rows=1, cols=len(archs), horizontal_spacing=0.03)
    patch = min(_config(a, configs.get(a))['patch_size'] for a in archs)
    _, factor = block_reduce(np.zeros(size, dtype=bool), max_cells, 'max', multiple_of=patch)
    centre = (factor - 1) / 2

    def panel(a, k):
        steps = results[a]
        k = min(k, len(steps) - 1)
        mask = steps[k].mask
        before = steps[k - 1].mask if k > 0 else np.zeros_like(mask)
        code = np.where(mask, np.where(before, 1, 2), 0).astype(np.uint8)
        code, _ = block_reduce(code, max_cells, 'max', multiple_of=patch)
        y0, y1, x0, x1 = boxes[a][k]
        heat = go.Heatmap(z=code.astype(np.uint8), x0=centre, dx=factor, y0=centre, dy=factor,
                          colorscale=scale[a], zmin=-0.5, zmax=2.5, showscale=False,
                          hovertemplate='x %{x:.0f} px, y %{y:.0f} px<extra></extra>')
        token = go.Scatter(x=[x0 - 0.5, x1 - 0.5, x1 - 0.5, x0 - 0.5, x0 - 0.5],
                           y=[y0 - 0.5, y0 - 0.5, y1 - 0.5, y1 - 0.5, y0 - 0.5], mode='lines',
                           line=dict(color=INK, width=1.5), hoverinfo='skip', showlegend=False)
        stats = rf_extent(mask)
        title = (f'<b>{names[a]}</b> · {steps[k].label}<br><span style="color:{MUTED}">RF {stats["height"]}x'
                 f'{stats["width"]} px, {stats["area_fraction"]:.1%} of the image</span>')
        return heat, token, title

    scale = {a: discrete_colourscale([EMPTY, GROUP_COLOURS[i % len(GROUP_COLOURS)],
                                      tint(GROUP_COLOURS[i % len(GROUP_COLOURS)], 0.45)])
             for i, a in enumerate(archs)}

    def frame_content(k):
        data, annotations = [], []
        for i, a in enumerate(archs):
            heat, token, title = panel(a, k)
            data += [heat, token]
            domain = fig.layout[f'xaxis{i + 1 if i else ""}'].domain
            annotations.append(dict(x=(domain[0] + domain[1]) / 2, y=1.0, xref='paper', yref='paper',
                                    xanchor='center', yanchor='bottom', showarrow=False, text=title,
                                    font=dict(size=11, color=INK)))
        return data, annotations

    data, annotations = frame_content(0)
    for i in range(len(archs)):
        fig.add_trace(data[2 * i], row=1, col=i + 1)
        fig.add_trace(data[2 * i + 1], row=1, col=i + 1)
    frames = []
    for k in range(n_steps):
        frame_data, frame_annotations = frame_content(k)
        frames.append(go.Frame(name=str(k), data=frame_data, traces=list(range(len(frame_data))),
                               layout=dict(annotations=frame_annotations)))
    fig.frames = frames
    apply_style(fig, title='Theoretical receptive field of the centre position, block by block', height=500,
                subtitle=f'input {size[0]}x{size[1]} · dark: in the RF one step earlier · light: new at this step · '
                         f'box: the output position')
    fig.update_layout(annotations=annotations, margin=dict(t=104), showlegend=False)
    map_axes(fig)
    for i in range(len(archs)):
        fig.update_xaxes(range=[-0.5, size[1] - 0.5], row=1, col=i + 1)
        fig.update_yaxes(range=[size[0] - 0.5, -0.5], autorange=False, row=1, col=i + 1)
    labels = ['embed'] + [str(k) for k in range(1, n_steps)]
    animation_controls(fig, [str(k) for k in range(n_steps)], labels, duration_ms=duration_ms, prefix='blocks: ')
    return fig
