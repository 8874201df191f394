"""ZeroGPU: the app's model handlers (compare, measure, the two ERF views, classify, detect) as ``@spaces.GPU``
functions.

:func:`handler_wrapper` gives the wrapper that ``asmlp/space/runtime.py`` hands to the app (every handler the
app registers as a :class:`~asmlp.app.registry.ModelHandler` goes through it), or None unless ``SPACES_ZERO_GPU``
is true and ``spaces`` imports (off ZeroGPU ``spaces.GPU`` is a no-op anyway). On ZeroGPU each call of a wrapped
handler

1. checks the request and downloads the chosen models' weights in the main process, outside the GPU time
   (the handler's ``prefetch``; a request without an image / a compare state, or with unknown models, is refused
   there without asking for a GPU);
2. asks for a GPU for ``duration`` seconds, estimated from what the call runs (:func:`estimate_seconds` of the
   handler's :class:`~asmlp.app.registry.Work`; ``spaces.GPU`` calls the estimator with the handler's arguments);
3. runs the handler in ZeroGPU's forked worker, where every handler resolves the device ``auto`` to the GPU
   (segmentation, measurement, the effective receptive fields' forward and backward, classification, detection);
   the axial shift takes the fused Triton kernels when they compile and agree with the reference on that GPU
   (probed once per worker), else the fast path, and the compare status says which and why; no ``torch.compile``
   anywhere on this path (ZeroGPU does not support it; the exported programs of ``python -m asmlp bench compile``
   are not used by the app);
4. returns CPU objects only (a CUDA tensor sent back through ZeroGPU's result queue hangs the call): every tensor in
   the result is moved to the CPU; the images are files, the figures and tables plotly / pandas already.

Model placement: the lazy bounded cache (:class:`asmlp.engine.ModelCache`), not ZeroGPU's recommended module-level
placement of a fixed set on ``cuda``. The app offers every zoo model (about twenty, any subset) and eight ImageNet
classifiers, and the ADE20K weights come from outside the Hub on first use (the authors' OneDrive, GitHub releases,
the OpenMMLab CDN: about 2 GB for the base preset alone): placing a fixed set at module level would download and
pack all of it at every start-up (ZeroGPU packs module-level CUDA tensors to disk at start) before the first page
is served, and hold it in the main process's memory, for models most visits never choose. With the cache the
weights of the chosen models are downloaded once (step 1; the files stay on disk), each model is loaded in the GPU
worker on first use there and kept while ZeroGPU reuses that worker (it does when the worker is idle:
``spaces/zero/wrappers.py`` of the ``spaces`` package), and a fresh worker reads it again from disk — the "less
efficient" path of the ZeroGPU docs, whose cost (reading and moving about 0.5 GB per base model) is part of the
duration estimate. The engine's locks and admission gate are renewed in the forked worker
(:class:`asmlp.engine.Engine` registers ``os.register_at_fork``); it holds no thread between requests.

Space runtime not exercised here: the tests run this path on the CPU with a stand-in ``spaces`` module.
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
from typing import Any, Callable, Optional

from ..detectors import FLOPS_SIZE
from ..errors import first_line
from .hardware import hardware_spec, zero_gpu

__all__ = ['import_spaces', 'handler_wrapper', 'wrap_handler', 'estimate_seconds', 'probe_fused_kernel',
           'shift_backend_note', 'to_cpu']

log = logging.getLogger('asmlp.space')
_probe: list = []  # per process: (backend, text) once probed


def import_spaces():
    """The ``spaces`` module, or None where it is not installed (local installs, CI)."""
    try:
        import spaces
    except ImportError:
        return None
    return spaces


@functools.lru_cache(maxsize=None)
def _detector_counts(name: str) -> tuple[float, float]:
    """(params, GMACs at 1280x800) of COCO detector ``name``: AS-MLP Table 5's (``data/coco.json``), else counted
    on the meta device (:func:`asmlp.detectors.detector_metrics`: the demo detectors)."""
    from ..detectors import detector_entry, detector_metrics
    published = detector_entry(name)['published']
    if published['params'] and published['gmacs']:
        return published['params'], published['gmacs']
    counts = detector_metrics(name)
    return counts['params'], counts['gmacs']


def _model_seconds(kind: str, name: str, size: int, passes: float, duration: dict) -> float:
    """Load + compute seconds of one model: its weights (fp32 bytes) at ``load_s_per_gb``, and ``passes`` forwards
    at ``size`` at ``gpu_gmacs_per_s``. Segmenters: GMACs counted at 512x2048 (the 4:1 aspect the app allows at
    most: an upper bound) scaled to the short side ``size``; classifiers: their published GMACs at 224
    (``data/imagenet.json``) scaled to ``size``; detectors: their GMACs at 1280x800 (:func:`_detector_counts`)
    scaled to the short side ``size`` of their test scale (800 for Table 5's: the same)."""
    if kind == 'classifier':
        from ..classifiers import classifier_entry
        published = classifier_entry(name)['published']
        params, gmacs = published['params'], published['gmacs'] * (size / 224) ** 2
    elif kind == 'detector':
        params, gmacs = _detector_counts(name)
        gmacs *= (size / min(FLOPS_SIZE)) ** 2
    else:
        from ..counts_cache import cached_segmenter_metrics
        counts = cached_segmenter_metrics(name, (512, 2048))
        params, gmacs = counts['params'], counts['gmacs'] * (size / 512) ** 2
    return duration['load_s_per_gb'] * params * 4 / 1e9 + passes * gmacs / duration['gpu_gmacs_per_s']


def estimate_seconds(work) -> int:
    """The GPU duration to ask for a call that runs ``work`` (a :class:`~asmlp.app.registry.Work`):
    ``data/space.json`` ``zero-gpu.duration`` (overhead, load and compute rates, a safety factor, clamped to
    ``min_s..max_s``)."""
    duration = hardware_spec('zero-gpu')['duration']
    seconds = duration['overhead_s'] + sum(_model_seconds(work.kind, n, work.size, work.passes, duration)
                                           for n in work.models)
    seconds *= duration['safety']
    return int(min(duration['max_s'], max(duration['min_s'], math.ceil(seconds))))


def probe_fused_kernel(device) -> tuple[str, str]:
    """``('triton', what)`` when AS-MLP's fused Triton kernel compiles on ``device`` and agrees with the reference
    op there, else ``('fast', why not)``. CUDA devices (fp16), or the CPU under ``TRITON_INTERPRET=1`` (fp32)."""
    import torch

    from ..ops import axial_shift_mlp, use_backend
    from ..ops.backends import triton_status
    device = torch.device(device)
    if device.type == 'cuda':
        capability = ''.join(map(str, torch.cuda.get_device_capability(device)))
        where, dtype = f'{torch.cuda.get_device_name(device)} (sm_{capability})', torch.float16
    else:
        where, dtype = f'the {device.type.upper()} (Triton interpreter)', torch.float32
    problem = triton_status()
    if problem:
        return 'fast', f'fast path: Triton does not import here ({problem[:160]})'
    try:
        generator = torch.Generator(device).manual_seed(0)
        x, w_w, w_h = (torch.randn(shape, device=device, dtype=dtype, generator=generator)
                       for shape in ((1, 32, 12, 12), (32, 32), (32, 32)))
        with torch.inference_mode():
            with use_backend('triton'):
                fused = axial_shift_mlp(x, w_w, None, w_h, None, 5, 1)
            with use_backend('reference'):
                reference = axial_shift_mlp(x, w_w, None, w_h, None, 5, 1)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        if not torch.allclose(fused.float(), reference.float(), atol=2e-2, rtol=2e-2):
            return 'fast', f'fast path: the fused Triton kernel disagrees with the reference on {where}'
    except Exception as error:  # noqa: BLE001  (a kernel that does not compile for this GPU: the fast path runs)
        text = first_line(error, 160)
        return 'fast', (f'fast path: the fused Triton kernel does not compile on {where} '
                        f'({type(error).__name__}: {text})')
    return 'triton', f'fused Triton kernels (compiled on {where})'


def shift_backend_note() -> str:
    """Select the axial-shift backend for this GPU worker and say which and why: ``triton`` when the fused kernel
    compiles and matches the reference here (probed once per process), else ``fast``; ``fast`` without CUDA."""
    import torch

    from ..ops import use_backend
    if not torch.cuda.is_available():
        return 'Shift op: fast path (no CUDA device in this call).'
    if not _probe:
        _probe.append(probe_fused_kernel('cuda'))
    backend, text = _probe[0]
    use_backend(backend)
    return f'Shift op: {text}.'


def to_cpu(value: Any) -> Any:
    """``value`` with every torch tensor inside tuples, lists and dicts moved to the CPU."""
    import torch
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (list, tuple)):
        items = [to_cpu(v) for v in value]
        return type(value)(items) if not hasattr(value, '_fields') else type(value)(*items)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    return value


def handler_wrapper(spaces: Any = None) -> Optional[Callable[[Any], Callable]]:
    """:func:`wrap_handler` with ``spaces`` (default: the installed package) on ZeroGPU; None elsewhere, or when
    ``SPACES_ZERO_GPU`` is set but ``spaces`` does not import (said once in the log)."""
    if not zero_gpu():
        return None
    spaces = spaces or import_spaces()
    if spaces is None:
        log.warning('SPACES_ZERO_GPU is set but the spaces package does not import: the model handlers run without '
                    '@spaces.GPU')
        return None
    return functools.partial(wrap_handler, spaces=spaces)


def wrap_handler(handler, spaces: Any) -> Callable:
    """``handler.fn`` (a :class:`~asmlp.app.registry.ModelHandler`'s Gradio event function) as a ZeroGPU handler:
    see the module docstring. A generator handler (compare) stays one: ``spaces.GPU`` streams what it yields."""
    from ..ui_inputs import refusal
    fn = handler.fn
    signature = inspect.signature(fn)

    def work_of(*args, **kwargs):
        return handler.work(**signature.bind(*args, **kwargs).arguments)

    def duration(*args, **kwargs) -> int:
        try:
            work = work_of(*args, **kwargs)
        except (TypeError, ValueError, KeyError):  # a bad request: refused by the handler, briefly
            work = None
        return hardware_spec('zero-gpu')['duration']['min_s'] if work is None else estimate_seconds(work)

    def with_note(result, note):
        result = to_cpu(result)
        index = handler.status_output
        if index is not None and isinstance(result, tuple) and isinstance(result[index], str):
            result = (*result[:index], result[index] + '\n\n' + note, *result[index + 1:])
        return result

    if inspect.isgeneratorfunction(fn):  # compare sends each model's panel as it comes
        @functools.wraps(fn)
        def on_gpu(*args, **kwargs):
            note = shift_backend_note()
            for result in fn(*args, **kwargs):
                yield with_note(result, note)
    else:
        @functools.wraps(fn)
        def on_gpu(*args, **kwargs):
            return with_note(fn(*args, **kwargs), shift_backend_note())

    gpu_fn = spaces.GPU(duration=duration)(on_gpu)

    def prepare(*args, **kwargs) -> bool:
        """Check and download in the main process; False when there is nothing to run a model on (the handler
        then refuses it itself, with no GPU asked for)."""
        try:
            work = work_of(*args, **kwargs)
        except ValueError as error:
            raise refusal(str(error)) from None
        if work is None:
            return False
        progress = signature.bind(*args, **kwargs).arguments.get('progress')  # gradio passes it by position
        handler.prefetch(work, None if not callable(progress) else
                         (lambda fraction, text: progress(fraction, desc=text)))
        return True

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            yield from (gpu_fn if prepare(*args, **kwargs) else fn)(*args, **kwargs)
    else:
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            return (gpu_fn if prepare(*args, **kwargs) else fn)(*args, **kwargs)

    wrapped.zero_gpu = gpu_fn  # what ZeroGPU schedules (tests, introspection)
    wrapped.gpu_duration = duration
    return wrapped
