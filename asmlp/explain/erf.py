"""Effective receptive field (ERF) of backbone stage outputs (Luo et al., NeurIPS 2016; RepLKNet's scripts).

Method (DingXiaoH/RepLKNet-pytorch ``erf/visualize_erf.py`` and ``erf/analyze_erf.py``):

1. the backbone in eval mode, the image as the only tensor that needs a gradient;
2. per stage output: objective = the channels of the centre position ``(h // 2, w // 2)``, summed
   (``objective='relu'``, the default: RepLKNet's ``relu(out[:, :, h//2, w//2]).sum()``; ``'sum'``: Luo et al.'s
   gradient of 1 on every channel of the centre unit);
3. the gradient with respect to the input image, reduced over RGB (``grad='relu'``, the default: RepLKNet's
   ``relu(grad).sum(channels)``; ``'abs'``: ``|grad|`` summed) and averaged over the batch -> an (H, W) map.

Defaults follow RepLKNet so the maps compare with published ERF figures (RepLKNet, SLaK, VMamba). For the display,
:func:`normalize_erf` applies RepLKNet's ``log10(x + 1)`` then divides by the max (or VMamba's ``x ** 0.2``, or
the max only); :func:`erf_area_ratio` is RepLKNet's "high-contribution area ratio". RepLKNet averages 50 images
at 1024x1024; a single image gives a noisier map.

``norm_stats``: AS-MLP normalises with ``GroupNorm(1, C)`` over the whole map, so its statistics carry a (small)
gradient from every input pixel to every output: the true gradient (``'live'``, the default) is non-zero
everywhere. ``'frozen'`` treats the mean and variance of every ``nn.GroupNorm`` as constants (forward hooks, same
values); the ERF is then exactly zero outside the theoretical RF of :mod:`asmlp.explain.receptive_field`.
LayerNorm (Swin, ViT) is per token and eval-mode BatchNorm uses fixed statistics, so they are unaffected.

Cost: one forward and one backward per stage; AS-MLP-T on a shared 2-core CPU ~0.3 s at 224x224 and ~1.3 s at
512x512 (best of 3; several seconds when the cores are busy).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn as nn
from plotly.subplots import make_subplots

from .figures import INK, MUTED, SEQUENTIAL, apply_style, block_reduce, map_axes

__all__ = ['effective_rf', 'normalize_erf', 'erf_area_ratio', 'erf_figure', 'ERF_THRESHOLDS']

ERF_THRESHOLDS = (0.2, 0.3, 0.5, 0.99)


def _frozen_group_norm(module: nn.GroupNorm, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the same GroupNorm output, with the per-sample statistics detached from the graph."""
    x = args[0]
    groups = x.reshape(x.shape[0], module.num_groups, -1)
    mean = groups.mean(-1, keepdim=True).detach()
    var = groups.var(-1, unbiased=False, keepdim=True).detach()
    y = ((groups - mean) / torch.sqrt(var + module.eps)).reshape(x.shape)
    if module.affine:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = y * module.weight.reshape(shape) + module.bias.reshape(shape)
    return y


@contextmanager
def _eval_state(model: nn.Module, norm_stats: str) -> Iterator[None]:
    """Eval mode (and GroupNorm statistics hooks) for the duration; every module's mode restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    hooks = []
    try:
        model.eval()
        if norm_stats == 'frozen':
            hooks = [m.register_forward_hook(_frozen_group_norm) for m in model.modules()
                     if isinstance(m, nn.GroupNorm)]
        yield
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode


def effective_rf(backbone: nn.Module, image: torch.Tensor, stages: Sequence[int] | None = None, *,
                 objective: str = 'relu', grad: str = 'relu', norm_stats: str = 'live') -> list[np.ndarray]:
    """ERF maps of the backbone's outputs for ``image`` (a (B, 3, H, W) tensor, already normalised).

    ``backbone``: any module returning a list of NCHW maps (AS-MLP ``features_only``, ``SwinPyramid``,
    ``ViTFeatures``, or a segmenter's ``.backbone``). ``stages``: indices into that list (default all).
    Returns one float64 (H, W) array per stage: the raw gradient map (see the module docstring), averaged over
    the batch. The model's parameters' ``.grad`` are not touched and every module's train/eval mode is restored.
    """
    if objective not in ('relu', 'sum'):
        raise ValueError(f"objective must be 'relu' or 'sum', got {objective!r}")
    if grad not in ('relu', 'abs'):
        raise ValueError(f"grad must be 'relu' or 'abs', got {grad!r}")
    if norm_stats not in ('live', 'frozen'):
        raise ValueError(f"norm_stats must be 'live' or 'frozen', got {norm_stats!r}")
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        raise ValueError(f'image must be a (B, C, H, W) tensor, got {getattr(image, "shape", type(image))}')
    param = next(backbone.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else image.device
    # inference_mode(False): callers (a Gradio handler) may run under torch.inference_mode / no_grad
    with _eval_state(backbone, norm_stats), torch.inference_mode(False), torch.enable_grad():
        x = image.detach().to(device=device, dtype=dtype).clone().requires_grad_(True)
        outs = backbone(x)
        outs = [outs] if isinstance(outs, torch.Tensor) else list(outs)
        chosen = list(range(len(outs))) if stages is None else [range(len(outs))[i] for i in stages]
        maps = []
        for n, i in enumerate(chosen):
            out = outs[i]
            centre = out[:, :, out.shape[2] // 2, out.shape[3] // 2]
            target = (torch.relu(centre) if objective == 'relu' else centre).sum()
            (g,) = torch.autograd.grad(target, x, retain_graph=n < len(chosen) - 1)
            g = torch.relu(g) if grad == 'relu' else g.abs()
            maps.append(g.sum(1).mean(0).double().cpu().numpy())
    return maps


def normalize_erf(erf: np.ndarray, mode: str | None = 'log') -> np.ndarray:
    """Rescale an ERF map to [0, 1] for display: ``'log'`` RepLKNet's ``log10(x + 1) / max``; ``'power'``
    VMamba's ``x ** 0.2 / max``; ``'max'`` ``x / max``; None: unchanged. An all-zero map stays zero.

    Note ``'log'`` is scale dependent (``log10(x + 1)`` is nearly linear for the small gradients of one image).
    """
    erf = np.asarray(erf, dtype=np.float64)
    if mode is None:
        return erf
    if mode == 'log':
        out = np.log10(erf + 1)
    elif mode == 'power':
        out = np.power(np.clip(erf, 0, None), 0.2)
    elif mode == 'max':
        out = erf.copy()
    else:
        raise ValueError(f"mode must be 'log', 'power', 'max' or None, got {mode!r}")
    top = out.max()
    return out / top if top > 0 else out


def erf_area_ratio(erf: np.ndarray, thresholds: Sequence[float] = ERF_THRESHOLDS) -> dict[float, tuple[int, float]]:
    """RepLKNet's high-contribution area ratio: per threshold ``t``, the smallest centred square (side ``2i + 1``,
    clipped at the borders) whose sum exceeds ``t`` of the total; returns ``{t: (side, area / (H * W))}``.

    RepLKNet applies it to the ``log10(x + 1) / max`` map (:func:`normalize_erf`); its loop starts at side 3 and
    gives up before the border, this one starts at side 1 and ends with the whole map.
    """
    erf = np.asarray(erf, dtype=np.float64)
    h, w = erf.shape
    total = erf.sum()
    integral = np.zeros((h + 1, w + 1))
    integral[1:, 1:] = erf.cumsum(0).cumsum(1)
    cy, cx = h // 2, w // 2
    result = {}
    for t in thresholds:
        for i in range(max(h, w)):
            y0, y1, x0, x1 = max(cy - i, 0), min(cy + i + 1, h), max(cx - i, 0), min(cx + i + 1, w)
            inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
            if total <= 0 or inside > t * total or (y0, y1, x0, x1) == (0, h, 0, w):
                result[t] = (2 * i + 1, (y1 - y0) * (x1 - x0) / (h * w))
                break
    return result


def erf_figure(erfs: Mapping[str, Sequence[np.ndarray]] | Sequence[np.ndarray],
               stage_labels: Sequence[str] | Mapping[str, Sequence[str]] | None = None, normalize: str | None = 'log',
               max_cells: int = 128, ratio_threshold: float = 0.5,
               title: str | None = 'Effective receptive field of the centre position') -> go.Figure:
    """ERF heatmaps side by side: one row per model (a mapping name -> maps, or one list of maps), one column per
    stage; each map normalised with :func:`normalize_erf` (``normalize``), on one shared [0, 1] colour scale.

    Each row is named once, above its first panel; panel titles are short: the stage label (``stage_labels``: one
    list for every row, or one per row name, e.g. ViT blocks) and the area ratio at ``ratio_threshold``
    (:func:`erf_area_ratio` of the normalised map). The figure's height follows its rows. Maps larger than
    ``max_cells`` a side are averaged over ``factor x factor`` pixel blocks for the display.
    """
    rows = dict(erfs) if isinstance(erfs, Mapping) else {'': list(erfs)}
    if not rows or not all(len(m) for m in rows.values()):
        raise ValueError('erfs must hold at least one map per model')
    n_rows, n_cols = len(rows), max(len(m) for m in rows.values())

    def labels_of(name: str) -> list[str]:
        if isinstance(stage_labels, Mapping):
            given = stage_labels.get(name)
        else:
            given = stage_labels
        return list(given) if given is not None else [f'stage {i + 1}' for i in range(n_cols)]

    panel_px, gap_px, top_px = 210, 58, 132  # a row: its name, the panel titles, the maps
    plot_px = n_rows * panel_px + (n_rows - 1) * gap_px
    fig = make_subplots(rows=n_rows, cols=n_cols, horizontal_spacing=0.02,
                        vertical_spacing=gap_px / plot_px if n_rows > 1 else 0.0)
    annotations = []
    for r, (name, maps) in enumerate(rows.items()):
        labels = labels_of(name)
        for c, erf in enumerate(maps):
            norm = normalize_erf(erf, normalize)
            side, ratio = erf_area_ratio(norm, (ratio_threshold,))[ratio_threshold]
            shown, factor = block_reduce(norm, max_cells, 'mean')
            offset = (factor - 1) / 2
            fig.add_trace(go.Heatmap(
                z=shown.astype(np.float32), x0=offset, dx=factor, y0=offset, dy=factor, coloraxis='coloraxis',
                hovertemplate='x %{x:.0f} px, y %{y:.0f} px<br>%{z:.3f}<extra></extra>'), row=r + 1, col=c + 1)
            xa = fig.layout[f'xaxis{r * n_cols + c + 1 if r * n_cols + c else ""}'].domain
            ya = fig.layout[f'yaxis{r * n_cols + c + 1 if r * n_cols + c else ""}'].domain
            if c == 0 and name:
                annotations.append(dict(x=0, y=ya[1], xref='paper', yref='paper', xanchor='left', yanchor='bottom',
                                        yshift=20, showarrow=False, font=dict(size=12, color=INK),
                                        text=f'<b>{name}</b>'))
            label = labels[c] if c < len(labels) else ''
            annotations.append(dict(
                x=(xa[0] + xa[1]) / 2, y=ya[1], xref='paper', yref='paper', xanchor='center', yanchor='bottom',
                showarrow=False, font=dict(size=10, color=MUTED),
                text=f'{label + " · " if label else ""}{ratio_threshold:.0%} in {side} px ({ratio:.1%})'))
    apply_style(fig, title=title, height=top_px + plot_px + 16,
                subtitle=f'gradient of the centre position w.r.t. the input · panel: the centred square holding '
                         f'{ratio_threshold:.0%} of the map (share of the image)')
    fig.update_layout(
        annotations=annotations, margin=dict(t=top_px),
        title=dict(pad=dict(t=34)),  # below the label a gr.Plot draws over the figure's top left
        coloraxis=dict(colorscale=SEQUENTIAL, cmin=0 if normalize else None, cmax=1 if normalize else None,
                       colorbar=dict(
            thickness=10, len=min(0.8, 400 / plot_px + 0.1), outlinewidth=0, tickfont=dict(size=10, color=MUTED),
            title=dict(text={'log': 'log10(x+1)<br>/ max', 'power': 'x^0.2<br>/ max', 'max': 'x / max'}.get(
                normalize, 'grad'), font=dict(size=10, color=MUTED)))))
    map_axes(fig)
    return fig
