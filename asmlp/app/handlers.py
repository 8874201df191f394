"""The app's handlers as plain functions over the engine, callable and testable without Gradio.

Each takes the :class:`~asmlp.engine.Engine` (the classifier handlers also the classifiers'
:class:`~asmlp.engine.ModelCache`) and the request's values, admits the request before decoding the upload, and
returns views (``asmlp/app/views.py``). Expected user errors raise ValueError (or
:class:`~asmlp.limits.Busy`, :class:`~asmlp.limits.InferenceTimeout`, :class:`~asmlp.image_io.ImageInputError`)
with a message for people. ``progress(fraction, text)`` hears what happens. The ``*_work`` functions say what a
call of each model handler will run (:class:`~asmlp.app.registry.Work`), from the same values.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, Optional

from ..classifiers import DEFAULT_CLASSIFIERS
from ..image_io import load_image
from .files import ResultFiles
from .registry import Work
from .views import (ClassifyView, ComparePanels, CompareState, InstancesState, InstancesView, classify_view,
                    compare_panels, instance_panels, instances_data, instances_view, overlays)

if TYPE_CHECKING:
    from ..engine import Engine, ModelCache

__all__ = ['NO_IMAGE', 'NO_IMAGE_HERE', 'NO_STATE', 'require', 'compare', 'measure', 'erf', 'erf_imagenet',
           'classify', 'reblend', 'tta_note', 'explain_shift', 'explain_rf', 'prefetch_classifiers',
           'compare_work', 'measure_work', 'erf_work', 'erf_imagenet_work', 'classify_work', 'detect', 'redraw',
           'detect_work', 'DEFAULT_THRESHOLD']

Progress = Optional[Callable[[float, str], None]]
NO_IMAGE = 'Upload an image or pick an example first.'
NO_IMAGE_HERE = 'Upload an image (Compare tab) first.'
NO_STATE = 'Segment an image first; the measurements use the same image and models.'
ERF_IMAGENET_SIZE = 224  # the ImageNet backbones' training size
DEFAULT_THRESHOLD = 0.3  # mmdet's show_result / image demo default score_thr


def require(value, message: str) -> None:
    """ValueError(``message``) when ``value`` is missing (no upload, nothing segmented yet)."""
    if not value:
        raise ValueError(message)


# ---------------------------------------------------------------------------------------------------- segmenters

def compare(engine: 'Engine', files: ResultFiles, image_path: str, models, device: str, precision: str,
            short_side: int, opacity: float, aug: str = 'none', progress: Progress = None) -> Iterator[ComparePanels]:
    """The compare panels as each model finishes (the last ones hold every model and the session state)."""
    from ..engine.devices import check_model_names
    require(image_path, NO_IMAGE)
    aug = aug or 'none'
    with engine.admit() as request:  # a full app says so at once, before the upload is decoded
        image, info = load_image(image_path)
        expected = len(check_model_names(models))
        done = []
        for result in engine.segment_stream(image, models, device, precision, int(short_side), progress, aug,
                                            request=request):
            done.append(result)
            yield compare_panels(files, image, info, done, opacity, aug, expected)


def reblend(files: ResultFiles, state: Optional[CompareState], opacity: float) -> Optional[list[tuple[str, str]]]:
    """The overlays again at ``opacity`` (None before any compare)."""
    return None if not state else overlays(files, state.image, state.results, opacity)


def measure(engine: 'Engine', state: Optional[CompareState], device: str, precision: str, short_side: int,
            runs: int):
    """The metrics table and chart of the compared models on the compared image."""
    from ..report import metrics_figure, metrics_table
    require(state, NO_STATE)
    rows = [m.as_dict() for m in engine.measure(state.image, state.models, device, precision, int(short_side),
                                                 int(runs))]
    return metrics_table(rows), metrics_figure(rows)


def tta_note(engine: Optional['Engine'], timeout: float, aug: str, models, device: str, precision: str,
             short_side: int, state: Optional[CompareState]) -> str:
    """What MS+flip costs for the chosen models: the factor, and seconds from the engine's timings when it has
    them (``engine`` None: not started yet)."""
    if aug != 'ms-flip':
        return ''
    from ..models.tta import cost_factor
    text = (f'MS+flip: 12 views (scales 0.5-1.75 x flip), about **{cost_factor("ms-flip"):.1f}x** the '
            f'single-scale work; requests beyond the {timeout:g} s budget are refused.')
    if engine is None or not state:
        return text
    try:
        seconds = engine.estimate_seconds(state.image.shape, models, device, precision, int(short_side), 'ms-flip')
    except ValueError:
        seconds = None
    if seconds is not None:
        text += f' For these models on this image: about **{seconds:.0f} s** here.'
    return text


def erf(engine: 'Engine', image_path: str, models, short_side: int, progress: Progress = None):
    """The effective receptive fields of the chosen segmenters' backbone stages on the image (on the GPU when there
    is one)."""
    from ..engine.devices import check_model_names, resolve_device
    from ..explain import erf_figure
    from ..explain.subjects import erf_of_subjects, segmenter_subject
    from ..preprocess import preprocess
    require(image_path, NO_IMAGE_HERE)
    with engine.admit() as request:
        image, _ = load_image(image_path)
        names = check_model_names(models)
        x = preprocess(image, (4 * int(short_side), int(short_side)))
        device = resolve_device('auto')

        def work():
            return erf_of_subjects([segmenter_subject(n, loaded.model, loaded.status)
                                    for n, loaded in ((n, engine.get(n, device)) for n in names)], x)
        maps, labels = engine.run(work, progress, prepare=lambda: engine.prefetch(names, device, progress),
                                  request=request)
    return erf_figure(maps, stage_labels=labels, max_cells=64)


# --------------------------------------------------------------------------------------------------- classifiers

def prefetch_classifiers(classifiers: 'ModelCache', names, device=None) -> None:
    """Download the weights of the classifiers of ``names`` not yet loaded on ``device`` (all of them without one),
    without loading them."""
    from ..classifiers import prefetch_classifier
    for name in names:
        if device is None or classifiers.needs_load(name, device):
            prefetch_classifier(name)


def erf_imagenet(engine: 'Engine', classifiers: 'ModelCache', image_path: str, names, progress: Progress = None):
    """The effective receptive fields of the ImageNet backbones at 224 (their training size) on a centre crop of
    the image."""
    from ..classify import check_classifier_names
    from ..engine.devices import resolve_device
    from ..explain import erf_figure
    from ..explain.subjects import classifier_subject, erf_of_subjects, square_input
    require(image_path, NO_IMAGE_HERE)
    with engine.admit() as request:
        image, _ = load_image(image_path)
        names = check_classifier_names(names)
        x = square_input(image, ERF_IMAGENET_SIZE)
        device = resolve_device('auto')

        def work():
            return erf_of_subjects([classifier_subject(n, loaded.model, loaded.status)
                                    for n, loaded in ((n, classifiers.get(n, device)) for n in names)], x)
        maps, labels = engine.run(work, progress, prepare=lambda: prefetch_classifiers(classifiers, names, device),
                                  request=request)
    return erf_figure(maps, stage_labels=labels, max_cells=56,
                      title='Effective receptive field of the centre position — ImageNet backbones, 224x224')


def classify(engine: 'Engine', classifiers: 'ModelCache', image_path: str, names=None,
             progress: Progress = None) -> ClassifyView:
    """Top-5 of each chosen ImageNet classifier (default: AS-MLP-T, Swin-T, DeiT-S), side by side."""
    from ..classify import check_classifier_names
    from ..classify import classify as classify_image
    from ..engine.devices import resolve_device
    require(image_path, NO_IMAGE)
    with engine.admit() as request:
        image, info = load_image(image_path)
        names = check_classifier_names(names if names is not None else DEFAULT_CLASSIFIERS)
        device = resolve_device('auto')
        results = engine.run(lambda: classify_image(image, names, lambda n: classifiers.get(n, device)), progress,
                             prepare=lambda: prefetch_classifiers(classifiers, names, device), request=request)
    return classify_view(results, info)


# ------------------------------------------------------------------------------------------------ COCO detectors

def _threshold(value) -> float:
    try:
        threshold = float(DEFAULT_THRESHOLD if value is None else value)
    except (TypeError, ValueError):
        raise ValueError(f'the score threshold must be a number in 0..1, got {value!r}') from None
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f'the score threshold must be within 0..1, got {value}')
    return threshold


def detect(engine: 'Engine', files: ResultFiles, image_path: str, models, device: str = 'auto',
           precision: str = 'auto', threshold: float = DEFAULT_THRESHOLD, progress: Progress = None) -> InstancesView:
    """The chosen COCO detectors on the image: one panel each (boxes, class and score, instance masks at or above
    ``threshold``), the status with each one's weights, published AP and latency, the detections as data, and the
    state the threshold redraws from."""
    from ..engine.choices import check_detector_names
    require(image_path, NO_IMAGE)
    threshold = _threshold(threshold)
    names = check_detector_names(models)
    with engine.admit() as request:
        image, info = load_image(image_path)
        results = engine.detect(image, names, device, precision, progress, request=request)
    return instances_view(files, image, info, results, threshold)


def redraw(files: ResultFiles, state: Optional[InstancesState], threshold: float):
    """The panels and the data again at ``threshold``, from the detections kept in the state (no model runs);
    None before any detection."""
    if not state:
        return None
    threshold = _threshold(threshold)
    return instance_panels(files, state, threshold), instances_data(state, threshold)


# ---------------------------------------------------------------------------------------------------- explainer

def explain_shift(shift_size, dilation, channels, height, width, blocks) -> tuple[str, str]:
    """The shift animation and the mixing figure (plotly JSON with frames)."""
    from ..explain import mixing_figure, shift_animation_figure
    s, d = int(shift_size), int(dilation)
    anim = shift_animation_figure(int(channels), int(height), int(width), s, d)
    configs = list(dict.fromkeys([(3, 1), (5, 1), (3, 2), (s, d)]))
    return anim.to_json(), mixing_figure(configs, blocks=int(blocks)).to_json()


def explain_rf(size) -> str:
    """The theoretical receptive fields over depth (plotly JSON with frames)."""
    from ..explain import rf_animation_figure
    return rf_animation_figure((int(size), int(size))).to_json()


# ------------------------------------------------------------------------------ what each model handler will run

def compare_work(image_path, models, device=None, precision=None, short_side=512, opacity=None, aug='none',
                 **_) -> Optional[Work]:
    from ..engine.devices import check_model_names
    from ..models.tta import cost_factor
    if not image_path:
        return None
    return Work('compare', 'segmenter', tuple(check_model_names(models)), int(short_side), cost_factor(aug or 'none'))


def measure_work(state, device=None, precision=None, short_side=512, runs=1, **_) -> Optional[Work]:
    from ..engine.devices import check_model_names
    if not state:
        return None
    # a warm-up, the timed runs and one forward under the memory tracker
    return Work('measure', 'segmenter', tuple(check_model_names(state.models)), int(short_side), int(runs) + 2)


def erf_work(image_path, models, short_side=224, **_) -> Optional[Work]:
    from ..engine.devices import check_model_names
    if not image_path:
        return None
    return Work('erf', 'segmenter', tuple(check_model_names(models)), int(short_side), 3)  # forward + backward


def erf_imagenet_work(image_path, names, **_) -> Optional[Work]:
    from ..classify import check_classifier_names
    if not image_path:
        return None
    return Work('erf_imagenet', 'classifier', tuple(check_classifier_names(names)), ERF_IMAGENET_SIZE, 3)


def classify_work(image_path, names=None, **_) -> Optional[Work]:
    from ..classify import check_classifier_names
    if not image_path:
        return None
    names = check_classifier_names(names if names is not None else DEFAULT_CLASSIFIERS)
    return Work('classify', 'classifier', tuple(names), 224, 1)


def detect_work(image_path, models, device=None, precision=None, threshold=None, **_) -> Optional[Work]:
    from ..detectors import architecture_entry
    from ..engine.choices import check_detector_names
    if not image_path:
        return None
    names = tuple(check_detector_names(models))
    size = max(min(architecture_entry(n)['img_scale']) for n in names)  # the short side of mmdet's test scale
    return Work('detect', 'detector', names, size, 1)
