"""The explainer's computations and figures: the axial shift step by step, the positions one AS-MLP block mixes,
theoretical and effective receptive fields of AS-MLP, Swin and ViT.

Every figure is a ``plotly.graph_objects.Figure``; animated ones carry real ``frames`` with Play/Pause buttons and
a slider, so embed them with ``fig.to_json()`` and plotly.js (``Plotly.newPlot`` then ``Plotly.addFrames``): gr.Plot
drops the frames.
"""
from .erf import ERF_THRESHOLDS, effective_rf, erf_area_ratio, erf_figure, normalize_erf
from .receptive_field import PRESETS, RFStep, rf_animation_figure, rf_extent, theoretical_rf
from .shift_anim import PAPER_FIG3_CONFIGS, mixing_figure, mixing_pattern, shift_animation_figure, shift_frames

__all__ = [
    'shift_frames', 'mixing_pattern', 'shift_animation_figure', 'mixing_figure', 'PAPER_FIG3_CONFIGS',
    'theoretical_rf', 'rf_extent', 'rf_animation_figure', 'RFStep', 'PRESETS',
    'effective_rf', 'normalize_erf', 'erf_area_ratio', 'erf_figure', 'ERF_THRESHOLDS',
]
