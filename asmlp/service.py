"""What the app does, without the UI: load zoo models into a bounded cache, segment an image with several models,
and measure them (latency, GMACs, parameters, peak memory) beside the papers' numbers."""
from __future__ import annotations

import contextlib
import contextvars
import functools
import gc
import logging
import os
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from . import viz
from .app_options import DEVICES, PRECISIONS, check_names, default_short_side  # noqa: F401  (public here too)
from .limits import Gate, InferenceTimeout, Limits
from .precision import autocast, cpu_bf16_supported
from .zoo import list_models, model_entry

log = logging.getLogger('asmlp.service')

DEFAULT_MODELS = ('upernet_asmlp_tiny', 'upernet_swin_tiny', 'setr_pup_vit_small')  # light T/S ones for a CPU
_KIND_RANK = {'ade20k': 0, 'demo': 1, 'imagenet-backbone': 2}


def resolve_device(choice: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'gpu' without CUDA is an error with a clear message."""
    if choice not in DEVICES:
        raise ValueError(f'device must be one of {DEVICES}, got {choice!r}')
    if choice == 'gpu' and not torch.cuda.is_available():
        raise ValueError('no CUDA GPU is available on this machine; choose CPU or auto')
    return torch.device('cuda' if choice != 'cpu' and torch.cuda.is_available() else 'cpu')


def resolve_precision(choice: str, device: torch.device) -> str:
    """'auto' -> fp16 on GPU, bf16 on CPUs with native bf16, else fp32."""
    if choice not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {choice!r}')
    if choice != 'auto':
        if device.type == 'cpu' and choice == 'fp16':
            raise ValueError('fp16 runs on GPU only; on CPU choose bf16 or fp32')
        return choice
    if device.type == 'cuda':
        return 'fp16'
    return 'bf16' if cpu_bf16_supported() else 'fp32'


def check_model_names(names) -> list[str]:
    """Zoo names from the UI or an API client, validated (unknown names raise ValueError naming them)."""
    return check_names(names, model_entry, 'model', 'zoo names')


def weights_on_disk(name: str) -> Optional[str]:
    """The best weight kind found for ``name`` on disk or in the caches without loading anything (None when there
    is none): :func:`asmlp.hub.availability.available_kind`."""
    from .hub.availability import available_kind
    return available_kind(name)


def default_models() -> list[str]:
    """One AS-MLP, one Swin and one SETR model: per family the one with the best weights on disk, else the light
    T/S default."""
    chosen = []
    for default in DEFAULT_MODELS:
        family = model_entry(default)['family']
        ranked = [(_KIND_RANK[kind], name) for name in list_models()
                  if model_entry(name)['family'] == family and (kind := weights_on_disk(name))]
        chosen.append(min(ranked)[1] if ranked else default)
    return chosen


@dataclass
class Loaded:
    model: torch.nn.Module
    status: Any  # asmlp.hub.WeightStatus
    params: int
    nbytes: int = 0          # parameters + buffers
    degraded: bool = False   # loaded without the weights it should have (a source failed): looked up again later
    loaded_at: float = 0.0   # time.monotonic()


@dataclass
class Segmentation:
    name: str
    title: str
    labels: np.ndarray
    status: Any
    seconds: float
    device: str
    precision: str
    input_size: tuple[int, int]
    legend: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what happened on the way (GPU out of memory, weights retry)


_local = threading.local()  # per thread: the request's ticket (handler threads), the deadline (inference thread)


def _deadline_hook(module, args):
    """Forward pre-hook on every module of a cached model: stops the inference at the next module boundary once
    the request's time budget is spent."""
    deadline = getattr(_local, 'deadline', None)
    if deadline is not None and time.monotonic() > deadline:
        raise InferenceTimeout(_local.timeout_message)


def _degraded(status) -> bool:
    return bool(getattr(status, 'problems', ())) and getattr(status, 'kind', None) != 'ade20k'


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = (str(error).strip() or type(error).__name__).splitlines()[0]
    return text[:limit]


def _model_bytes(model: torch.nn.Module) -> int:
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


class Engine:
    """Zoo models loaded on first use and kept in an LRU cache bounded by count (``max_models``) and bytes
    (``max_bytes``, parameters + buffers; the newest model always stays), keyed by (name, device).

    All model work (:meth:`segment`, :meth:`measure`, :meth:`run`) goes through one admission :class:`Gate`
    (one request runs, ``Limits.max_waiting`` wait, the others get :class:`Busy`) and runs on one inference thread
    with fixed intra-op threads, under a time budget (``timeout``, :class:`InferenceTimeout`). Models loaded
    without the weights they should have (a source unreachable or broken) are looked up again after
    ``retry_after`` seconds. A CUDA out-of-memory error retries at half the inference size, then on the CPU.
    Untrained models are built from a seed derived from their name: the same model on every load.
    """

    def __init__(self, max_models: Optional[int] = None, loader: Optional[Callable] = None, *,
                 max_bytes: Optional[int] = None, timeout: Optional[float] = None,
                 retry_after: Optional[float] = None, limits: Optional[Limits] = None):
        self.limits = limits or Limits.from_env()
        self.max_models = self.limits.cache_models if max_models is None else max_models
        self.max_bytes = self.limits.cache_bytes if max_bytes is None else max_bytes
        self.timeout = self.limits.inference_timeout if timeout is None else timeout
        self.retry_after = self.limits.retry_after if retry_after is None else retry_after
        self.gate = Gate(self.limits.max_waiting, self.limits.wait_timeout)
        self._loader = loader
        self._cache: OrderedDict[tuple[str, str], Loaded] = OrderedDict()
        self._lock = threading.RLock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix='asmlp-inference')
        self._seconds: dict[tuple, float] = {}  # (name, device type, precision, input size, aug) -> last time
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (engine := this()) is not None and engine._after_fork())

    def _after_fork(self) -> None:
        """In a forked child (ZeroGPU runs each ``@spaces.GPU`` call in one: ``asmlp/space/zerogpu.py``) none of the
        parent's threads exist: a new inference thread, cache lock and admission gate, so that the child's work
        neither waits for a thread that is not there nor for requests that were running in the parent."""
        self._lock = threading.RLock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix='asmlp-inference')
        self.gate = Gate(self.limits.max_waiting, self.limits.wait_timeout)

    # ------------------------------------------------------------------------------------------ the model cache

    def _load(self, name: str):
        if self._loader is not None:
            return self._loader(name)
        from .hub import WeightStatus, load_pretrained
        from .hub.status import UNTRAINED_MESSAGE
        from .zoo import create_segmenter
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(zlib.crc32(name.encode()))  # untrained models: the same weights on every load
            try:
                return load_pretrained(name)
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception as error:  # noqa: BLE001  (load_pretrained reports faults in its status; this is
                # the net for what it did not foresee, e.g. an unwritable cache: this model degrades, the others run)
                why = f'{type(error).__name__}: {_one_line(error)}'
                log.warning('%s: loading weights failed: %s', name, why)
                torch.manual_seed(zlib.crc32(name.encode()))
                status = WeightStatus(model=name, kind='none', source=None, revision_pinned=False, sha256=None,
                                      message=f'{UNTRAINED_MESSAGE} (loading weights failed: {why})',
                                      problems=(f'loading weights failed: {why}',))
                return create_segmenter(name), status

    def get(self, name: str, device: torch.device) -> Loaded:
        device = torch.device(device)
        key = (name, str(device))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and not (hit.degraded and time.monotonic() - hit.loaded_at >= self.retry_after):
                self._cache.move_to_end(key)
                return hit
            if hit is not None:
                self._drop(key)  # its weights were missing because of a fault: look again
            while len(self._cache) >= self.max_models:
                self._drop(next(iter(self._cache)))  # room first: the peak is the cache plus the new model
            model, status = self._load(name)
            model = model.eval().to(device)
            for module in model.modules():
                module.register_forward_pre_hook(_deadline_hook)
            loaded = Loaded(model, status, sum(p.numel() for p in model.parameters()), _model_bytes(model),
                            _degraded(status), time.monotonic())
            self._cache[key] = loaded
            while len(self._cache) > 1 and (len(self._cache) > self.max_models or
                                            self.cache_bytes() > self.max_bytes):
                self._drop(next(iter(self._cache)))
            return loaded

    def _drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._cache.pop(key, None)
        if key[1].startswith('cuda'):
            _release_gpu()

    def cached(self) -> list[str]:
        return [name for name, _ in self._cache]

    def is_cached(self, name: str, device: torch.device) -> bool:
        return (name, str(device)) in self._cache

    def cache_bytes(self) -> int:
        return sum(loaded.nbytes for loaded in self._cache.values())

    def clear(self) -> None:
        with self._lock:
            keys = list(self._cache)
        for key in keys:
            self._drop(key)

    # ------------------------------------------------------------------------------------- admission, time budget

    @contextlib.contextmanager
    def admit(self):
        """A place for one request in this thread (the UI handlers enter it before decoding the upload): raises
        :class:`Busy` at once when the running slot and every waiting place are taken. Re-entrant."""
        ticket = getattr(_local, 'ticket', None)
        if ticket is not None:
            yield ticket
            return
        ticket = self.gate.admit()
        _local.ticket = ticket
        try:
            yield ticket
        finally:
            _local.ticket = None
            ticket.release()

    def run(self, fn: Callable[[], Any], progress: Optional[Callable[[float, str], None]] = None,
            prepare: Optional[Callable[[], None]] = None) -> Any:
        """``fn()`` with the request's turn (waiting in FIFO order), on the inference thread, under the time budget:
        :class:`InferenceTimeout` once ``timeout`` (+ ``Limits.timeout_grace`` for a single long operation) is
        spent. The work stops at the next module boundary; until it has, the slot stays taken (busy).
        ``prepare()`` runs first, with the turn but before the budget starts (weight downloads: not inference)."""
        if getattr(_local, 'in_worker', False):
            return fn()
        with self.admit() as ticket:
            def on_wait(ahead: int):
                if progress is not None:
                    progress(0.0, f'Waiting for a free slot: {ahead} request{"s" if ahead != 1 else ""} ahead')
            ticket.acquire(on_wait)
            if prepare is not None:
                prepare()
            return self._run_with_deadline(fn, ticket)

    def prefetch(self, names, device: torch.device,
                 progress: Optional[Callable[[float, str], None]] = None) -> None:
        """Download the weights of the models of ``names`` that will load on ``device`` (not cached, or cached
        without their weights and due for another look), without loading them: :func:`asmlp.hub.prefetch`, with
        its progress (file, MB done / total, MB/s, ETA) passed on. Engines with their own loader skip this."""
        if self._loader is not None:
            return
        from .hub import prefetch
        for name in names:
            hit = self._cache.get((name, str(torch.device(device))))
            if hit is not None and not (hit.degraded and time.monotonic() - hit.loaded_at >= self.retry_after):
                continue

            def report(p, name=name):
                if progress is not None:
                    progress(p.fraction or 0.0, f'{model_entry(name)["title"]}: {p.text()}')
            try:
                prefetch(name, progress=report)
            except Exception as error:  # noqa: BLE001  (the load reports what is wrong; the request goes on)
                log.warning('%s: downloading weights failed: %s: %s', name, type(error).__name__, _one_line(error))

    def _run_with_deadline(self, fn: Callable[[], Any], ticket) -> Any:
        budget = self.timeout
        message = (f'The models ran past this request\'s time budget of {budget:g} s (ASMLP_INFERENCE_TIMEOUT); '
                   f'try a smaller inference size or fewer models.')
        deadline = time.monotonic() + budget

        def work():
            _local.in_worker, _local.deadline, _local.timeout_message = True, deadline, message
            try:
                torch.set_num_threads(self.limits.torch_threads)
                return fn()
            finally:
                _local.in_worker, _local.deadline = False, None
                ticket.work_done()

        ticket.start_work()
        try:
            future = self._executor.submit(contextvars.copy_context().run, work)
        except BaseException:
            ticket.work_done()
            raise
        try:
            return future.result(timeout=budget + self.limits.timeout_grace)
        except FutureTimeout:
            ticket.release()  # the work frees the slot when it stops
            self.gate.count('timed_out')
            raise InferenceTimeout(message + ' (The app stays busy until the computation has stopped.)') from None
        except InferenceTimeout:
            self.gate.count('timed_out')
            raise

    # -------------------------------------------------------------------------------------------------- the work

    def segment(self, image: np.ndarray, names, device: str = 'auto', precision: str = 'auto',
                short_side: int = 512, progress: Optional[Callable[[float, str], None]] = None,
                aug: str = 'none', on_result: Optional[Callable[['Segmentation'], None]] = None) -> list[Segmentation]:
        """Label maps (uint8) at the image's size, one per model; inference size: short side ``short_side``
        (long side capped at 4x, mmseg's 2048:512). ``progress(fraction, text)`` hears what happens;
        ``on_result(segmentation)`` gets each model's result as soon as it is done (on the inference thread).
        Images above ``Limits.max_work_pixels`` are refused (:func:`asmlp.image_io.load_image` downsizes uploads):
        the logits are upsampled to the image's size, 600 bytes per pixel. ``aug`` 'ms-flip': the papers' MS
        protocol (:mod:`asmlp.models.tta`, the code of ``evaluate``); refused, with the estimate
        (:meth:`estimate_seconds`), when it would not fit in what is left of the time budget."""
        from .models.tta import AUGS
        from .preprocess import check_rgb_image
        if aug not in AUGS:
            raise ValueError(f'test-time augmentation must be one of {AUGS}, got {aug!r}')
        names = check_model_names(names)
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        if not 32 <= int(short_side) <= 2048:
            raise ValueError(f'inference short side must be within 32..2048, got {short_side}')
        image = check_rgb_image(image)
        if image.shape[0] * image.shape[1] > self.limits.max_work_pixels:
            raise ValueError(f'the image has {image.shape[0] * image.shape[1] / 1e6:.1f} megapixels; the engine '
                             f'segments up to {self.limits.max_work_pixels / 1e6:.1f} (downscale it first)')

        def work():
            if aug == 'ms-flip':
                self._check_tta_budget(image, names, dev, prec, int(short_side), progress)
            results = []
            for i, name in enumerate(names):
                results.append(self._segment_one(image, name, i, len(names), dev, prec, int(short_side), progress,
                                                 aug))
                if on_result is not None:
                    on_result(results[-1])
            return results
        return self.run(work, progress, prepare=lambda: self.prefetch(names, dev, progress))

    def estimate_seconds(self, image_shape, names, device: str = 'auto', precision: str = 'auto',
                         short_side: int = 512, aug: str = 'none') -> Optional[float]:
        """The expected model time of a request from this engine's timings of the same models, device, precision,
        inference size and augmentation; for MS+flip never run yet, :func:`asmlp.models.tta.cost_factor` x the
        single-scale time (a lower bound: each of the 12 views also resizes and softmaxes 150 classes at the
        image's size). None while a model has no timing yet."""
        dev = resolve_device(device)
        return self._estimate(image_shape, check_model_names(names), dev, resolve_precision(precision, dev),
                              int(short_side), aug)

    def _estimate(self, image_shape, names, dev, prec, short, aug='none') -> Optional[float]:
        from .models.tta import cost_factor
        from .preprocess import rescale_size
        size = rescale_size(*image_shape[:2], (4 * short, short))
        times = []
        for name in names:
            seconds = self._seconds.get((name, dev.type, prec, size, aug))
            single = self._seconds.get((name, dev.type, prec, size, 'none'))
            times.append(seconds if seconds is not None else
                         None if single is None else cost_factor(aug) * single)
        return None if None in times else sum(times)

    def _check_tta_budget(self, image, names, dev, prec, short, progress) -> None:
        """Time a single-scale pass of the models without a timing, then refuse MS+flip beyond the budget."""
        from .models.tta import cost_factor
        for i, name in enumerate(names):
            if self._estimate(image.shape, [name], dev, prec, short) is None:
                self._segment_one(image, name, i, len(names), dev, prec, short, progress, 'none')
        estimate = self._estimate(image.shape, names, dev, prec, short, 'ms-flip')
        remaining = _local.deadline - time.monotonic() if getattr(_local, 'deadline', None) else self.timeout
        if estimate is not None and estimate > remaining:
            raise ValueError(f'MS+flip would take about {estimate:.0f} s here (at least {cost_factor("ms-flip"):.1f}x '
                             f'the single-scale time of {", ".join(names)}), beyond the {remaining:.0f} s left of the '
                             f'inference time budget (ASMLP_INFERENCE_TIMEOUT); choose fewer models, a smaller '
                             f'inference size or no test-time augmentation')

    def _segment_one(self, image, name, index, count, dev, prec, short, progress, aug='none') -> Segmentation:
        from .models.tta import segment as tta_segment
        title = model_entry(name)['title']
        if progress is not None:
            verb = 'Running' if self.is_cached(name, dev) else 'Loading (first use) and running'
            progress(index / count, f'{verb} {title}')
        attempts = [(dev, prec, short)]
        if dev.type == 'cuda':
            if short // 2 >= 64:
                attempts.append((dev, prec, short // 2))
            attempts.append((torch.device('cpu'), prec if prec in ('fp32', 'bf16') else
                             resolve_precision('auto', torch.device('cpu')), short))
        notes = []
        for k, (d, p, s) in enumerate(attempts):
            try:
                loaded = self.get(name, d)
                start = time.perf_counter()
                with torch.inference_mode(), autocast(d, p):
                    labels = tta_segment(loaded.model, image, aug, s)
                seconds = time.perf_counter() - start
                self._seconds[(name, d.type, p, _inference_size(image, (4 * s, s)), aug)] = seconds
                break
            except torch.cuda.OutOfMemoryError as error:
                if d.type != 'cuda' or k == len(attempts) - 1:
                    raise
                why = _one_line(error, 120)
            # out of the except block: the error's traceback (and the tensors its frames hold) is gone
            next_device, _, next_short = attempts[k + 1]
            if next_device.type == 'cpu':
                self._drop((name, str(d)))  # also frees the model's GPU memory
            _release_gpu()
            notes.append(f'GPU out of memory at short side {s} px ({why}); ' +
                         (f'ran at {next_short} px instead' if next_device.type == 'cuda'
                          else 'ran on the CPU instead (slower)'))
            log.warning('%s: %s', name, notes[-1])
        if loaded.degraded:
            first = (str(loaded.status.problems[0]).strip().splitlines() or [''])[0][:300]
            notes.append(f'weights: {first} — looked up again on a request after {self.retry_after:g} s')
        labels = np.asarray(labels)
        if labels.size and 0 <= labels.min() and labels.max() < 256:
            labels = labels.astype(np.uint8)
        return Segmentation(name=name, title=title, labels=labels, status=loaded.status, seconds=seconds,
                            device=d.type, precision=p, input_size=_inference_size(image, (4 * s, s)),
                            legend=viz.legend(labels), notes=notes)

    def measure(self, image: np.ndarray, names, device: str = 'auto', precision: str = 'auto',
                short_side: int = 512, runs: int = 5) -> list[dict]:
        """Per model: warm latency (median and p10-p90 of ``runs``), GMACs at the inference size and at the
        papers' 512x2048, parameters, the peak activation memory of one timed forward (and counted at 512x2048 in
        fp32 on the meta device), and the published numbers."""
        from .bench.timing import summarize
        from .memory import peak_activation_bytes
        from .preprocess import preprocess

        names = check_model_names(names)
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        scale = (4 * int(short_side), int(short_side))

        def work():
            x = preprocess(image, scale).to(dev).contiguous(memory_format=torch.channels_last)  # as predict()
            rows = []
            for name in names:
                loaded = self.get(name, dev)

                def forward():
                    with torch.inference_mode(), autocast(dev, prec):
                        loaded.model(x)
                    if dev.type == 'cuda':
                        torch.cuda.synchronize()
                forward()  # warm-up
                timing = summarize(_time_runs(forward, runs, dev))
                at_size = _cached_metrics(name, tuple(x.shape[-2:]))
                paper = _cached_metrics(name, (512, 2048))
                rows.append(dict(
                    name=name, device=dev.type, precision=prec, input=f'{x.shape[-2]}x{x.shape[-1]}',
                    latency_ms=timing.median_ms, p10_ms=timing.p10_ms, p90_ms=timing.p90_ms, runs=timing.runs,
                    gmacs=at_size['gmacs'], gmacs_512x2048=paper['gmacs'], params=at_size['params'],
                    activation_mib=peak_activation_bytes(forward, loaded.model, x, device=dev) / 2**20,
                    param_mib=at_size['param_mib'], activation_mib_512x2048=paper['activation_mib'],
                    paper_params=paper['paper_params'],
                    paper_gmacs=paper['paper_gmacs'], paper_miou_ss=paper['paper_miou_ss'],
                    paper_miou_ms=paper['paper_miou_ms']))
            return rows
        return self.run(work)


def _release_gpu() -> None:
    """Free what an out-of-memory error or an evicted model left on the GPU."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _inference_size(image: np.ndarray, scale: tuple[int, int]) -> tuple[int, int]:
    from .preprocess import rescale_size
    return rescale_size(*image.shape[:2], scale)


def _time_runs(fn: Callable[[], None], runs: int, device: torch.device) -> list[float]:
    """Milliseconds per call; CUDA events on GPU."""
    times = []
    for _ in range(max(1, runs)):
        if device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


@functools.lru_cache(maxsize=256)
def _cached_metrics(name: str, size: tuple[int, int]) -> dict:
    from .counts_cache import cached_segmenter_metrics
    return cached_segmenter_metrics(name, size)
