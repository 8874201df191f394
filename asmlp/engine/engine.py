"""The engine the app, the CLI and scripts run models with: :class:`Engine` composes the model cache, admission,
the time budget, segmentation and measurement (``asmlp/engine/__init__.py`` lists the parts)."""
from __future__ import annotations

import contextlib
import logging
import os
import weakref
from typing import Any, Callable, Iterator, Optional

import numpy as np

from ..errors import first_line
from ..limits import Limits
from .admission import Gate, Request
from .budget import Budget, in_work, remaining
from .cache import Loaded, ModelCache, load_detector, load_segmenter
from .choices import check_detector_names, is_detector
from .detect import Detection, detect_one
from .devices import check_model_names, resolve_device, resolve_precision
from .measure import Measurement, measure_one, model_input
from .segment import Segmentation, Timings, segment_one

__all__ = ['Engine', 'DEFAULT_MODELS']

log = logging.getLogger('asmlp.engine')
DEFAULT_MODELS = ('upernet_asmlp_tiny', 'upernet_swin_tiny', 'setr_pup_vit_small')  # light T/S ones for a CPU
Progress = Optional[Callable[[float, str], None]]


class Engine:
    """Zoo models loaded on first use into a bounded cache (:class:`~asmlp.engine.cache.ModelCache`: ``max_models``,
    ``max_bytes``, ``retry_after``), keyed by (name, device).

    All model work (:meth:`segment`, :meth:`segment_stream`, :meth:`measure`, :meth:`run`) is admitted by one
    :class:`~asmlp.engine.admission.Gate` (one request runs, ``Limits.max_waiting`` wait, the others get
    :class:`~asmlp.limits.Busy`) and runs under the request's time budget (``timeout``;
    :class:`~asmlp.engine.budget.Budget`). A CUDA out-of-memory error retries at half the inference size, then on
    the CPU. ``loader(name) -> (model, status)`` replaces the weights resolver (tests, other model kinds; no
    downloads are prefetched then); ``detector_loader`` does the same for the COCO detectors (:meth:`detect`),
    which share the cache. :meth:`close` waits for running work; an idle engine holds no thread.
    """

    def __init__(self, max_models: Optional[int] = None, loader: Optional[Callable] = None, *,
                 max_bytes: Optional[int] = None, timeout: Optional[float] = None,
                 retry_after: Optional[float] = None, limits: Optional[Limits] = None,
                 detector_loader: Optional[Callable] = None):
        self.limits = limits = limits or Limits.from_env()
        segmenters, detectors = loader or load_segmenter, detector_loader or load_detector

        def load(name: str):  # one cache, one memory bound, for both kinds (their names differ)
            return (detectors if is_detector(name) else segmenters)(name)
        self.models = ModelCache(load,
                                 max_models=limits.cache_models if max_models is None else max_models,
                                 max_bytes=limits.cache_bytes if max_bytes is None else max_bytes,
                                 retry_after=limits.retry_after if retry_after is None else retry_after)
        self._resolver, self._detector_resolver = loader is None, detector_loader is None
        self.gate = Gate(limits.max_waiting, limits.wait_timeout)
        self.budget = Budget(limits.inference_timeout if timeout is None else timeout, limits.timeout_grace,
                             limits.torch_threads)
        self.timings = Timings()
        self.closed = False
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (engine := this()) is not None and engine._after_fork())

    def _after_fork(self) -> None:
        """In a forked child (ZeroGPU runs each ``@spaces.GPU`` call in one: ``asmlp/space/zerogpu.py``) none of the
        parent's threads exist: new locks and a new admission gate, so that the child's work neither waits for a
        thread that is not there nor for requests that were running in the parent."""
        self.models.after_fork()
        self.budget.after_fork()
        self.gate = Gate(self.limits.max_waiting, self.limits.wait_timeout)

    # the limits of the parts, readable and settable here
    max_models = property(lambda self: self.models.max_models, lambda self, v: setattr(self.models, 'max_models', v))
    max_bytes = property(lambda self: self.models.max_bytes, lambda self, v: setattr(self.models, 'max_bytes', v))
    retry_after = property(lambda self: self.models.retry_after,
                           lambda self, v: setattr(self.models, 'retry_after', v))
    timeout = property(lambda self: self.budget.timeout, lambda self, v: setattr(self.budget, 'timeout', v))

    # ------------------------------------------------------------------------------------------ the model cache

    def get(self, name: str, device) -> Loaded:
        return self.models.get(name, device)

    def cached(self) -> list[str]:
        return self.models.names()

    def is_cached(self, name: str, device) -> bool:
        return self.models.contains(name, device)

    def cache_bytes(self) -> int:
        return self.models.nbytes()

    def clear(self) -> None:
        self.models.clear()

    # ------------------------------------------------------------------------------------- admission, time budget

    @contextlib.contextmanager
    def admit(self, request: Optional[Request] = None) -> Iterator[Request]:
        """A place for one request (the app's handlers enter it before decoding the upload), held as the explicit
        :class:`Request` the caller passes to the steps of its work; :class:`~asmlp.limits.Busy` at once when the
        running slot and every waiting place are taken. Given a ``request``, that one (nothing new is admitted)."""
        if request is not None:
            yield request
            return
        if self.closed:
            raise RuntimeError('this engine is closed')
        request = Request(self.gate.admit())
        try:
            yield request
        finally:
            request.ticket.release()

    def _turn(self, request: Request, progress: Progress, prepare: Optional[Callable[[], None]]) -> None:
        """Wait for ``request``'s turn (FIFO, the position reported), then ``prepare()`` once, before the budget."""
        def on_wait(ahead: int):
            if progress is not None:
                progress(0.0, f'Waiting for a free slot: {ahead} request{"s" if ahead != 1 else ""} ahead')
        request.ticket.acquire(on_wait)
        if not request.prepared:
            request.prepared = True
            if prepare is not None:
                prepare()

    def run(self, fn: Callable[[], Any], progress: Progress = None, prepare: Optional[Callable[[], None]] = None,
            request: Optional[Request] = None) -> Any:
        """``fn()`` with the request's turn (waiting in FIFO order), under its time budget:
        :class:`~asmlp.limits.InferenceTimeout` once ``timeout`` (+ ``Limits.timeout_grace`` for a single long
        operation) is spent. The work stops at the next module boundary; until it has, the slot stays taken (busy).
        ``prepare()`` runs first, with the turn but before the budget starts (weight downloads: not inference).
        Inside model work, ``fn()`` runs in place."""
        if in_work():
            return fn()
        with self.admit(request) as request:
            self._turn(request, progress, prepare)
            return self.budget.run(fn, request)

    def prefetch(self, names, device, progress: Progress = None) -> None:
        """Download the weights of the models of ``names`` that will load on ``device`` (not cached, or cached
        without their weights and due for another look), without loading them: :func:`asmlp.hub.prefetch`, with
        its progress (file, MB done / total, MB/s, ETA) passed on. Engines with their own loader skip this."""
        if self._resolver:
            from ..hub import prefetch
            from ..zoo import model_entry
            self._download(names, device, progress, prefetch, model_entry)

    def _download(self, names, device, progress: Progress, fetch: Callable, entry: Callable) -> None:
        """``fetch(name, progress=...)`` for each of ``names`` the cache will load on ``device``; a failure is
        logged (the load reports what is wrong; the request goes on)."""
        for name in names:
            if not self.models.needs_load(name, device):
                continue

            def report(p, name=name):
                if progress is not None:
                    progress(p.fraction or 0.0, f'{entry(name)["title"]}: {p.text()}')
            try:
                fetch(name, progress=report)
            except Exception as error:  # noqa: BLE001
                log.warning('%s: downloading weights failed: %s: %s', name, type(error).__name__, first_line(error))

    # -------------------------------------------------------------------------------------------------- the work

    def segment_stream(self, image: np.ndarray, names, device: str = 'auto', precision: str = 'auto',
                       short_side: int = 512, progress: Progress = None, aug: str = 'none',
                       request: Optional[Request] = None) -> Iterator[Segmentation]:
        """Each model's :class:`Segmentation` as soon as it is done (a generator: admitted on the first ``next()``,
        the slot held until it ends or is closed). Label maps (uint8) at the image's size; inference size: short
        side ``short_side`` (long side capped at 4x, mmseg's 2048:512). ``progress(fraction, text)`` hears what
        happens. Images above ``Limits.max_work_pixels`` are refused (:func:`asmlp.image_io.load_image` downsizes
        uploads): the logits are upsampled to the image's size, 600 bytes per pixel. ``aug`` 'ms-flip': the papers'
        MS protocol (:mod:`asmlp.models.tta`, the code of ``evaluate``); refused, with the estimate
        (:meth:`estimate_seconds`), when it would not fit in what is left of the time budget."""
        from ..models.tta import AUGS
        from ..preprocess import check_rgb_image
        if aug not in AUGS:
            raise ValueError(f'test-time augmentation must be one of {AUGS}, got {aug!r}')
        names = check_model_names(names)
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        short = int(short_side)
        if not 32 <= short <= 2048:
            raise ValueError(f'inference short side must be within 32..2048, got {short_side}')
        image = check_rgb_image(image)
        if image.shape[0] * image.shape[1] > self.limits.max_work_pixels:
            raise ValueError(f'the image has {image.shape[0] * image.shape[1] / 1e6:.1f} megapixels; the engine '
                             f'segments up to {self.limits.max_work_pixels / 1e6:.1f} (downscale it first)')
        with self.admit(request) as request:
            self._turn(request, progress, lambda: self.prefetch(names, dev, progress))
            if aug == 'ms-flip':
                self.budget.run(lambda: self._check_tta_budget(image, names, dev, prec, short, progress), request)
            for i, name in enumerate(names):
                yield self.budget.run(lambda: segment_one(self.models, self.timings, image, name, dev, prec, short,
                                                          aug, progress, i, len(names)), request)

    def segment(self, image: np.ndarray, names, device: str = 'auto', precision: str = 'auto',
                short_side: int = 512, progress: Progress = None, aug: str = 'none',
                on_result: Optional[Callable[[Segmentation], None]] = None,
                request: Optional[Request] = None) -> list[Segmentation]:
        """:meth:`segment_stream` as a list; ``on_result(segmentation)`` hears each model's result when it is done."""
        results = []
        for result in self.segment_stream(image, names, device, precision, short_side, progress, aug, request):
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results

    def prefetch_detectors(self, names, device, progress: Progress = None) -> None:
        """As :meth:`prefetch`, for COCO detectors (:func:`asmlp.hub.prefetch_detector`)."""
        if self._detector_resolver:
            from ..detectors import detector_entry
            from ..hub import prefetch_detector
            self._download(names, device, progress, prefetch_detector, detector_entry)

    def detect_stream(self, image: np.ndarray, names, device: str = 'auto', precision: str = 'auto',
                      progress: Progress = None, request: Optional[Request] = None) -> Iterator[Detection]:
        """Each COCO detector's :class:`~asmlp.engine.detect.Detection` of ``image`` as soon as it is done,
        admitted and budgeted as :meth:`segment_stream` (weights downloaded with the turn, before the budget).
        Each detector runs mmdet's test pipeline at its own ``img_scale``."""
        from ..preprocess import check_rgb_image
        names = check_detector_names(names)
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        image = check_rgb_image(image)
        if image.shape[0] * image.shape[1] > self.limits.max_work_pixels:
            raise ValueError(f'the image has {image.shape[0] * image.shape[1] / 1e6:.1f} megapixels; the engine '
                             f'detects in up to {self.limits.max_work_pixels / 1e6:.1f} (downscale it first)')
        with self.admit(request) as request:
            self._turn(request, progress, lambda: self.prefetch_detectors(names, dev, progress))
            for i, name in enumerate(names):
                yield self.budget.run(lambda: detect_one(self.models, image, name, dev, prec, progress, i,
                                                         len(names)), request)

    def detect(self, image: np.ndarray, names, device: str = 'auto', precision: str = 'auto',
               progress: Progress = None, request: Optional[Request] = None) -> list[Detection]:
        """:meth:`detect_stream` as a list."""
        return list(self.detect_stream(image, names, device, precision, progress, request))

    def estimate_seconds(self, image_shape, names, device: str = 'auto', precision: str = 'auto',
                         short_side: int = 512, aug: str = 'none') -> Optional[float]:
        """The expected model time of a request from this engine's timings (:meth:`Timings.estimate
        <asmlp.engine.segment.Timings.estimate>`); None while a model has no timing yet."""
        dev = resolve_device(device)
        return self.timings.estimate(image_shape, check_model_names(names), dev, resolve_precision(precision, dev),
                                     int(short_side), aug)

    def _check_tta_budget(self, image, names, dev, prec, short, progress) -> None:
        """Time a single-scale pass of the models without a timing, then refuse MS+flip beyond the budget."""
        from ..models.tta import cost_factor
        for i, name in enumerate(names):
            if self.timings.estimate(image.shape, [name], dev, prec, short) is None:
                segment_one(self.models, self.timings, image, name, dev, prec, short, 'none', progress, i, len(names))
        self.timings.view_cost(dev)  # measured once per device, with the turn (no other model work runs)
        estimate = self.timings.estimate(image.shape, names, dev, prec, short, 'ms-flip')
        left = remaining()
        left = self.timeout if left is None else left
        if estimate is not None and estimate > left:
            raise ValueError(f'MS+flip would take about {estimate:.0f} s here ({cost_factor("ms-flip"):.1f}x the '
                             f'single-scale time of {", ".join(names)}, plus 12 views resized and softmaxed at the '
                             f'image\'s size), beyond the {left:.0f} s left of the inference time budget '
                             f'(ASMLP_INFERENCE_TIMEOUT); choose fewer models, a smaller inference size or no '
                             f'test-time augmentation')

    def measure(self, image: np.ndarray, names, device: str = 'auto', precision: str = 'auto',
                short_side: int = 512, runs: int = 5, request: Optional[Request] = None) -> list[Measurement]:
        """Per model a :class:`~asmlp.engine.measure.Measurement`: warm latency (median and p10-p90 of ``runs``),
        GMACs at the inference size and at the papers' 512x2048, parameters, the peak activation memory of one
        timed forward (and counted at 512x2048 in fp32 on the meta device), and the published numbers."""
        names = check_model_names(names)
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)

        def work():
            x = model_input(image, short_side, dev)
            return [measure_one(self.models, name, x, dev, prec, int(runs)) for name in names]
        return self.run(work, request=request, prepare=lambda: self.prefetch(names, dev))

    # --------------------------------------------------------------------------------------------------- closing

    def close(self, timeout: Optional[float] = 60.0) -> bool:
        """Refuse new requests, wait (at most ``timeout`` s) for the running work to end, empty the cache. True when
        no work thread is left."""
        self.closed = True
        done = self.budget.close(timeout)
        self.models.clear()
        return done

    def __enter__(self) -> 'Engine':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
