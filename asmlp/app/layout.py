"""The app's page: the components of each tab, placed (no events; ``wiring.py`` connects them).

The Compare tab answers one glance from the button at 1440x900: the image, the preset, a compact model picker
(a multiselect list grouped by family and size, each entry with its weight state), the Segment button, and on the
right the first result panel (the masks) above everything else; device, precision, inference size and
augmentation sit in a closed "Settings" accordion. The Instances tab has the same layout for COCO detectors (the
panels of boxes, classes, scores and instance masks first on the right, the score threshold under them).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import plotly

from ..classifiers import DEFAULT_CLASSIFIERS, classifier_entry, list_classifiers
from ..engine.choices import DEVICES, PRECISIONS, default_short_side
from ..paths import REPO_ROOT
from ..presets import (detector_choices, grouped_choices, instance_preset, instance_presets, preset,
                       presets)
from ..report import paper_table
from ..ui_inputs import Dropdown, ImageUpload, Radio, Slider
from . import texts

__all__ = ['EXAMPLES_DIR', 'PLOTLY_JS_DIR', 'compare_tab', 'instances_tab', 'classify_tab', 'shift_tab', 'rf_tab',
           'about_tab', 'animated_figure', 'preset_note', 'preset_label', 'instance_preset_note']

EXAMPLES_DIR = REPO_ROOT / 'assets' / 'examples'
PLOTLY_JS_DIR = Path(plotly.__file__).parent / 'package_data'
EXAMPLES_LABEL = 'Examples (licences: assets/examples/LICENSES.md)'


def animated_figure(elem_id: str, height: int = 460) -> gr.HTML:
    head = f'<script src="/gradio_api/file={PLOTLY_JS_DIR}/plotly.min.js"></script>'
    return gr.HTML(value='', html_template=f'<div class="plotly-anim" style="width:100%;height:{height}px"></div>',
                   js_on_load=texts.ANIMATED_FIGURE_JS, head=head, elem_id=elem_id)


def preset_label(p: dict) -> str:
    """A preset's short name for the picker (its label up to the first colon or comma: ``Base``, ``Tiny``,
    ``Demo (offline)``); the note under the button says the rest."""
    return p['label'].split(':')[0].split(',')[0]


def preset_note(preset_id: str) -> str:
    p = preset(preset_id)
    return f'**{p["label"]}.** {p["description"]}'


def _classifier_choices() -> list[tuple[str, str]]:
    from .. import classifiers, hub
    on_disk = getattr(hub, 'weights_on_disk', None) or classifiers.weights_on_disk
    return [(f'{classifier_entry(n)["title"]} ({"weights here" if on_disk(n) else "no weights here"})', n)
            for n in list_classifiers()]


def compare_tab(chosen_preset: str) -> SimpleNamespace:
    chosen = list(preset(chosen_preset)['models'])
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=380):
            image = ImageUpload(type='filepath', label='Image', elem_id='input-image', height=240,
                                sources=['upload', 'clipboard'])
            preset_radio = Radio([(preset_label(p), p['id']) for p in presets()], value=chosen_preset,
                                 label='Preset', elem_id='preset')
            models = Dropdown(grouped_choices(), value=chosen, multiselect=True, elem_id='models',
                              label='Models (family · size — weights, before loading)')
            run = gr.Button('Segment', variant='primary', elem_id='run')
            with gr.Accordion('Settings', open=False, elem_id='settings'):
                with gr.Row():
                    device = Radio(list(DEVICES), value='auto', label='Device', elem_id='device')
                    precision = Radio(list(PRECISIONS), value='auto', label='Precision', elem_id='precision')
                short_side = Slider(128, 1024, value=default_short_side(chosen), step=32,
                                    label="Inference size (short side, px; the models' test size)",
                                    elem_id='short-side')
                aug = Radio(texts.TTA_CHOICES, value='none', label='Test-time augmentation', elem_id='tta')
                tta_note = gr.Markdown(elem_id='tta-note')
            note = gr.Markdown(preset_note(chosen_preset), elem_id='preset-note')
            gr.Markdown(texts.NO_TRAINED_SEGMENTERS, elem_id='no-trained-segmenters')
            # generated scenes first (the demo models know them), then the photos
            examples = sorted(map(str, EXAMPLES_DIR.glob('generated_*.png'))) + sorted(
                map(str, EXAMPLES_DIR.glob('*.jpg')))
            if examples:
                gr.Examples(examples, inputs=image, label=EXAMPLES_LABEL)
        with gr.Column(scale=2):
            masks = gr.Gallery(label='Colour masks (ADE20K palette)', format='png', columns=3, height=300,
                               elem_id='masks')
            status = gr.Markdown(elem_id='status')
            opacity = Slider(0, 1, value=0.5, step=0.05, label='Overlay opacity', elem_id='opacity')
            overlays = gr.Gallery(label='Overlays', format='jpeg', columns=3, height=300, elem_id='overlays')
            legend = gr.Markdown(elem_id='legend')
            with gr.Row():
                disagreement = gr.Image(label='Disagreement', format='png', elem_id='disagreement', height=260,
                                        interactive=False)
                disagreement_text = gr.Markdown(elem_id='disagreement-text')
    with gr.Accordion('Metrics: latency, GMACs, parameters, memory', open=True):
        with gr.Row():
            runs = Slider(1, 20, value=5, step=1, label='Timed runs per model', elem_id='runs')
            measure = gr.Button('Measure the chosen models', elem_id='measure')
        metrics_table = gr.Dataframe(label='Measured here vs published', elem_id='metrics-table', interactive=False,
                                     wrap=True, visible=False)  # shown with its first rows: no placeholder header
        metrics_plot = gr.Plot(label='Latency and GMACs', elem_id='metrics-plot')
    return SimpleNamespace(image=image, preset=preset_radio, preset_note=note, models=models, run=run, device=device,
                           precision=precision, short_side=short_side, aug=aug, tta_note=tta_note, masks=masks,
                           status=status, opacity=opacity, overlays=overlays, legend=legend,
                           disagreement=disagreement, disagreement_text=disagreement_text, runs=runs,
                           measure=measure, metrics_table=metrics_table, metrics_plot=metrics_plot, chosen=chosen)


def instance_preset_note(preset_id: str) -> str:
    p = instance_preset(preset_id)
    return f'**{p["label"]}.** {p["description"]}'


def instances_tab(chosen_preset: str, threshold: float) -> SimpleNamespace:
    """COCO detectors side by side, laid out as Compare: image, preset, picker and the Detect button on the left,
    the panels first on the right; the score threshold under them redraws without running a model."""
    chosen = list(instance_preset(chosen_preset)['models'])
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=380):
            image = ImageUpload(type='filepath', label='Image', elem_id='instances-image', height=240,
                                sources=['upload', 'clipboard'])
            preset_radio = Radio([(preset_label(p), p['id']) for p in instance_presets()], value=chosen_preset,
                                 label='Preset', elem_id='instances-preset')
            models = Dropdown(detector_choices(), value=chosen, multiselect=True, elem_id='detectors',
                              label='COCO detectors (weights, before loading)')
            run = gr.Button('Detect', variant='primary', elem_id='detect')
            with gr.Accordion('Settings', open=False, elem_id='instances-settings'):
                with gr.Row():
                    device = Radio(list(DEVICES), value='auto', label='Device', elem_id='instances-device')
                    precision = Radio(list(PRECISIONS), value='auto', label='Precision',
                                      elem_id='instances-precision')
            note = gr.Markdown(instance_preset_note(chosen_preset), elem_id='instances-preset-note')
            examples = sorted(map(str, EXAMPLES_DIR.glob('generated_*.png'))) + sorted(
                map(str, EXAMPLES_DIR.glob('*.jpg')))
            if examples:
                gr.Examples(examples, inputs=image, label=EXAMPLES_LABEL)
        with gr.Column(scale=2):
            panels = gr.Gallery(label='Boxes, classes and scores, instance masks (one colour per instance)',
                                format='png', columns=2, height=420, elem_id='instance-panels')
            threshold_slider = Slider(0, 1, value=threshold, step=0.05, label='Score threshold (redraws, no rerun)',
                                      elem_id='score-threshold')
            status = gr.Markdown(elem_id='instances-status')
            with gr.Accordion('As data (boxes [x, y, w, h], COCO categories, masks as COCO RLE)', open=False):
                data = gr.JSON(label='Detections per model', elem_id='instances-json')
    return SimpleNamespace(image=image, preset=preset_radio, preset_note=note, models=models, run=run, device=device,
                           precision=precision, panels=panels, threshold=threshold_slider, status=status, data=data)


def classify_tab() -> SimpleNamespace:
    gr.Markdown(texts.CLASSIFY_TEXT)
    with gr.Row():
        with gr.Column(scale=1):
            image = ImageUpload(type='filepath', label='Image', elem_id='classify-image', height=320,
                                sources=['upload', 'clipboard'])
            photos = sorted(map(str, EXAMPLES_DIR.glob('*.jpg')))
            if photos:
                gr.Examples(photos, inputs=image, label=EXAMPLES_LABEL)
            names = Dropdown(_classifier_choices(), value=list(DEFAULT_CLASSIFIERS), multiselect=True,
                             label='Classifiers (weights: before loading)', elem_id='classifiers')
            run = gr.Button('Classify', variant='primary', elem_id='classify')
        with gr.Column(scale=2):
            status = gr.Markdown(elem_id='classify-status')
            table = gr.Dataframe(label='Top-5 (softmax probability)', interactive=False, wrap=True,
                                 elem_id='classify-table', visible=False)  # shown with its first rows
            with gr.Accordion('As data', open=False):
                data = gr.JSON(label='Top-5 per model', elem_id='classify-json')
    return SimpleNamespace(image=image, names=names, run=run, status=status, table=table, data=data)


def shift_tab() -> SimpleNamespace:
    gr.Markdown(texts.SHIFT_TEXT)
    with gr.Row():
        shift_size = Dropdown([1, 3, 5, 7, 9], value=3, label='Shift size s', elem_id='shift-size')
        dilation = Dropdown([1, 2, 3], value=1, label='Dilation d', elem_id='dilation')
        channels = Slider(1, 12, value=5, step=1, label='Channels C')
        height = Slider(3, 12, value=7, step=1, label='Height H')
        width = Slider(3, 16, value=9, step=1, label='Width W')
        blocks = Slider(1, 4, value=1, step=1, label='Blocks (mixing)')
    draw = gr.Button('Animate', elem_id='animate')
    anim = animated_figure('shift-anim', height=520)
    gr.Markdown(texts.MIXING_TEXT)
    mixing = animated_figure('mixing-anim', height=380)
    return SimpleNamespace(inputs=[shift_size, dilation, channels, height, width, blocks], draw=draw, anim=anim,
                           mixing=mixing)


def rf_tab() -> SimpleNamespace:
    gr.Markdown(texts.RF_TEXT)
    with gr.Row():
        size = Slider(64, 512, value=224, step=32, label='Input size (px)')
        draw = gr.Button('Show theoretical receptive fields', elem_id='draw-rf')
    anim = animated_figure('rf-anim', height=520)
    with gr.Row():
        erf_size = Slider(64, 512, value=224, step=32, label='ERF input size (short side, px)')
        erf = gr.Button('Effective receptive fields of the chosen models on the image', elem_id='erf')
    with gr.Row():
        classifiers = Dropdown(_classifier_choices(), value=list(DEFAULT_CLASSIFIERS), multiselect=True,
                               label='ImageNet backbones (trained AS-MLP-T/S exist only as these)',
                               elem_id='erf-classifiers')
        erf_imagenet = gr.Button('Effective receptive fields of the ImageNet backbones (224x224 centre crop)',
                                 elem_id='erf-imagenet')
    plot = gr.Plot(label='Effective receptive field per stage', elem_id='erf-plot')
    return SimpleNamespace(size=size, draw=draw, anim=anim, erf_size=erf_size, erf=erf, classifiers=classifiers,
                           erf_imagenet=erf_imagenet, plot=plot)


def about_tab() -> None:
    gr.Markdown(texts.ABOUT)
    gr.Dataframe(paper_table(), label="The papers' ADE20K numbers (published; sources per row)", interactive=False,
                 wrap=True, elem_id='paper-table')
    gr.Markdown(texts.COUNTED_NOTE)
