"""ZeroGPU: the app's model handlers (compare, measure, erf) as ``@spaces.GPU`` functions, in one place.

:func:`gpu_handler` returns the handler unchanged unless ``SPACES_ZERO_GPU`` is true and ``spaces`` imports (off
ZeroGPU ``spaces.GPU`` is a no-op anyway). On ZeroGPU each call of the returned handler

1. checks the request and downloads the chosen models' weights in the main process, outside the GPU time
   (:meth:`asmlp.service.Engine.prefetch`; a request without an image / a compare state, or with unknown models,
   is refused there without asking for a GPU);
2. asks for a GPU for ``duration`` seconds, estimated from the chosen models, the inference size and the work
   (:func:`estimate_seconds`; ``spaces.GPU`` calls the estimator with the handler's arguments);
3. runs the handler in ZeroGPU's forked worker: the axial shift takes the fused Triton kernels when they compile and
   agree with the reference on that GPU (probed once per worker), else the fast path, and the compare status says
   which and why; no ``torch.compile`` anywhere on this path (ZeroGPU does not support it; the exported programs
   of ``python -m asmlp bench compile`` are not used by the app);
4. returns CPU objects only (a CUDA tensor sent back through ZeroGPU's result queue hangs the call): every tensor in
   the result is moved to the CPU; the labels, figures and tables are numpy / plotly / pandas already.

Model placement: the lazy bounded cache (:class:`asmlp.service.Engine`), not ZeroGPU's recommended module-level
placement of a fixed set on ``cuda``. The app offers every zoo model (about twenty, any subset), and the ADE20K
weights come from outside the Hub on first use (the authors' OneDrive, GitHub releases, the OpenMMLab CDN: about
2 GB for the base preset alone): placing a fixed set at module level would download and pack all of it at every
start-up (ZeroGPU packs module-level CUDA tensors to disk at start) before the first page is served, and hold it in
the main process's memory, for models most visits never choose. With the cache the weights of the chosen models
are downloaded once (step 1; the files stay on disk), each model is loaded in the GPU worker on first use there
and kept while ZeroGPU reuses that worker (it does when the worker is idle: ``spaces/zero/wrappers.py``), and a
fresh worker reads it again from disk — the "less efficient" path of the ZeroGPU docs, whose cost (reading and
moving about 0.5 GB per base model) is part of the duration estimate. The engine's threads and locks are renewed in
the forked worker (:class:`asmlp.service.Engine` registers ``os.register_at_fork``).

Space runtime not exercised here: the tests run this path on the CPU with a stand-in ``spaces`` module.
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
from typing import Any, Callable, Optional

from .hardware import hardware_spec, zero_gpu

__all__ = ['import_spaces', 'gpu_handler', 'estimate_seconds', 'probe_fused_kernel', 'shift_backend_note', 'to_cpu',
           'HANDLERS']

log = logging.getLogger('asmlp.space')
HANDLERS = ('compare', 'measure', 'erf')
_probe: list = []  # per process: (backend, text) once probed


def import_spaces():
    """The ``spaces`` module, or None where it is not installed (local installs, CI)."""
    try:
        import spaces
    except ImportError:
        return None
    return spaces


def _model_seconds(name: str, short_side: int, views: float, rate: float, duration: dict) -> float:
    """Load + compute seconds of one model: its weights (fp32 bytes) at ``load_s_per_gb``, and ``views`` forwards
    at ``short_side`` from its GMACs counted at 512x2048 (the 4:1 aspect the app allows at most: an upper bound)."""
    from ..counts_cache import cached_segmenter_metrics
    counts = cached_segmenter_metrics(name, (512, 2048))
    gmacs = counts['gmacs'] * (short_side / 512) ** 2
    return duration['load_s_per_gb'] * counts['params'] * 4 / 1e9 + views * gmacs / rate


def estimate_seconds(kind: str, models, short_side, *, aug: str = 'none', runs: int = 1) -> int:
    """The GPU duration to ask for: ``data/space.json`` ``zero-gpu.duration`` (overhead, load and compute rates,
    a safety factor, clamped to ``min_s..max_s``). ``compare``: one pass per model, x the MS+flip cost factor for
    ``aug='ms-flip'``; ``measure``: warm-up + ``runs`` timed + one memory forward per model; ``erf``: forward and
    backward (about 3 forwards) on the CPU, as the handler runs it."""
    from ..models.tta import cost_factor
    from ..service import check_model_names
    duration = hardware_spec('zero-gpu')['duration']
    names = check_model_names(models)
    short = int(short_side)
    if kind == 'compare':
        views, rate = cost_factor(aug or 'none'), duration['gpu_gmacs_per_s']
    elif kind == 'measure':
        views, rate = int(runs) + 2, duration['gpu_gmacs_per_s']
    elif kind == 'erf':
        views, rate = 3, duration['cpu_gmacs_per_s']
    else:
        raise ValueError(f'unknown handler kind {kind!r}; known: {", ".join(HANDLERS)}')
    seconds = duration['overhead_s'] + sum(_model_seconds(n, short, views, rate, duration) for n in names)
    seconds *= duration['safety']
    return int(min(duration['max_s'], max(duration['min_s'], math.ceil(seconds))))


def _request(kind: str, bound: inspect.BoundArguments) -> tuple[Any, int, str, int]:
    """(models, short side, aug, runs) of a handler call, by parameter name (measure takes its models from the
    compare state)."""
    args = bound.arguments
    if kind == 'measure':
        state = args.get('state') or {}
        models = state.get('models') if isinstance(state, dict) else None
    else:
        models = args.get('models')
    return models, args.get('short_side', 512), args.get('aug') or 'none', args.get('runs', 1)


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
        text = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
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


def gpu_handler(fn: Callable, kind: str, engine: Any = None, *, status_output: Optional[int] = None,
                spaces: Any = None) -> Callable:
    """``fn`` as a ZeroGPU handler (see the module docstring); ``fn`` itself when not on ZeroGPU or without
    ``spaces``. ``kind``: ``compare`` / ``measure`` / ``erf`` (which arguments say the work). ``status_output``: the
    index of the Markdown output that gets the shift-op line (compare: 0). ``engine``: whose :meth:`prefetch`
    downloads the weights first (an Engine or the app's EngineStarter). A generator handler (compare) stays one:
    ``spaces.GPU`` streams what it yields."""
    if kind not in HANDLERS:
        raise ValueError(f'unknown handler kind {kind!r}; known: {", ".join(HANDLERS)}')
    if not zero_gpu():
        return fn
    spaces = spaces or import_spaces()
    if spaces is None:
        log.warning('SPACES_ZERO_GPU is set but the spaces package does not import: %s runs without @spaces.GPU',
                    kind)
        return fn
    signature = inspect.signature(fn)

    def duration(*args, **kwargs) -> int:
        try:
            models, short, aug, runs = _request(kind, signature.bind(*args, **kwargs))
            return estimate_seconds(kind, models, short, aug=aug, runs=runs)
        except (TypeError, ValueError, KeyError):  # a bad request: refused by the handler, briefly
            return hardware_spec('zero-gpu')['duration']['min_s']

    def with_note(result, note):
        result = to_cpu(result)
        if status_output is not None and isinstance(result, tuple) and isinstance(result[status_output], str):
            result = (*result[:status_output], result[status_output] + '\n\n' + note, *result[status_output + 1:])
        return result

    generator = inspect.isgeneratorfunction(fn)  # compare sends each model's panel as it comes
    if generator:
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

    def prepare(bound) -> bool:
        """Check and download in the main process; False when there is nothing to run a model on (the handler
        then refuses it itself, with no GPU asked for)."""
        from ..service import check_model_names
        from ..ui_inputs import refusal
        from .warmup import engine_of
        if not bound.arguments.get('state' if kind == 'measure' else 'image_path'):
            return False
        models, _, _, _ = _request(kind, bound)
        if models is not None and engine is not None:
            try:
                names = check_model_names(models)
            except ValueError as error:
                raise refusal(str(error)) from None
            progress = bound.arguments.get('progress')  # gradio passes its gr.Progress by position
            report = None if not callable(progress) else (lambda fraction, text: progress(fraction, desc=text))
            engine_of(engine).prefetch(names, 'cpu', progress=report)
        return True

    if generator:
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            yield from (gpu_fn if prepare(signature.bind(*args, **kwargs)) else fn)(*args, **kwargs)
    else:
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            return (gpu_fn if prepare(signature.bind(*args, **kwargs)) else fn)(*args, **kwargs)

    handler.zero_gpu = gpu_fn  # what ZeroGPU schedules (tests, introspection)
    handler.gpu_duration = duration
    return handler
