"""What the app shows, made from the engine's results: Markdown, tables, and the result images as files
(:class:`~asmlp.app.files.ResultFiles`). No Gradio here."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .. import viz
from .files import ResultFiles

__all__ = ['CompareState', 'ComparePanels', 'ClassifyView', 'compare_panels', 'overlays', 'classify_view',
           'status_markdown', 'legend_markdown', 'InstancesState', 'InstancesView', 'instances_view',
           'instance_panels', 'instances_data', 'published_ap']


@dataclass
class CompareState:
    """What a finished compare leaves for the session: the image and every model's segmentation (measure and the
    opacity slider reuse them)."""
    image: np.ndarray
    results: list = field(default_factory=list)  # asmlp.engine.Segmentation

    @property
    def models(self) -> list[str]:
        return [r.name for r in self.results]


@dataclass(frozen=True)
class ComparePanels:
    """The compare outputs at one moment: every model done, or the first ones while the rest run (``state`` is set
    once all are done)."""
    status: str
    masks: list[tuple[str, str]]       # (image file, title)
    overlays: list[tuple[str, str]]
    legend: str
    disagreement: Optional[str]        # image file
    disagreement_text: str
    state: Optional[CompareState] = None


@dataclass(frozen=True)
class ClassifyView:
    markdown: str
    table: dict                        # {'headers': [...], 'data': [[...], ...]}: top-5 side by side
    data: list[dict]                   # the results as JSON


def status_markdown(results) -> str:
    lines = ['| model | weights | inference |', '|---|---|---|']
    for r in results:
        lines.append(f'| **{r.title}** | {html.escape(r.status.message)} | {r.input_size[0]}x{r.input_size[1]}, '
                     f'{r.device}, {r.precision}, {r.seconds:.2f} s |')
    return '\n'.join(lines)


def legend_markdown(results, top: int = 8) -> str:
    parts = []
    for r in results:
        rows = [f'<span style="display:inline-block;width:0.9em;height:0.9em;background:{c["color"]};'
                f'border:1px solid #888;vertical-align:middle"></span> {html.escape(c["name"])} {100 * c["share"]:.1f}%'
                for c in r.legend[:top]]
        more = f' … and {len(r.legend) - top} more' if len(r.legend) > top else ''
        parts.append(f'**{r.title}**: ' + ' · '.join(rows) + more)
    return '\n\n'.join(parts)


def overlays(files: ResultFiles, image: np.ndarray, results, opacity: float) -> list[tuple[str, str]]:
    return [(files.image(viz.overlay(image, r.labels, float(opacity)), 'jpeg'), r.title) for r in results]


def compare_panels(files: ResultFiles, image: np.ndarray, info: Any, results: list, opacity: float, aug: str,
                   expected: int) -> ComparePanels:
    """The panels for ``results`` (all ``expected`` models done, or the first ones while the rest run)."""
    done = len(results) == expected
    masks = [(files.image(viz.colorize(r.labels)), r.title) for r in results]
    view = None
    if done and len(results) > 1:
        disagreement, share = viz.disagreement([r.labels for r in results])
        view = files.image(disagreement)
        disagreement_text = (f'**{100 * share:.1f}%** of the pixels get different labels from the '
                             f'{len(results)} models (amber: two labels meet, red: three or more).')
    elif done:
        disagreement_text = 'Choose two or more models to see where they disagree.'
    else:
        disagreement_text = f'{len(results)} of {expected} models done; the disagreement view follows.'
    status = f'Image: {info.describe()}.\n\n' + status_markdown(results)
    if not done:
        left = expected - len(results)
        status += f'\n\nRunning the other {left} model{"s" if left > 1 else ""}…'
    if aug == 'ms-flip':
        status += '\n\nTest-time augmentation: **MS+flip** (6 scales x flip, softmax averaged).'
    notes = [f'- **{r.title}**: {html.escape(note)}' for r in results for note in r.notes]
    if notes:
        status += '\n\n' + '\n'.join(notes)
    return ComparePanels(status, masks, overlays(files, image, results, opacity), legend_markdown(results), view,
                         disagreement_text, CompareState(image, list(results)) if done else None)


def classify_view(results, info) -> ClassifyView:
    """Markdown (image, agreement, weights, latency), the top-5 table side by side, the results as JSON."""
    from ..classify import agreement
    agree = agreement(results)
    if len(results) < 2:
        agree_text = 'Choose two or more classifiers to see where they agree.'
    elif agree['same_top1']:
        agree_text = f'All {len(results)} agree on the top class: **{html.escape(agree["top1"])}**.'
    else:
        agree_text = 'The top classes differ.'
    if len(results) > 1:
        shared = agree['in_every_top5']
        agree_text += (f' In every top-5: {", ".join(html.escape(c) for c in shared)}.' if shared else
                       ' No class is in every top-5.')
    lines = [f'Image: {info.describe()}.', '', agree_text, '', '| model | weights | input | latency (batch 1) |',
             '|---|---|---|---|']
    for r in results:
        lines.append(f'| **{r.title}** | {html.escape(r.status.message)} | {r.input_size[0]}x{r.input_size[1]} | '
                     f'{1e3 * r.seconds:.0f} ms |')
    table = [[str(rank + 1)] + [f'{r.labels[rank].split(",")[0]} {100 * r.probs[rank]:.1f}%' for r in results]
             for rank in range(min(len(r.indices) for r in results))]
    return ClassifyView('\n'.join(lines), dict(headers=['rank'] + [r.title for r in results], data=table),
                        [r.as_dict() for r in results])


# ------------------------------------------------------------------------------------------------- instances

@dataclass
class InstancesState:
    """What a finished detection leaves for the session: the image and every detector's
    :class:`~asmlp.engine.Detection` (all its instances above mmdet's test ``score_thr``), so that the score
    threshold redraws the panels without running a model."""
    image: np.ndarray
    results: list = field(default_factory=list)  # asmlp.engine.Detection


@dataclass(frozen=True)
class InstancesView:
    status: str
    panels: list[tuple[str, str]]      # (image file, caption) per detector
    data: list[dict]                   # per detector: the detections in the detect format
    state: InstancesState


def published_ap(name: str) -> str:
    """The published box / mask AP of detector ``name``: AS-MLP Table 5 (3x) and the checkpoints' own numbers."""
    from ..detectors import detector_entry
    entry = detector_entry(name)
    published = entry['published']
    if published['box_ap'] is None:
        return 'nothing published (demo)'
    parts = [f'{published["box_ap"]:.1f} / {published["mask_ap"]:.1f} ({published["schedule"]}, paper)']
    for source in entry['weights']:
        reported = source.get('reported')
        if reported:
            parts.append(f'{reported["box_ap"]:.1f} / {reported["mask_ap"]:.1f} ({reported["schedule"]} weights)')
    return '; '.join(dict.fromkeys(parts))


def instance_panels(files: ResultFiles, state: InstancesState, threshold: float) -> list[tuple[str, str]]:
    """One panel per detector: the image with its instances scoring at least ``threshold`` drawn (boxes, class
    and score, masks; one colour per instance), captioned with the count."""
    from ..evaluation.detections import above, overlay
    panels = []
    for r in state.results:
        shown, total = len(above(r.instances, threshold)), len(r.instances)
        panels.append((files.image(overlay(state.image, r.instances, threshold)),
                       f'{shown} of {total} at score >= {threshold:.2f} · {r.title}'))
    return panels


def instances_data(state: InstancesState, threshold: float) -> list[dict]:
    """Per detector its detections at or above ``threshold`` in the detect format, with what ran and the weights
    (:func:`asmlp.evaluation.detections.detection_record`)."""
    from ..evaluation.detections import detection_record
    return [detection_record(r, threshold) for r in state.results]


def instances_view(files: ResultFiles, image: np.ndarray, info: Any, results: list, threshold: float
                   ) -> InstancesView:
    """The status (per detector: weights, published AP, latency, where it ran), the panels and the data."""
    state = InstancesState(image, list(results))
    lines = [f'Image: {info.describe()}.', '', '| model | weights | published box / mask AP | inference |',
             '|---|---|---|---|']
    for r in results:
        lines.append(f'| **{r.title}** | {html.escape(r.status.message)} | {published_ap(r.name)} | '
                     f'{r.input_size[0]}x{r.input_size[1]}, {r.device}, {r.precision}, {r.seconds:.2f} s |')
    notes = [f'- **{r.title}**: {html.escape(note)}' for r in results for note in r.notes]
    if notes:
        lines += [''] + notes
    return InstancesView('\n'.join(lines), instance_panels(files, state, threshold), instances_data(state, threshold),
                         state)
