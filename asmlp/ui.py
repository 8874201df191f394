"""The Gradio app: compare segmenters side by side, measure them, and explain the axial shift.

``build_app()`` returns the ``gr.Blocks``; ``app.py`` launches it. Event handlers stay thin: the work is done by
:mod:`asmlp.service` (models, segmentation, measurements), :mod:`asmlp.viz` (masks, overlays, legends) and
:mod:`asmlp.explain` (the explainer's figures).
"""
from __future__ import annotations

import contextlib
import contextvars
import html
import logging
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import gradio as gr
import numpy as np
import plotly

from . import viz
from .app_options import DEVICES, PRECISIONS, default_short_side
from .classifiers import DEFAULT_CLASSIFIERS
from .report import metrics_figure, metrics_table, paper_table
from .image_io import ImageInputError, load_image
from .limits import Busy, InferenceTimeout, Limits
from .paths import REPO_ROOT
from .presets import default_preset, grouped_choices, preset, presets
from .space.warmup import start_warm_up
from .space.zerogpu import gpu_handler
from .ui_inputs import CheckboxGroup, Dropdown, ImageUpload, Radio, Slider, refusal
from .zoo import list_models

if TYPE_CHECKING:  # the page is built without torch; the engine (torch, timm, the models) comes later
    from .service import Engine

EXAMPLES_DIR = REPO_ROOT / 'assets' / 'examples'
PLOTLY_JS_DIR = Path(plotly.__file__).parent / 'package_data'
log = logging.getLogger('asmlp.ui')

# plotly figures with animation frames are drawn by plotly.js in a gr.HTML (gr.Plot drops frames; env-check.md §4.4)
ANIMATED_FIGURE_JS = """
const draw = () => {
  if (!props.value) return;
  const fig = JSON.parse(props.value);
  const div = element.querySelector('.plotly-anim');
  const go = () => window.Plotly
    ? Plotly.newPlot(div, fig.data, fig.layout, {responsive: true}).then(() => Plotly.addFrames(div, fig.frames || []))
    : setTimeout(go, 100);
  go();
};
watch('value', draw);
draw();
"""


ABOUT = """
### What is compared
**AS-MLP** (Lian et al., ICLR 2022, [arXiv 2107.08391](https://arxiv.org/abs/2107.08391)) mixes tokens by
*shifting* channel groups along the width and the height and projecting them with 1x1 convolutions: no attention,
a cross-shaped receptive field per block that grows into a diamond. **Swin** (Liu et al., ICCV 2021) attends inside
shifted 7x7 windows. **SETR** (Zheng et al., CVPR 2021) runs a plain ViT-L/16 (global attention from the first
layer) with Naive, PUP or MLA decoders. AS-MLP and Swin are compared inside the same UperNet decoder, as in the
papers.

Masks are only meaningful where a model has trained ADE20K weights; each panel says what its weights are.

**"MS"** in the papers' tables is multi-scale + flip testing: the image is segmented at 0.5, 0.75, 1, 1.25, 1.5
and 1.75 times the test size, each also mirrored left-right, and the 12 softmax maps are averaged before the
argmax. The Compare tab's *Test-time augmentation: MS+flip* runs exactly that (the code of `python -m asmlp
evaluate --aug ms-flip`), at about 17.4x the cost of one pass.
"""

TTA_CHOICES = [('none', 'none'), ("MS+flip (the papers' MS protocol)", 'ms-flip')]

COUNTED_NOTE = """
Counted by this app (`python -m asmlp info`, meta device, `torch.utils.flop_counter`): UperNet-AS-MLP-T/S/B
59.94 / 81.25 / 121.26 M parameters and 936 / 1023 / 1165 GMACs at 512x2048; UperNet-Swin-T/S/B 944 / 1037 /
1187 GMACs; SETR-PUP 308.3 M parameters without its auxiliary heads. GMACs are multiply-accumulates (the papers
call them FLOPs) of the backbone and decode head; SETR counts every crop of its sliding window.
"""


SHIFT_TEXT = """
**The axial shift.** The C channels are split into *s* contiguous groups of ceil(C/s) channels; group *g* moves by
(g − s//2)·d positions along the width (W branch) or the height (H branch), and what enters from outside the map is
zero. Each branch is then a 1x1 convolution, so one output position mixes *s* positions of its row and *s* of its
column. Every frame below is computed by the project's own shift op.
"""

RF_TEXT = """
**Receptive fields.** *Theoretical*: every input pixel that can influence the centre position after each block —
AS-MLP grows a staircase diamond (crosses of crosses), Swin grows by windows (shifted every other block), ViT is
global after its first block. *Effective* (Luo et al. 2016): the gradient of the centre position of each stage with
respect to the input, on your image, for the loaded weights (log-scaled). UperNet's pooling makes every *head*
output global, so the comparison is made at the backbone stages.
"""


CLASSIFY_TEXT = """
**ImageNet-1K classification.** Trained AS-MLP-T and AS-MLP-S exist only as the official ImageNet classifiers,
so this is where they can be seen trained next to Swin-T/S/B and DeiT-S/B (timm's `ms_in1k` / `fb_in1k` weights).
Each model gets timm's own eval transform for its weights (resize, centre crop at 224, mean/std); the table shows
each one's top-5 classes with softmax probabilities, the latency is one forward at batch 1 on this machine.
"""

NO_TRAINED_SEGMENTERS = ('Trained UperNet-AS-MLP-T/S segmenters do not exist: only AS-MLP-B was released for '
                         'ADE20K; AS-MLP-T/S were released as ImageNet classifiers — see them trained in the '
                         '**Classify** tab.')


def _classifier_choices() -> list[tuple[str, str]]:
    from .classifiers import classifier_entry, list_classifiers, weights_on_disk
    return [(f'{classifier_entry(n)["title"]} ({"weights here" if weights_on_disk(n) else "no weights here"})', n)
            for n in list_classifiers()]


def _classify_outputs(results, info) -> tuple[str, list[list[str]], list[dict]]:
    """Markdown (image, agreement, weights, latency), the top-5 table side by side, the results as JSON."""
    from .classify import agreement
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
    return '\n'.join(lines), table, [r.as_dict() for r in results]


def animated_figure(elem_id: str, height: int = 460) -> gr.HTML:
    head = f'<script src="/gradio_api/file={PLOTLY_JS_DIR}/plotly.min.js"></script>'
    return gr.HTML(value='', html_template=f'<div class="plotly-anim" style="width:100%;height:{height}px"></div>',
                   js_on_load=ANIMATED_FIGURE_JS, head=head, elem_id=elem_id)


def _model_choices() -> list[tuple[str, str]]:
    return grouped_choices()  # by family and size, each with its weight state (asmlp/presets.py)


def _preset_note(preset_id: str) -> str:
    return f'**{preset(preset_id)["label"]}.** {preset(preset_id)["description"]}'


def _status_markdown(results) -> str:
    lines = ['| model | weights | inference |', '|---|---|---|']
    for r in results:
        lines.append(f'| **{r.title}** | {html.escape(r.status.message)} | {r.input_size[0]}x{r.input_size[1]}, '
                     f'{r.device}, {r.precision}, {r.seconds:.2f} s |')
    return '\n'.join(lines)


def _legend_markdown(results, top: int = 8) -> str:
    parts = []
    for r in results:
        rows = [f'<span style="display:inline-block;width:0.9em;height:0.9em;background:{c["color"]};'
                f'border:1px solid #888;vertical-align:middle"></span> {html.escape(c["name"])} {100 * c["share"]:.1f}%'
                for c in r.legend[:top]]
        more = f' … and {len(r.legend) - top} more' if len(r.legend) > top else ''
        parts.append(f'**{r.title}**: ' + ' · '.join(rows) + more)
    return '\n\n'.join(parts)


def _overlays(image: np.ndarray, results, opacity: float) -> list:
    return [(viz.overlay(image, r.labels, opacity), r.title) for r in results]


def explain_shift(shift_size, dilation, channels, height, width, blocks):
    from .explain import mixing_figure, shift_animation_figure
    s, d = int(shift_size), int(dilation)
    anim = shift_animation_figure(int(channels), int(height), int(width), s, d)
    configs = list(dict.fromkeys([(3, 1), (5, 1), (3, 2), (s, d)]))
    return anim.to_json(), mixing_figure(configs, blocks=int(blocks)).to_json()


def explain_rf(size):
    from .explain import rf_animation_figure
    return rf_animation_figure((int(size), int(size))).to_json()


def _effective_rfs(subjects, x) -> tuple[dict, dict]:
    """Per ERF subject (a backbone with its title and stage labels): its effective receptive fields on ``x``, and
    its stage labels, both keyed by title."""
    from .explain import effective_rf
    return ({s.title: effective_rf(s.backbone, x) for s in subjects}, {s.title: s.stage_labels for s in subjects})


EXPECTED_ERRORS = (Busy, InferenceTimeout, ImageInputError, ValueError)  # the person's input or a full app


@contextlib.contextmanager
def answering(what: str):
    """Turn what a handler raises into the person's message: expected errors (:data:`EXPECTED_ERRORS`) into a
    :func:`refusal` (no traceback), anything else — a bug, an I/O error — into a short message, its traceback logged
    once to ``asmlp.ui`` so that the app keeps serving and the fault stays visible."""
    try:
        yield
    except gr.Error:
        raise
    except EXPECTED_ERRORS as e:
        raise refusal(str(e)) from None
    except Exception as e:  # noqa: BLE001
        log.error('%s failed', what, exc_info=e)
        text = (str(e).strip().splitlines() or [''])[0][:200]
        raise gr.Error(f'{what} failed ({type(e).__name__}{": " + text if text else ""}); please retry.',
                       print_exception=False) from None


class EngineStarter:
    """The app's :class:`asmlp.service.Engine`, created on a background thread, so that the page is served before
    torch, timm and the models' code are imported (``app.py`` calls :meth:`start` once the server is up; otherwise
    the first request does). A request that arrives first waits, its progress bar saying so."""

    STARTING = 'Starting: loading torch, timm and the models\' code (first request after start-up)…'

    def __init__(self, engine: Optional['Engine'] = None, limits: Optional[Limits] = None):
        self.limits = engine.limits if engine is not None else (limits or Limits.from_env())
        self._engine, self._error = engine, None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._started = engine is not None
        if engine is not None:
            self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._create, name='asmlp-engine-start', daemon=True).start()

    def _create(self) -> None:
        try:
            from . import models  # noqa: F401  (torch, timm and the model code, imported once here)
            from .service import Engine
            self._engine = Engine(limits=self.limits)
        except BaseException as error:  # noqa: BLE001  (raised again to every request: a fault, logged there)
            self._error = error
        finally:
            self._ready.set()

    def get(self, progress=None) -> 'Engine':
        """The engine, once started; ``progress(fraction, desc=...)`` hears that it is starting."""
        if not self._ready.is_set():
            self.start()
            if progress is not None:
                progress(0.0, desc=self.STARTING)
            self._ready.wait()
        if self._error is not None:
            raise RuntimeError(f'the app could not start its engine: {self._error}') from self._error
        return self._engine


def _compare_outputs(image, info, results, opacity, aug, expected: int):
    """The compare panels for ``results`` (all ``expected`` models done, or the first ones while the rest run)."""
    done = len(results) == expected
    masks = [(viz.colorize(r.labels), r.title) for r in results]
    if done and len(results) > 1:
        view, share = viz.disagreement([r.labels for r in results])
        disagreement_text = (f'**{100 * share:.1f}%** of the pixels get different labels from the '
                             f'{len(results)} models (amber: two labels meet, red: three or more).')
    elif done:
        view, disagreement_text = None, 'Choose two or more models to see where they disagree.'
    else:
        view, disagreement_text = None, f'{len(results)} of {expected} models done; the disagreement view follows.'
    status = f'Image: {info.describe()}.\n\n' + _status_markdown(results)
    if not done:
        status += f'\n\nRunning the other {expected - len(results)} model{"s" if expected - len(results) > 1 else ""}…'
    if aug == 'ms-flip':
        status += '\n\nTest-time augmentation: **MS+flip** (6 scales x flip, softmax averaged).'
    notes = [f'- **{r.title}**: {html.escape(note)}' for r in results for note in r.notes]
    if notes:
        status += '\n\n' + '\n'.join(notes)
    state = dict(image=image, results=results, models=[r.name for r in results]) if done else gr.skip()
    return (status, masks, _overlays(image, results, opacity), _legend_markdown(results), view, disagreement_text,
            state)


def build_app(engine: Union['Engine', EngineStarter, None] = None, classifiers: Optional['Engine'] = None) -> gr.Blocks:
    """The app over ``engine`` (an :class:`asmlp.service.Engine`, or an :class:`EngineStarter` that creates one in
    the background; default: a starter that creates it on the first request). ``classifiers``: the engine that
    holds the ImageNet classifiers (default: one whose loader is :func:`asmlp.classifiers.load_classifier`, created
    with the first classification); their work is admitted and run by ``engine``, like the rest."""
    starter = engine if isinstance(engine, EngineStarter) else EngineStarter(engine)
    classifier_engines, classifier_lock = [classifiers] if classifiers is not None else [], threading.Lock()

    def classifier_engine(engine: 'Engine') -> 'Engine':
        with classifier_lock:
            if not classifier_engines:
                from .classifiers import load_classifier
                from .service import Engine
                classifier_engines.append(Engine(loader=load_classifier, limits=engine.limits))
            return classifier_engines[0]
    gr.set_static_paths(paths=[str(PLOTLY_JS_DIR)])

    def download_classifiers(classifiers, names, device):
        """Weights fetched with the request's turn, before its time budget starts (a download is not inference)."""
        from .classifiers import prefetch_classifier
        for n in names:
            if not classifiers.is_cached(n, device):
                prefetch_classifier(n)

    def classify(image_path, names, progress=gr.Progress()):
        if not image_path:
            raise refusal('Upload an image or pick an example first.')
        with answering('Classification'):
            from .classify import check_classifier_names
            from .classify import classify as classify_image
            from .service import resolve_device
            engine = starter.get(progress)
            classifiers = classifier_engine(engine)
            with engine.admit():
                image, info = load_image(image_path)
                names = check_classifier_names(names if names is not None else DEFAULT_CLASSIFIERS)
                device = resolve_device('auto')
                results = engine.run(lambda: classify_image(image, names, lambda n: classifiers.get(n, device)),
                                     prepare=lambda: download_classifiers(classifiers, names, device))
            markdown, table, data = _classify_outputs(results, info)
            return markdown, dict(headers=['rank'] + [r.title for r in results], data=table), data

    def compare(image_path, models, device, precision, short_side, opacity, aug='none', progress=gr.Progress()):
        """Each model's panel as soon as that model is done (a generator), the disagreement view when all are; the
        last answer (the API's) holds every model."""
        if not image_path:
            raise refusal('Upload an image or pick an example first.')
        with answering('Segmentation'):
            engine = starter.get(progress)
            events: queue.Queue = queue.Queue()

            def segment():
                try:
                    with engine.admit():  # a full app says so at once, before the upload is decoded
                        image, info = load_image(image_path)
                        events.put(('image', (image, info)))
                        events.put(('done', engine.segment(
                            image, models, device, precision, int(short_side),
                            progress=lambda fraction, text: progress(fraction, desc=text), aug=aug or 'none',
                            on_result=lambda result: events.put(('result', result)))))
                except BaseException as error:  # noqa: BLE001  (answered by the handler, below)
                    events.put(('error', error))

            threading.Thread(target=contextvars.copy_context().run, args=(segment,), daemon=True,
                             name='asmlp-compare').start()
            done, expected = [], len(dict.fromkeys(models if isinstance(models, list) else [models]))
            while True:
                kind, value = events.get()
                if kind == 'image':
                    image, info = value
                elif kind == 'result':
                    done.append(value)
                    if len(done) < expected:
                        yield _compare_outputs(image, info, done, opacity, aug, expected)
                elif kind == 'error':
                    raise value
                else:
                    yield _compare_outputs(image, info, value, opacity, aug, len(value))
                    return

    def tta_estimate(aug, models, device, precision, short_side, state):
        """What MS+flip costs for the chosen models: the factor, and seconds from this engine's timings."""
        if aug != 'ms-flip':
            return ''
        from .models.tta import cost_factor
        text = (f'MS+flip: 12 views (scales 0.5-1.75 x flip), about **{cost_factor("ms-flip"):.1f}x** the '
                f'single-scale work; requests beyond the {starter.limits.inference_timeout:g} s budget are refused.')
        if not starter.ready:
            return text
        engine = starter.get()
        try:
            seconds = engine.estimate_seconds(state['image'].shape, models, device, precision, int(short_side),
                                              'ms-flip') if state else None
        except ValueError:
            seconds = None
        if seconds is not None:
            text += f' For these models on this image: about **{seconds:.0f} s** here.'
        return text

    def reblend(state, opacity):
        if not state:
            return gr.skip()
        return _overlays(state['image'], state['results'], opacity)

    def measure(state, device, precision, short_side, runs, progress=gr.Progress()):
        if not state:
            raise refusal('Segment an image first; the measurements use the same image and models.')
        with answering('Measuring'):
            engine = starter.get(progress)
            rows = engine.measure(state['image'], state['models'], device, precision, int(short_side), int(runs))
            return metrics_table(rows), metrics_figure(rows)

    def erf(image_path, models, short_side, progress=gr.Progress()):
        if not image_path:
            raise refusal('Upload an image (Compare tab) first.')
        with answering('The receptive-field computation'):
            import torch

            from .explain import erf_figure
            from .preprocess import preprocess
            from .service import check_model_names
            engine = starter.get(progress)
            with engine.admit():
                image, _ = load_image(image_path)
                names = check_model_names(models)
                x = preprocess(image, (4 * int(short_side), int(short_side)))

                def work():
                    from .explain.subjects import segmenter_subject
                    loaded = {n: engine.get(n, torch.device('cpu')) for n in names}
                    return _effective_rfs([segmenter_subject(n, lo.model, lo.status) for n, lo in loaded.items()], x)
                maps, labels = engine.run(work)
            return erf_figure(maps, stage_labels=labels, max_cells=64)

    def erf_imagenet(image_path, names, progress=gr.Progress()):
        """The ERF of the ImageNet backbones at 224 (their training size) on a centre crop of the image."""
        if not image_path:
            raise refusal('Upload an image (Compare tab) first.')
        with answering('The receptive-field computation'):
            import torch

            from .classify import check_classifier_names
            from .explain import erf_figure
            from .explain.subjects import classifier_subject, square_input
            engine = starter.get(progress)
            classifiers = classifier_engine(engine)
            with engine.admit():
                image, _ = load_image(image_path)
                names = check_classifier_names(names)
                x = square_input(image, 224)

                def work():
                    loaded = {n: classifiers.get(n, torch.device('cpu')) for n in names}
                    return _effective_rfs([classifier_subject(n, lo.model, lo.status) for n, lo in loaded.items()], x)
                cpu = torch.device('cpu')
                maps, labels = engine.run(work, prepare=lambda: download_classifiers(classifiers, names, cpu))
            return erf_figure(maps, stage_labels=labels, max_cells=56,
                              title='Effective receptive field of the centre position — ImageNet backbones, 224x224')

    with gr.Blocks(title='AS-MLP architecture explorer') as demo:
        gr.Markdown('# AS-MLP architecture explorer\nHow an axial-shift MLP '
                    '([AS-MLP](https://arxiv.org/abs/2107.08391)) segments an image next to Swin and SETR — the '
                    'masks, the cost, and why.')
        state = gr.State(None)
        with gr.Tab('Compare'):
            with gr.Row():
                with gr.Column(scale=1):
                    image = ImageUpload(type='filepath', label='Image', elem_id='input-image', height=320,
                                        sources=['upload', 'clipboard'])
                    # generated scenes first (the demo models know them), then the photos
                    examples = sorted(map(str, EXAMPLES_DIR.glob('generated_*.png'))) + sorted(
                        map(str, EXAMPLES_DIR.glob('*.jpg')))
                    if examples:
                        gr.Examples(examples, inputs=image, label='Examples (licences: assets/examples/LICENSES.md)')
                    # presets: the paper's pairs one click away; the default is the best one whose weights are
                    # on disk or in the caches (no network at start-up), else Demo (asmlp/presets.py)
                    chosen_preset = default_preset()
                    preset_radio = Radio([(p['label'], p['id']) for p in presets()], value=chosen_preset,
                                         label='Preset', elem_id='preset')
                    preset_note = gr.Markdown(_preset_note(chosen_preset), elem_id='preset-note')
                    chosen = list(preset(chosen_preset)['models'])
                    warm_up = start_warm_up(starter, chosen)  # a cold cpu-basic Space loads them from start-up
                    models = CheckboxGroup(_model_choices(), value=chosen, label='Models (weights: before loading)',
                                           elem_id='models')
                    gr.Markdown(NO_TRAINED_SEGMENTERS, elem_id='no-trained-segmenters')
                    with gr.Row():
                        device = Radio(list(DEVICES), value='auto', label='Device')
                        precision = Radio(list(PRECISIONS), value='auto', label='Precision')
                    short_side = Slider(128, 1024, value=default_short_side(chosen), step=32,
                                        label="Inference size (short side, px; the models' test size)",
                                        elem_id='short-side')
                    aug = Radio(TTA_CHOICES, value='none', label='Test-time augmentation', elem_id='tta')
                    tta_note = gr.Markdown(elem_id='tta-note')
                    run = gr.Button('Segment', variant='primary', elem_id='run')
                with gr.Column(scale=2):
                    status = gr.Markdown(elem_id='status')
                    masks = gr.Gallery(label='Colour masks (ADE20K palette)', format='png', columns=3, height=300,
                                       elem_id='masks')
                    opacity = Slider(0, 1, value=0.5, step=0.05, label='Overlay opacity', elem_id='opacity')
                    overlays = gr.Gallery(label='Overlays', format='jpeg', columns=3, height=300, elem_id='overlays')
                    legend = gr.Markdown(elem_id='legend')
                    with gr.Row():
                        disagreement = gr.Image(label='Disagreement', format='png', elem_id='disagreement',
                                                height=260, interactive=False)
                        disagreement_text = gr.Markdown(elem_id='disagreement-text')
            with gr.Accordion('Metrics: latency, GMACs, parameters, memory', open=True):
                with gr.Row():
                    runs = Slider(1, 20, value=5, step=1, label='Timed runs per model', elem_id='runs')
                    measure_btn = gr.Button('Measure the chosen models', elem_id='measure')
                metrics_df = gr.Dataframe(label='Measured here vs published', elem_id='metrics-table',
                                          interactive=False, wrap=True)
                metrics_plot = gr.Plot(label='Latency and GMACs', elem_id='metrics-plot')

        with gr.Tab('Classify'):
            gr.Markdown(CLASSIFY_TEXT)
            with gr.Row():
                with gr.Column(scale=1):
                    classify_image_input = ImageUpload(type='filepath', label='Image', elem_id='classify-image',
                                                       height=320, sources=['upload', 'clipboard'])
                    photos = sorted(map(str, EXAMPLES_DIR.glob('*.jpg')))
                    if photos:
                        gr.Examples(photos, inputs=classify_image_input,
                                    label='Examples (licences: assets/examples/LICENSES.md)')
                    classifier_names = CheckboxGroup(_classifier_choices(), value=list(DEFAULT_CLASSIFIERS),
                                                     label='Classifiers (weights: before loading)',
                                                     elem_id='classifiers')
                    classify_btn = gr.Button('Classify', variant='primary', elem_id='classify')
                with gr.Column(scale=2):
                    classify_status = gr.Markdown(elem_id='classify-status')
                    classify_table = gr.Dataframe(label='Top-5 (softmax probability)', interactive=False, wrap=True,
                                                  elem_id='classify-table')
                    with gr.Accordion('As data', open=False):
                        classify_json = gr.JSON(label='Top-5 per model', elem_id='classify-json')
        with gr.Tab('Axial shift'):
            gr.Markdown(SHIFT_TEXT)
            with gr.Row():
                shift_size = Dropdown([1, 3, 5, 7, 9], value=3, label='Shift size s', elem_id='shift-size')
                dilation = Dropdown([1, 2, 3], value=1, label='Dilation d', elem_id='dilation')
                channels = Slider(1, 12, value=5, step=1, label='Channels C')
                height = Slider(3, 12, value=7, step=1, label='Height H')
                width = Slider(3, 16, value=9, step=1, label='Width W')
                blocks = Slider(1, 4, value=1, step=1, label='Blocks (mixing)')
            draw_shift = gr.Button('Animate', elem_id='animate')
            shift_anim = animated_figure('shift-anim', height=520)
            gr.Markdown('Which input positions one output position mixes: the W branch (a row of *s* positions, '
                        '*d* apart) plus the H branch (a column), summed — the cross of the paper\'s Fig. 3. '
                        'With more blocks the crosses compose into a diamond.')
            mixing_anim = animated_figure('mixing-anim', height=380)
        with gr.Tab('Receptive fields'):
            gr.Markdown(RF_TEXT)
            with gr.Row():
                rf_size = Slider(64, 512, value=224, step=32, label='Input size (px)')
                draw_rf = gr.Button('Show theoretical receptive fields', elem_id='draw-rf')
            rf_anim = animated_figure('rf-anim', height=520)
            with gr.Row():
                erf_size = Slider(64, 512, value=224, step=32, label='ERF input size (short side, px)')
                erf_btn = gr.Button('Effective receptive fields of the chosen models on the image', elem_id='erf')
            with gr.Row():
                erf_classifiers = CheckboxGroup(_classifier_choices(), value=list(DEFAULT_CLASSIFIERS),
                                                label='ImageNet backbones (trained AS-MLP-T/S exist only as these)',
                                                elem_id='erf-classifiers')
                erf_imagenet_btn = gr.Button('Effective receptive fields of the ImageNet backbones (224x224 centre '
                                             'crop)', elem_id='erf-imagenet')
            erf_plot = gr.Plot(label='Effective receptive field per stage', elem_id='erf-plot')
        with gr.Tab('About'):
            gr.Markdown(ABOUT)
            gr.Dataframe(paper_table(), label="The papers' ADE20K numbers (published; sources per row)",
                         interactive=False, wrap=True, elem_id='paper-table')
            gr.Markdown(COUNTED_NOTE)

        shift_inputs = [shift_size, dilation, channels, height, width, blocks]
        draw_shift.click(explain_shift, shift_inputs, [shift_anim, mixing_anim], api_name='explain_shift')
        draw_rf.click(explain_rf, [rf_size], [rf_anim], api_name='explain_rf')
        # model events: enough Gradio workers that a request reaches engine.admit() at once, which runs one,
        # queues Limits.max_waiting and turns the rest away with BUSY_MESSAGE (RELIABILITY.md)
        model_workers = starter.limits.model_event_concurrency
        # ZeroGPU: the model handlers run as @spaces.GPU calls, elsewhere unchanged (asmlp/space/zerogpu.py)
        erf_btn.click(gpu_handler(erf, 'erf', starter),
                      [image, models, erf_size], [erf_plot], api_name='erf', concurrency_limit=model_workers,
                      concurrency_id='models')
        classify_btn.click(classify, [classify_image_input, classifier_names],
                           [classify_status, classify_table, classify_json], api_name='classify',
                           concurrency_limit=model_workers, concurrency_id='models')
        erf_imagenet_btn.click(erf_imagenet, [image, erf_classifiers], [erf_plot], api_name='erf_imagenet',
                               concurrency_limit=model_workers, concurrency_id='models')
        demo.load(explain_shift, shift_inputs, [shift_anim, mixing_anim], api_visibility='private')
        demo.load(explain_rf, [rf_size], [rf_anim], api_visibility='private')
        if warm_up is not None:  # the first visit after a cold start says what is loading
            demo.load(warm_up.note, None, [status], api_visibility='private', show_progress='hidden')

        run.click(gpu_handler(compare, 'compare', starter, status_output=0),
                  [image, models, device, precision, short_side, opacity, aug],
                  [status, masks, overlays, legend, disagreement, disagreement_text, state], api_name='compare',
                  concurrency_limit=model_workers, concurrency_id='models')
        opacity.change(reblend, [state, opacity], [overlays], api_visibility='private', show_progress='hidden')
        known = set(list_models())
        preset_radio.change(lambda p: (list(preset(p)['models']), _preset_note(p)), [preset_radio],
                            [models, preset_note], api_visibility='private', show_progress='hidden')
        models.change(lambda names: default_short_side(n for n in names or () if n in known), [models],
                      [short_side], api_visibility='private', show_progress='hidden')  # the chosen models' test size
        tta_inputs = [aug, models, device, precision, short_side, state]
        for trigger in (aug.change, models.change, short_side.change, state.change):
            trigger(tta_estimate, tta_inputs, [tta_note], api_visibility='private', show_progress='hidden')
        measure_btn.click(gpu_handler(measure, 'measure', starter),
                          [state, device, precision, short_side, runs], [metrics_df, metrics_plot],
                          api_name='measure', concurrency_limit=model_workers, concurrency_id='models')
    return demo
