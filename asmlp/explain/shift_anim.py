"""The axial shift, step by step, and the positions one AS-MLP token mixer mixes (paper Fig. 2b and Fig. 3).

Everything here is computed with the project's own op, :func:`asmlp.ops.axial_shift`, and its channel grouping,
:func:`asmlp.ops.channel_groups`; nothing is drawn by hand:

* :func:`shift_frames` builds a ``C x H x W`` map of distinct values and the states of the official
  pad -> roll (group by group) -> crop procedure for the W shift and for the H shift. The "roll" states are the op
  applied to the zero-padded map (the pad is the largest offset, so nothing is lost), the crop states are the op
  applied to the map itself; cells that enter the map from outside are the zero fill (the paper's grey blocks).
* :func:`mixing_pattern` is the set of input positions that one output position of the token mixer reads: the
  adjoint of ``shift_W + shift_H`` (the op applied to a flipped one-hot map, one channel per group; see
  :func:`_mixer_support`). The 1x1 projections mix all channels at a position, so after each block the support is
  shared by every channel. One block gives the paper's cross (Fig. 3), ``block_count`` blocks the composition of
  crosses (a staircase diamond).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from ..ops import axial_shift, channel_groups
from .figures import (EMPTY, FILL_GREY, GROUP_COLOURS, INK, animation_controls, apply_style, discrete_colourscale,
                      map_axes, tint, title_text)

__all__ = ['shift_frames', 'mixing_pattern', 'shift_animation_figure', 'mixing_figure', 'PAPER_FIG3_CONFIGS']

PAPER_FIG3_CONFIGS = ((3, 1), (5, 1), (3, 2))  # the AS-MLP panels of the paper's Fig. 3: (shift size, dilation)
_DIMS = {'W': 3, 'H': 2}


def _check(shift_size: int, dilation: int) -> None:
    if isinstance(shift_size, bool) or not isinstance(shift_size, int) or shift_size < 1 or shift_size % 2 == 0:
        raise ValueError(f'shift_size must be an odd integer >= 1, got {shift_size!r}')
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f'dilation must be an integer >= 1, got {dilation!r}')


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach()[0].cpu().numpy().copy()  # a copy: the caller may keep writing into x


def shift_frames(channels: int = 5, height: int = 7, width: int = 9, shift_size: int = 3, dilation: int = 1) -> dict:
    """The axial shift of a small ``channels x height x width`` map, with every intermediate state.

    Returns a dict:

    * ``channels``, ``height``, ``width``, ``shift_size``, ``dilation``, ``pad`` (= largest offset
      ``shift_size // 2 * dilation``);
    * ``input``: (C, H, W) float array of distinct values ``1 .. C*H*W`` (so 0 always means zero fill);
    * ``groups``: ``[{'index', 'start', 'stop', 'offset'}]`` from :func:`channel_groups` (channels
      ``start:stop`` move by ``offset`` along the shifted axis, ``out[i] = in[i - offset]``);
      ``group_of_channel``: (C,) int;
    * ``shift_w`` / ``shift_h``: (C, H, W) ``axial_shift(x, 3 / 2, shift_size, dilation)``;
      ``fill_w`` / ``fill_h``: (C, H, W) bool, the zero-filled cells (the op applied to a map of ones is 0 there);
    * ``steps``: the animation states, each ``{'name', 'label', 'direction' ('input', 'W' or 'H'), 'group'
      (index or None), 'offset', 'canvas', 'cropped'}``. ``canvas`` is (C, H + 2 pad, W + 2 pad), the map in the
      middle of a zero margin; ``cropped`` is False for the pad-and-roll states (cells may sit in the margin) and
      True for the final state of each direction (the op's output, margin empty). Groups with offset 0 get no
      step of their own (the state would not change); their channels are named in the next step's label.
    """
    _check(shift_size, dilation)
    for name, value in (('channels', channels), ('height', height), ('width', width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be a positive integer, got {value!r}')
    pad = shift_size // 2 * dilation
    x = torch.arange(1, channels * height * width + 1, dtype=torch.float64).reshape(1, channels, height, width)
    ones = torch.ones_like(x)
    padded = F.pad(x, (pad, pad, pad, pad))
    groups = [dict(index=g, start=c0, stop=c1, offset=off)
              for g, (c0, c1, off) in enumerate(channel_groups(channels, shift_size, dilation))]
    group_of_channel = np.empty(channels, dtype=np.int64)
    for g in groups:
        group_of_channel[g['start']:g['stop']] = g['index']

    out = dict(channels=channels, height=height, width=width, shift_size=shift_size, dilation=dilation, pad=pad,
               input=_np(x), groups=groups, group_of_channel=group_of_channel)
    steps = [dict(name='input', label='input: C x H x W, channels split into groups', direction='input', group=None,
                  offset=0, canvas=_np(padded), cropped=False)]
    for direction, dim in _DIMS.items():
        shifted = axial_shift(x, dim, shift_size, dilation)
        out[f'shift_{direction.lower()}'] = _np(shifted)
        out[f'fill_{direction.lower()}'] = _np(axial_shift(ones, dim, shift_size, dilation)) == 0
        rolled = axial_shift(padded, dim, shift_size, dilation)  # pad = largest offset: nothing leaves the canvas
        state = padded.clone()
        waiting = []
        axis = 'right' if direction == 'W' else 'down'
        for g in groups:
            state[:, g['start']:g['stop']] = rolled[:, g['start']:g['stop']]
            chans = _channel_range(g['start'], g['stop'])
            if g['offset'] == 0:
                waiting.append(f'group {g["index"]} ({chans}) stays')
                continue
            move = f'moves {abs(g["offset"])} {axis if g["offset"] > 0 else _opposite(axis)}'
            label = f'{direction} shift: group {g["index"]} ({chans}) {move}'
            if waiting:
                label += '; ' + ', '.join(waiting)
                waiting = []
            steps.append(dict(name=f'{direction}-g{g["index"]}', label=label, direction=direction,
                              group=g['index'], offset=g['offset'], canvas=_np(state), cropped=False))
        steps.append(dict(name=f'{direction}-crop',
                          label=f'{direction} shift: crop to H x W; cells that came from outside are zero (grey)',
                          direction=direction, group=None, offset=0, canvas=_np(F.pad(shifted, (pad,) * 4)),
                          cropped=True))
    out['steps'] = steps
    return out


def _channel_range(c0: int, c1: int) -> str:
    return f'channel {c0}' if c1 - c0 == 1 else f'channels {c0}-{c1 - 1}'


def _opposite(axis: str) -> str:
    return {'right': 'left', 'down': 'up'}[axis]


def _mixer_support(support: torch.Tensor, shift_size: int, dilation: int, branches: Sequence[str] = ('W', 'H'),
                   channels: int | None = None) -> torch.Tensor:
    """Input positions read by the output positions in ``support`` (bool HxW) through the given shift branches.

    Output ``i`` of a shift reads input ``i - offset`` of its group (``out[i] = in[i - offset]``), and the 1x1
    projection after the shift mixes all channels, so a position reads ``support`` moved by ``-offset`` for every
    channel group. That is the op's adjoint; here it is the op itself applied to the spatially flipped support
    (flipping turns a move by ``+offset`` into one by ``-offset``), copied into one channel per group of a
    ``channels``-channel map (default ``shift_size`` channels: every group present; a map with fewer channels than
    ``shift_size * ceil(C / shift_size)`` has fewer groups, see :func:`channel_groups`). Only the bounding box of
    ``support`` plus the largest offset is shifted: positions further away cannot be reached, and where the box
    meets the map's border the op's own zero fill applies.
    """
    n_groups = len(channel_groups(shift_size if channels is None else channels, shift_size, dilation))
    h, w = support.shape
    rows, cols = torch.nonzero(support.any(1)).flatten(), torch.nonzero(support.any(0)).flatten()
    if rows.numel() == 0:
        return torch.zeros_like(support)
    reach = shift_size // 2 * dilation
    y0, y1 = max(int(rows[0]) - reach, 0), min(int(rows[-1]) + reach + 1, h)
    x0, x1 = max(int(cols[0]) - reach, 0), min(int(cols[-1]) + reach + 1, w)
    window = support[y0:y1, x0:x1].flip(0, 1).to(torch.float32).expand(1, n_groups, y1 - y0, x1 - x0)
    mixed = sum(axial_shift(window, _DIMS[b], shift_size, dilation) for b in branches)
    out = torch.zeros_like(support)
    out[y0:y1, x0:x1] = mixed[0].sum(0).flip(0, 1) > 0
    return out


def mixing_pattern(shift_size: int = 5, dilation: int = 1, block_count: int = 1,
                   size: int | tuple[int, int] | None = None, branch: str | None = None,
                   channels: int | None = None) -> np.ndarray:
    """Which input positions the centre output position mixes after ``block_count`` AS-MLP token mixers.

    Returns a bool array of ``size`` (default: just large enough, plus a one-cell margin), centre at
    ``(H // 2, W // 2)``. One block: ``shift_size`` positions along the row (W branch) and ``shift_size`` along
    the column (H branch), ``dilation`` apart, i.e. the cross of the paper's Fig. 3. ``branch='W'`` / ``'H'``
    keeps one branch (for one block). Positions beyond the map's border are zero fill and are not mixed.
    ``channels``: the channel count of the map (default: ``shift_size``, every offset present); with fewer
    channels than groups need (e.g. 8 channels, shift 5: groups of 2, offsets -2..+1 only) the pattern is the
    one the op really produces.
    """
    _check(shift_size, dilation)
    if isinstance(block_count, bool) or not isinstance(block_count, int) or block_count < 0:
        raise ValueError(f'block_count must be an integer >= 0, got {block_count!r}')
    if branch not in (None, 'W', 'H'):
        raise ValueError(f"branch must be None, 'W' or 'H', got {branch!r}")
    if size is None:
        size = 2 * block_count * (shift_size // 2) * dilation + 3
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    support = torch.zeros(h, w, dtype=torch.bool)
    support[h // 2, w // 2] = True
    for _ in range(block_count):
        support = _mixer_support(support, shift_size, dilation, ('W', 'H') if branch is None else (branch,), channels)
    return support.numpy()


# ------------------------------------------------------------------------------------------------ figures

def _strip(canvas: np.ndarray) -> tuple[np.ndarray, int]:
    """Channels of a (C, h, w) array side by side with one blank column between them -> (h, C*(w+1)-1)."""
    c, h, w = canvas.shape
    strip = np.full((h, c * (w + 1) - 1), np.nan)
    for i in range(c):
        strip[:, i * (w + 1):i * (w + 1) + w] = canvas[i]
    return strip, w + 1


def _codes(data: dict, step: dict) -> tuple[np.ndarray, np.ndarray]:
    """Colour codes and texts of one step's canvas, channels side by side.

    Codes: 0 empty (margin, nothing there), 1 zero fill inside the map (grey), ``2 + g`` a value of group ``g``
    inside the map, ``2 + G + g`` a value of group ``g`` in the margin (light: it will be cropped away).
    """
    canvas = step['canvas']
    c, hp, wp = canvas.shape
    pad, n_groups = data['pad'], len(data['groups'])
    inside = np.zeros((hp, wp), dtype=bool)
    inside[pad:hp - pad, pad:wp - pad] = True
    group = data['group_of_channel'][:, None, None]
    codes = np.where(canvas != 0, np.where(inside, 2 + group, 2 + n_groups + group), np.where(inside, 1, 0))
    text = np.where(canvas != 0, canvas.astype(np.int64).astype(str), np.where(inside, '0', ''))
    code_strip, _ = _strip(codes.astype(np.float64))
    text_strip = np.full(code_strip.shape, '', dtype=object)
    for i in range(c):
        text_strip[:, i * (wp + 1):i * (wp + 1) + wp] = text[i]
    return code_strip, text_strip


def shift_animation_figure(channels: int = 5, height: int = 7, width: int = 9, shift_size: int = 3,
                           dilation: int = 1, show_values: bool = True, duration_ms: int = 900) -> go.Figure:
    """Animated axial shift: the channel groups move one by one along W (pad, roll, crop), then along H.

    One heatmap: the C channels side by side, each inside its zero margin (dashed box = the map). Colour = the
    channel group, light = in the margin (cropped away at the end), grey = zero fill. Frames follow
    :func:`shift_frames` ``['steps']``; Play/Pause and a slider drive them.
    """
    data = shift_frames(channels, height, width, shift_size, dilation)
    steps, pad, n_groups = data['steps'], data['pad'], len(data['groups'])
    colours = [GROUP_COLOURS[g % len(GROUP_COLOURS)] for g in range(n_groups)]
    scale = discrete_colourscale([EMPTY, FILL_GREY] + [tint(c, 0.3) for c in colours]
                                 + [tint(c, 0.75) for c in colours])
    n_codes = 2 + 2 * n_groups
    hp, wp = height + 2 * pad, width + 2 * pad

    def trace(step):
        codes, text = _codes(data, step)
        return go.Heatmap(
            z=codes, text=text if show_values else None, texttemplate='%{text}' if show_values else None,
            textfont=dict(size=9, color=INK), colorscale=scale, zmin=-0.5, zmax=n_codes - 0.5, showscale=False,
            xgap=1, ygap=1, hovertemplate='value %{text}<extra></extra>' if show_values else None,
            hoverinfo=None if show_values else 'skip')

    subtitle = (f'shift size {shift_size}, dilation {dilation} · dashed box = the map · light = outside it '
                f'(cropped at the end) · grey = zero fill')
    fig = go.Figure(data=[trace(steps[0])])
    fig.frames = [go.Frame(name=s['name'], data=[trace(s)], traces=[0],
                           layout=dict(title=dict(text=title_text(_title(data, s), subtitle))))
                  for s in steps]
    shapes, annotations = [], []
    for c in range(channels):
        x0 = c * (wp + 1)
        shapes.append(dict(type='rect', x0=x0 + pad - 0.5, x1=x0 + pad + width - 0.5, y0=pad - 0.5,
                           y1=pad + height - 0.5, line=dict(color=INK, width=1.5, dash='dash'), layer='above'))
        g = data['groups'][data['group_of_channel'][c]]
        annotations.append(dict(x=x0 + (wp - 1) / 2, y=-0.9, xref='x', yref='y', showarrow=False, yanchor='bottom',
                                text=f'ch {c} · g{g["index"]} ({g["offset"]:+d})',
                                font=dict(size=10, color=colours[g['index']])))
    apply_style(fig, title=_title(data, steps[0]), subtitle=subtitle, height=int(150 + 26 * hp))
    fig.update_layout(shapes=shapes, annotations=annotations)
    map_axes(fig)
    fig.update_yaxes(range=[hp - 0.5, -1.6], autorange=False)
    animation_controls(fig, [s['name'] for s in steps], [_short(s) for s in steps], duration_ms=duration_ms)
    return fig


def _title(data: dict, step: dict) -> str:
    return step['label'] if step['direction'] != 'input' else (
        f'input: {data["channels"]} channels in {len(data["groups"])} groups, offsets '
        + ', '.join(f'{g["offset"]:+d}' for g in data['groups']))


def _short(step: dict) -> str:
    if step['direction'] == 'input':
        return 'input'
    return f'{step["direction"]} crop' if step['cropped'] else f'{step["direction"]} g{step["group"]}'


def mixing_figure(configs: Sequence[tuple[int, int]] = PAPER_FIG3_CONFIGS, blocks: int = 1,
                  size: int | None = None, duration_ms: int = 900) -> go.Figure:
    """The positions one output mixes, one panel per ``(shift_size, dilation)`` (default: the paper's Fig. 3).

    ``blocks=1``: one token mixer, coloured by branch (row = W shift, column = H shift, centre = both).
    ``blocks > 1``: frames over 1..``blocks`` stacked blocks, each position coloured by the block that first
    reaches it (crosses of crosses: a staircase diamond), with Play/Pause and a slider.
    """
    configs = [tuple(c) for c in configs]
    if not configs:
        raise ValueError('configs must name at least one (shift_size, dilation)')
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f'blocks must be an integer >= 1, got {blocks!r}')
    if size is None:
        size = max(2 * blocks * (s // 2) * d + 3 for s, d in configs)
    titles = [f's={s}, d={d}' for s, d in configs]
    fig = make_subplots(rows=1, cols=len(configs), subplot_titles=titles, horizontal_spacing=0.04)
    centre = size // 2

    if blocks == 1:
        scale = discrete_colourscale([EMPTY, GROUP_COLOURS[0], GROUP_COLOURS[1], INK])
        for i, (s, d) in enumerate(configs):
            w_branch = mixing_pattern(s, d, 1, size, branch='W')
            h_branch = mixing_pattern(s, d, 1, size, branch='H')
            code = w_branch * 1 + h_branch * 2
            fig.add_trace(go.Heatmap(
                z=code, colorscale=scale, zmin=-0.5, zmax=3.5, showscale=False, xgap=1, ygap=1,
                customdata=np.array(['', 'W branch (row)', 'H branch (column)', 'both: the position itself'],
                                    dtype=object)[code],
                hovertemplate='dy %{y}, dx %{x}<br>%{customdata}<extra></extra>',
                x=np.arange(size) - centre, y=np.arange(size) - centre), row=1, col=i + 1)
        apply_style(fig, title='Positions one output mixes in one AS-MLP block (computed with axial_shift)',
                    height=380, subtitle=f'<span style="color:{GROUP_COLOURS[0]}">■</span> W shift (row) · '
                                         f'<span style="color:{GROUP_COLOURS[1]}">■</span> H shift (column) · '
                                         f'<span style="color:{INK}">■</span> the output position itself')
        map_axes(fig)
        return fig

    first = np.zeros((len(configs), size, size), dtype=np.int64)  # block that first reaches a position (0: none)
    for i, (s, d) in enumerate(configs):
        for k in range(blocks, 0, -1):
            first[i][mixing_pattern(s, d, k, size)] = k
    colours = [EMPTY] + [tint(GROUP_COLOURS[0], a) for a in np.linspace(0.0, 0.75, blocks)]
    scale = discrete_colourscale(colours)

    def traces(k):
        return [go.Heatmap(z=np.where((first[i] > 0) & (first[i] <= k), first[i], 0), colorscale=scale,
                           zmin=-0.5, zmax=blocks + 0.5, showscale=False, xgap=1, ygap=1,
                           x=np.arange(size) - centre, y=np.arange(size) - centre,
                           hovertemplate='dy %{y}, dx %{x}<br>reached by block %{z}<extra></extra>')
                for i in range(len(configs))]

    for i, tr in enumerate(traces(1)):
        fig.add_trace(tr, row=1, col=i + 1)
    subtitle = 'darker = reached by an earlier block'

    def title(k):
        return f'Positions one output mixes after {k} AS-MLP block{"s" if k > 1 else ""} (crosses of crosses)'

    fig.frames = [go.Frame(name=f'{k}', data=traces(k), traces=list(range(len(configs))),
                           layout=dict(title=dict(text=title_text(title(k), subtitle))))
                  for k in range(1, blocks + 1)]
    apply_style(fig, title=title(1), subtitle=subtitle, height=440)
    map_axes(fig)
    animation_controls(fig, [f'{k}' for k in range(1, blocks + 1)], prefix='blocks: ', duration_ms=duration_ms)
    return fig
