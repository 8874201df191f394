"""Tables and charts of measured metrics beside the papers' numbers (for the app and the About table)."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .zoo import list_models, model_entry


def _fmt(value, spec: str) -> str:
    return '—' if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def metrics_table(rows: list[dict]) -> pd.DataFrame:
    """One row per model: measured latency, GMACs, parameters and memory next to the published numbers."""
    return pd.DataFrame([{
        'model': r['name'],
        'device / precision': f'{r["device"]} / {r["precision"]}',
        'input': r['input'],
        'latency ms (median, p10–p90)': f'{r["latency_ms"]:.0f} ({r["p10_ms"]:.0f}–{r["p90_ms"]:.0f}), n={r["runs"]}',
        'GMACs @ input': _fmt(r['gmacs'], '.1f'),
        'GMACs @ 512x2048': _fmt(r['gmacs_512x2048'], '.0f'),
        'paper GMACs @ 512x2048': _fmt(r['paper_gmacs'], '.0f'),
        'params M': _fmt(r['params'] / 1e6, '.2f'),
        'paper params M': _fmt(r['paper_params'] and r['paper_params'] / 1e6, '.0f'),
        'peak activations MiB @ input': _fmt(r['activation_mib'], '.0f'),
        'peak activations MiB @ 512x2048 (fp32, counted)': _fmt(r['activation_mib_512x2048'], '.0f'),
        'weights MiB': _fmt(r['param_mib'], '.0f'),
        'paper mIoU SS / MS': f'{_fmt(r["paper_miou_ss"], ".2f")} / {_fmt(r["paper_miou_ms"], ".2f")}',
    } for r in rows])


def metrics_figure(rows: list[dict]) -> go.Figure:
    """Bar charts: latency (with p10–p90 error bars) and GMACs at the input size vs the papers at 512x2048."""
    names = [r['name'] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=('Latency (ms, median; bars p10–p90)',
                                                        'GMACs: here at the input size, and at 512x2048'))
    fig.add_bar(x=names, y=[r['latency_ms'] for r in rows], name='latency', row=1, col=1,
                error_y=dict(type='data', symmetric=False, array=[r['p90_ms'] - r['latency_ms'] for r in rows],
                             arrayminus=[r['latency_ms'] - r['p10_ms'] for r in rows]))
    fig.add_bar(x=names, y=[r['gmacs'] for r in rows], name='GMACs @ input', row=1, col=2)
    fig.add_bar(x=names, y=[r['gmacs_512x2048'] for r in rows], name='GMACs @ 512x2048 (counted)', row=1, col=2)
    fig.add_bar(x=names, y=[r['paper_gmacs'] for r in rows], name='paper @ 512x2048', row=1, col=2)
    fig.update_layout(barmode='group', height=380, margin=dict(l=40, r=20, t=50, b=80), legend=dict(orientation='h'))
    return fig


def paper_table() -> pd.DataFrame:
    """The zoo's published numbers with their sources (the About tab)."""
    rows = []
    for name in list_models():
        e = model_entry(name)
        p = e['published']
        rows.append({'model': name, 'architecture': e['title'],
                     'params M (published)': _fmt(p['params'] and p['params'] / 1e6, '.0f'),
                     'GMACs @ 512x2048 (published)': _fmt(p['gmacs'], '.0f'),
                     'mIoU SS': _fmt(p['miou_ss'], '.2f'), 'mIoU MS+flip': _fmt(p['miou_ms'], '.2f'),
                     'source': p['source']})
    return pd.DataFrame(rows)
