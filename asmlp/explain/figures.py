"""Shared plotly styling for the explainer figures: one look, animation controls, map helpers.

Every figure of :mod:`asmlp.explain` is a plain ``plotly.graph_objects.Figure`` meant to be embedded with
``fig.to_json()`` and drawn by plotly.js (``Plotly.newPlot`` + ``Plotly.addFrames``; gr.Plot drops frames:
it serialises only ``data`` and ``layout``, gradio ``components/plot.py``). Animated figures carry real
``frames``, a Play/Pause button pair and a slider whose steps animate to the frame of the same name.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = [
    'FONT', 'INK', 'MUTED', 'GRID', 'FILL_GREY', 'EMPTY', 'GROUP_COLOURS', 'SEQUENTIAL',
    'title_text', 'apply_style', 'animation_controls', 'map_axes', 'discrete_colourscale', 'tint', 'block_reduce',
]

FONT = dict(family='Inter, "Helvetica Neue", Arial, sans-serif', size=12, color='#1f2937')
INK = '#1f2937'        # text, outlines
MUTED = '#6b7280'      # secondary text
GRID = '#e5e7eb'       # cell gaps, frames
FILL_GREY = '#9ca3af'  # zero fill (the paper's grey blocks)
EMPTY = '#f8fafc'      # nothing there (off-map, outside a receptive field)
# colour-blind-safe qualitative set (Okabe-Ito, without yellow/black), one per channel group / architecture
GROUP_COLOURS = ('#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#7f7f7f', '#8c564b', '#17becf')
# maps of magnitudes (ERF): ColorBrewer YlGnBu with 0 = white, so a map reads on a light page
SEQUENTIAL = [[i / 8, c] for i, c in enumerate(
    ('#ffffff', '#edf8b1', '#c7e9b4', '#7fcdbb', '#41b6c4', '#1d91c0', '#225ea8', '#253494', '#081d58'))]


def tint(colour: str, amount: float) -> str:
    """``colour`` (#rrggbb) mixed with white; ``amount`` 0 keeps it, 1 gives white."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(c + (255 - c) * amount) for c in rgb]
    return '#' + ''.join(f'{c:02x}' for c in mixed)


def discrete_colourscale(colours: Sequence[str]) -> list[list]:
    """A stepped colourscale for integer codes ``0..len(colours)-1`` (use with ``zmin=-0.5, zmax=n-0.5``)."""
    n = len(colours)
    scale = []
    for i, colour in enumerate(colours):
        scale += [[i / n, colour], [(i + 1) / n, colour]]
    return scale


def title_text(title: str, subtitle: str | None = None) -> str:
    """A title with an optional smaller, muted second line (legends, settings)."""
    return title if not subtitle else f'{title}<br><span style="font-size:11px;color:{MUTED}">{subtitle}</span>'


def apply_style(fig: go.Figure, title: str | None = None, height: int | None = None,
                width: int | None = None, subtitle: str | None = None) -> go.Figure:
    """The common look: white background, small title (+ muted subtitle line), compact margins."""
    fig.update_layout(
        template='plotly_white',
        font=FONT,
        title=dict(text=title_text(title, subtitle), font=dict(size=14, color=INK), x=0.01, xanchor='left',
                   yref='container', y=1, yanchor='top', pad=dict(t=22)) if title else None,
        margin=dict(l=16, r=16, t=(84 if subtitle else 64) if title else 36, b=16),
        paper_bgcolor='white',
        plot_bgcolor='white',
        hoverlabel=dict(font=dict(family=FONT['family'], size=11)),
        height=height,
        width=width,
    )
    fig.update_annotations(font=dict(size=11, color=INK))
    return fig


def map_axes(fig: go.Figure, row: int | None = None, col: int | None = None, show_ticks: bool = False) -> go.Figure:
    """Image-like axes for a heatmap: equal aspect, row 0 on top, no grid, optional ticks."""
    kw = {} if row is None else dict(row=row, col=col)
    fig.update_xaxes(showgrid=False, zeroline=False, showticklabels=show_ticks, ticks='', constrain='domain',
                     linecolor=GRID, mirror=True, showline=True, **kw)
    fig.update_yaxes(showgrid=False, zeroline=False, showticklabels=show_ticks, ticks='', autorange='reversed',
                     constrain='domain', linecolor=GRID, mirror=True, showline=True, **kw)
    # equal aspect: every y axis anchored to its own x axis
    for yaxis in fig.select_yaxes(**kw):
        yaxis.scaleanchor = yaxis.anchor or 'x'
        yaxis.scaleratio = 1
    return fig


def animation_controls(fig: go.Figure, frame_names: Sequence[str], step_labels: Sequence[str] | None = None,
                       duration_ms: int = 700, transition_ms: int = 0, prefix: str = '') -> go.Figure:
    """Play/Pause buttons and a slider over ``frame_names`` (the names of ``fig.frames``), below the plot."""
    step_labels = list(frame_names) if step_labels is None else list(step_labels)
    play = dict(frame=dict(duration=duration_ms, redraw=True), transition=dict(duration=transition_ms),
                fromcurrent=True, mode='immediate')
    pause = dict(frame=dict(duration=0, redraw=False), transition=dict(duration=0), mode='immediate')
    fig.update_layout(
        updatemenus=[dict(
            type='buttons', direction='left', showactive=False, x=0.0, xanchor='left', y=0, yanchor='top',
            pad=dict(t=8, r=8), bgcolor='white', bordercolor=GRID, font=dict(size=11),
            buttons=[dict(label='▶ Play', method='animate', args=[None, play]),
                     dict(label='❚❚ Pause', method='animate', args=[[None], pause])],
        )],
        sliders=[dict(
            active=0, x=0.16, len=0.84, xanchor='left', y=0, yanchor='top', pad=dict(t=8, b=4),
            currentvalue=dict(prefix=prefix, font=dict(size=11, color=MUTED), visible=True, xanchor='left'),
            font=dict(size=10, color=MUTED), tickcolor=GRID, bordercolor=GRID,
            steps=[dict(label=label, method='animate',
                        args=[[name], dict(frame=dict(duration=0, redraw=True), transition=dict(duration=0),
                                           mode='immediate')])
                   for name, label in zip(frame_names, step_labels)],
        )],
    )
    fig.update_layout(margin=dict(b=max(fig.layout.margin.b or 0, 96)))
    return fig


def block_reduce(array: np.ndarray, max_cells: int, reduce: str = 'mean', multiple_of: int = 1,
                 ) -> tuple[np.ndarray, int]:
    """Downsample a 2-D map by an integer factor so that neither side exceeds ``max_cells`` (for small JSON).

    The factor is a multiple of ``multiple_of`` (e.g. the patch size, so cells hold whole patches) unless no
    downsampling is needed. Returns ``(reduced, factor)``; ``reduce`` is 'mean' or 'max' (any pixel set marks a
    cell of a mask). The last partial block along a side is reduced over what is there.
    """
    h, w = array.shape
    factor = max(1, int(np.ceil(max(h, w) / max_cells)))
    if factor == 1:
        return array, 1
    factor = int(np.ceil(factor / multiple_of)) * multiple_of
    ph, pw = -h % factor, -w % factor
    padded = np.pad(array.astype(np.float64), ((0, ph), (0, pw)), constant_values=np.nan)
    blocks = padded.reshape((h + ph) // factor, factor, (w + pw) // factor, factor)
    out = np.nanmax(blocks, axis=(1, 3)) if reduce == 'max' else np.nanmean(blocks, axis=(1, 3))
    return out.astype(array.dtype if reduce == 'max' else np.float64), factor
