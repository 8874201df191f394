"""The app assembled: the page (``layout.py``), the Gradio event functions over the handlers (``handlers.py``),
and the events that connect them. Every model handler is registered once (:meth:`App.model_event`), where a
:class:`~asmlp.app.registry.Deployment` may wrap it."""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Optional, Union

import gradio as gr

from ..engine.choices import default_short_side
from ..image_io import ImageInputError
from ..limits import Busy, InferenceTimeout
from ..presets import default_instance_preset, default_preset, instance_preset, preset
from ..ui_inputs import refusal
from ..zoo import list_models
from . import handlers, layout, texts
from .files import ResultFiles
from .registry import Deployment, ModelHandler
from .starter import EngineStarter

if TYPE_CHECKING:  # the page is built without torch; the engine (torch, timm, the models) comes later
    from ..engine import Engine, ModelCache

__all__ = ['build_app', 'App', 'answering', 'EXPECTED_ERRORS']

log = logging.getLogger('asmlp.app')
EXPECTED_ERRORS = (Busy, InferenceTimeout, ImageInputError, ValueError)  # the person's input or a full app


@contextlib.contextmanager
def answering(what: str):
    """Turn what a handler raises into the person's message: expected errors (:data:`EXPECTED_ERRORS`) into a
    :func:`~asmlp.ui_inputs.refusal` (no traceback), anything else — a bug, an I/O error — into a short message, its
    traceback logged once to ``asmlp.app`` so that the app keeps serving and the fault stays visible."""
    from ..errors import first_line
    try:
        yield
    except gr.Error:
        raise
    except EXPECTED_ERRORS as e:
        raise refusal(str(e)) from None
    except Exception as e:  # noqa: BLE001
        log.error('%s failed', what, exc_info=e)
        text = first_line(e, 200) if str(e).strip() else ''
        raise gr.Error(f'{what} failed ({type(e).__name__}{": " + text if text else ""}); please retry.',
                       print_exception=False) from None


def _reporter(progress):
    """A handler's ``progress(fraction, text)`` over Gradio's ``gr.Progress``."""
    return lambda fraction, text: progress(fraction, desc=text)


class App:
    """The Gradio event functions of the app over ``starter``'s engine and the ImageNet classifiers' model cache
    (created with the first classification unless given). Each checks its input, gets the engine (waiting while
    it starts), calls its handler and answers expected errors as refusals."""

    def __init__(self, starter: EngineStarter, classifiers: Optional['ModelCache'] = None,
                 files: Optional[ResultFiles] = None):
        self.starter, self.files = starter, files or ResultFiles()
        self._classifiers, self._lock = classifiers, threading.Lock()

    def classifiers(self) -> 'ModelCache':
        with self._lock:
            if self._classifiers is None:
                from ..classifiers import load_classifier
                from ..engine import ModelCache
                limits = self.starter.limits
                self._classifiers = ModelCache(load_classifier, max_models=limits.cache_models,
                                               max_bytes=limits.cache_bytes, retry_after=limits.retry_after)
            return self._classifiers

    def engine(self, progress) -> 'Engine':
        return self.starter.get(progress)

    # ------------------------------------------------------------------------------------ the model handlers

    def compare(self, image_path, models, device, precision, short_side, opacity, aug='none',
                progress=gr.Progress()):
        """Each model's panel as soon as that model is done, the disagreement view when all are; the last answer
        (the API's) holds every model."""
        if not image_path:
            self._refuse(handlers.NO_IMAGE)
        with answering('Segmentation'):
            engine = self.engine(progress)
            for p in handlers.compare(engine, self.files, image_path, models, device, precision, short_side,
                                      opacity, aug, _reporter(progress)):
                yield (p.status, p.masks, p.overlays, p.legend, p.disagreement, p.disagreement_text,
                       p.state if p.state is not None else gr.skip())

    def measure(self, state, device, precision, short_side, runs, progress=gr.Progress()):
        if not state:
            self._refuse(handlers.NO_STATE)
        with answering('Measuring'):
            table, figure = handlers.measure(self.engine(progress), state, device, precision, short_side, runs)
            return table, figure

    def erf(self, image_path, models, short_side, progress=gr.Progress()):
        if not image_path:
            self._refuse(handlers.NO_IMAGE_HERE)
        with answering('The receptive-field computation'):
            return handlers.erf(self.engine(progress), image_path, models, short_side, _reporter(progress))

    def erf_imagenet(self, image_path, names, progress=gr.Progress()):
        """The ERF of the ImageNet backbones at 224 (their training size) on a centre crop of the image."""
        if not image_path:
            self._refuse(handlers.NO_IMAGE_HERE)
        with answering('The receptive-field computation'):
            return handlers.erf_imagenet(self.engine(progress), self.classifiers(), image_path, names,
                                         _reporter(progress))

    def classify(self, image_path, names, progress=gr.Progress()):
        if not image_path:
            self._refuse(handlers.NO_IMAGE)
        with answering('Classification'):
            view = handlers.classify(self.engine(progress), self.classifiers(), image_path, names,
                                     _reporter(progress))
            return view.markdown, view.table, view.data

    def detect(self, image_path, models, device, precision, threshold, progress=gr.Progress()):
        """The chosen COCO detectors' panels, status and detections as data; the state keeps every detection
        for :meth:`redraw`."""
        if not image_path:
            self._refuse(handlers.NO_IMAGE)
        with answering('Detection'):
            view = handlers.detect(self.engine(progress), self.files, image_path, models, device, precision,
                                   threshold, _reporter(progress))
            return view.status, view.panels, view.data, view.state

    @staticmethod
    def _refuse(message: str):
        raise refusal(message)

    def prefetch_segmenters(self, work, progress=None) -> None:
        """Download the weights of ``work``'s segmenters without loading them (a deployment calls it before its
        GPU call; in that process no model is loaded, so every one not on disk is fetched)."""
        self.engine(None).prefetch(work.models, 'cpu', progress)

    def prefetch_classifiers(self, work, progress=None) -> None:
        """As :meth:`prefetch_segmenters`, for ``work``'s ImageNet classifiers."""
        handlers.prefetch_classifiers(self.classifiers(), work.models)

    def prefetch_detectors(self, work, progress=None) -> None:
        """As :meth:`prefetch_segmenters`, for ``work``'s COCO detectors."""
        self.engine(None).prefetch_detectors(work.models, 'cpu', progress)

    def model_handlers(self) -> dict[str, ModelHandler]:
        """The registration of every handler that runs a model (``registry.MODEL_HANDLERS``)."""
        segmenters, classifiers = self.prefetch_segmenters, self.prefetch_classifiers
        return {h.name: h for h in (
            ModelHandler('compare', self.compare, handlers.compare_work, segmenters, status_output=0),
            ModelHandler('measure', self.measure, handlers.measure_work, segmenters),
            ModelHandler('erf', self.erf, handlers.erf_work, segmenters),
            ModelHandler('erf_imagenet', self.erf_imagenet, handlers.erf_imagenet_work, classifiers),
            ModelHandler('classify', self.classify, handlers.classify_work, classifiers),
            ModelHandler('detect', self.detect, handlers.detect_work, self.prefetch_detectors, status_output=0),
        )}

    # ------------------------------------------------------------------------------------------- the light ones

    def reblend(self, state, opacity):
        result = handlers.reblend(self.files, state, opacity)
        return gr.skip() if result is None else result

    def redraw(self, state, threshold):
        """The instance panels and data again at ``threshold``, from the state: no model runs."""
        with answering('Redrawing'):
            result = handlers.redraw(self.files, state, threshold)
        return (gr.skip(), gr.skip()) if result is None else result

    def tta_note(self, aug, models, device, precision, short_side, state):
        engine = self.starter.get() if self.starter.ready else None
        return handlers.tta_note(engine, self.starter.limits.inference_timeout, aug, models, device, precision,
                                 short_side, state)


def build_app(engine: Union['Engine', EngineStarter, None] = None,
              classifiers: Union['ModelCache', 'Engine', None] = None, *,
              deployment: Optional[Deployment] = None) -> gr.Blocks:
    """The app over ``engine`` (an :class:`asmlp.engine.Engine`, or an :class:`EngineStarter` that creates one in
    the background; default: a starter that creates it on the first request). ``classifiers``: the model cache of
    the ImageNet classifiers (an Engine's cache is taken; default: one whose loader is
    :func:`asmlp.classifiers.load_classifier`); their work is admitted and run by ``engine``, like the rest.
    ``deployment``: what the host adds (``asmlp.space.runtime.space_deployment()`` on a Hugging Face Space)."""
    starter = engine if isinstance(engine, EngineStarter) else EngineStarter(engine)
    deployment = deployment or Deployment()
    app = App(starter, getattr(classifiers, 'models', classifiers))
    chosen_preset = default_preset(deployment.preset)
    gr.set_static_paths(paths=[str(layout.PLOTLY_JS_DIR)])
    with gr.Blocks(title='AS-MLP architecture explorer') as demo:
        gr.Markdown(texts.TITLE)
        state = gr.State(None)
        with gr.Tab('Compare'):
            compare = layout.compare_tab(chosen_preset)
        with gr.Tab('Instances'):
            instances = layout.instances_tab(default_instance_preset(), handlers.DEFAULT_THRESHOLD)
            instances_state = gr.State(None)
        with gr.Tab('Classify'):
            classify = layout.classify_tab()
        with gr.Tab('Axial shift'):
            shift = layout.shift_tab()
        with gr.Tab('Receptive fields'):
            rf = layout.rf_tab()
        with gr.Tab('About'):
            layout.about_tab()
        model_event = _model_event(app, deployment)
        _wire(demo, app, deployment, model_event, state, compare, classify, shift, rf)
        _wire_instances(app, model_event, instances_state, instances)
    demo.asmlp_app = app  # the event functions (tests, introspection)
    return demo


def _model_event(app: App, deployment: Deployment):
    """``model_event(trigger, name, inputs, outputs)``: the registered model handler ``name`` (wrapped by the
    deployment) on ``trigger``, with enough Gradio workers that a request reaches engine.admit() at once, which runs
    one, queues Limits.max_waiting and turns the rest away with BUSY_MESSAGE (RELIABILITY.md)."""
    registered = app.model_handlers()
    workers = app.starter.limits.model_event_concurrency

    def model_event(trigger, name: str, inputs, outputs):
        handler = registered[name]
        fn = deployment.wrap(handler) if deployment.wrap is not None else handler.fn
        return trigger(fn, inputs, outputs, api_name=name, concurrency_limit=workers, concurrency_id='models')
    return model_event


def _wire_instances(app: App, model_event, state, tab) -> None:
    model_event(tab.run.click, 'detect', [tab.image, tab.models, tab.device, tab.precision, tab.threshold],
                [tab.status, tab.panels, tab.data, state])
    # the threshold redraws from the kept detections: no model runs, no GPU is asked for
    tab.threshold.change(app.redraw, [state, tab.threshold], [tab.panels, tab.data], api_visibility='private',
                          show_progress='hidden')
    tab.preset.change(lambda p: (list(instance_preset(p)['models']), layout.instance_preset_note(p)), [tab.preset],
                      [tab.models, tab.preset_note], api_visibility='private', show_progress='hidden')


def _wire(demo, app: App, deployment: Deployment, model_event, state, compare, classify, shift, rf) -> None:

    c = compare
    model_event(c.run.click, 'compare', [c.image, c.models, c.device, c.precision, c.short_side, c.opacity, c.aug],
                [c.status, c.masks, c.overlays, c.legend, c.disagreement, c.disagreement_text, state])
    model_event(c.measure.click, 'measure', [state, c.device, c.precision, c.short_side, c.runs],
                [c.metrics_table, c.metrics_plot]).success(
        lambda: gr.update(visible=True), None, [c.metrics_table], api_visibility='private', show_progress='hidden')
    model_event(rf.erf.click, 'erf', [c.image, c.models, rf.erf_size], [rf.plot])
    model_event(rf.erf_imagenet.click, 'erf_imagenet', [c.image, rf.classifiers], [rf.plot])
    model_event(classify.run.click, 'classify', [classify.image, classify.names],
                [classify.status, classify.table, classify.data]).success(
        lambda: gr.update(visible=True), None, [classify.table], api_visibility='private', show_progress='hidden')

    shift.draw.click(handlers.explain_shift, shift.inputs, [shift.anim, shift.mixing], api_name='explain_shift')
    rf.draw.click(handlers.explain_rf, [rf.size], [rf.anim], api_name='explain_rf')
    demo.load(handlers.explain_shift, shift.inputs, [shift.anim, shift.mixing], api_visibility='private')
    demo.load(handlers.explain_rf, [rf.size], [rf.anim], api_visibility='private')
    note = deployment.warm_up(app.starter, c.chosen) if deployment.warm_up is not None else None
    if note is not None:  # the first visit after a cold start says what is loading
        demo.load(note, None, [c.status], api_visibility='private', show_progress='hidden')

    c.opacity.change(app.reblend, [state, c.opacity], [c.overlays], api_visibility='private', show_progress='hidden')
    known = set(list_models())
    c.preset.change(lambda p: (list(preset(p)['models']), layout.preset_note(p)), [c.preset],
                    [c.models, c.preset_note], api_visibility='private', show_progress='hidden')
    c.models.change(lambda names: default_short_side(n for n in names or () if n in known), [c.models],
                    [c.short_side], api_visibility='private', show_progress='hidden')  # the chosen models' test size
    tta_inputs = [c.aug, c.models, c.device, c.precision, c.short_side, state]
    for trigger in (c.aug.change, c.models.change, c.short_side.change, state.change):
        trigger(app.tta_note, tta_inputs, [c.tta_note], api_visibility='private', show_progress='hidden')
