"""The app's resource limits in one place, and what a request is told when it meets one (:class:`Busy`,
:class:`InferenceTimeout`).

Every limit can be set from the environment (read when an :class:`~asmlp.engine.Engine` or the app is built);
RELIABILITY.md explains the choices. The engine enforces them: admission (``asmlp/engine/admission.py``), the time
budget (``asmlp/engine/budget.py``), the model cache (``asmlp/engine/cache.py``).

| variable | default | what |
|---|---|---|
| ``ASMLP_MAX_WAITING`` | 8 | requests waiting behind the running one; more get :data:`BUSY_MESSAGE` at once |
| ``ASMLP_WAIT_TIMEOUT`` | 300 s | a waiting request that gets no turn within this is turned away (busy) |
| ``ASMLP_INFERENCE_TIMEOUT`` | 300 s | budget of one request's model work (loading + inference, all its models; |
| | | weight downloads run before it starts and do not count) |
| ``ASMLP_TIMEOUT_GRACE`` | 10 s | past the budget, how long the caller waits for the work to stop |
| ``ASMLP_CACHE_MODELS`` | 4 | models kept loaded (LRU) |
| ``ASMLP_CACHE_BYTES`` | 3 GiB | parameter + buffer bytes kept loaded (LRU; the newest model always stays) |
| ``ASMLP_RETRY_AFTER`` | 60 s | a model loaded without its weights (source unreachable or broken) is looked up again |
| ``ASMLP_TORCH_THREADS`` | CPUs available | intra-op threads of the model work (fixed, whatever the load) |
| ``ASMLP_QUEUE_MAX_SIZE`` | 64 | Gradio's queue (events not yet started, all events): the gate's backstop |
| ``ASMLP_MODEL_EVENT_CONCURRENCY`` | 32 | Gradio workers for the model handlers; they only wait at the gate |
| ``ASMLP_DEFAULT_CONCURRENCY`` | 2 | Gradio workers for every other event (explainer figures, overlay re-blend) |
| ``ASMLP_DECODE_CONCURRENCY`` | 2 | uploads decoded at the same time (:mod:`asmlp.image_io`) |
| ``ASMLP_MAX_WORK_PIXELS`` | 2.1 MP | larger uploads are downscaled (while decoding) before segmentation |

The gate (:class:`asmlp.engine.Gate`): one request runs the models at a time (a CPU gains nothing from two
inferences at once, and memory doubles); up to ``ASMLP_MAX_WAITING`` wait in FIFO order; every other request is
refused at once with :data:`BUSY_MESSAGE`, the message the UI and API clients see.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

__all__ = ['BUSY_MESSAGE', 'Busy', 'InferenceTimeout', 'Limits', 'queue_settings']

BUSY_MESSAGE = 'The app is busy, please retry in a moment.'


class Busy(RuntimeError):
    """The request was turned away (too many waiting, or no turn within the wait timeout); retry later."""

    def __init__(self, message: str = BUSY_MESSAGE):
        super().__init__(message)


class InferenceTimeout(RuntimeError):
    """The request's model work ran past its time budget."""


def _cpus() -> int:
    """CPUs this process may run on (the affinity mask: a container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ''))
    except ValueError:
        return default
    return value if value >= 0 else default


def _env_int(name: str, default: int) -> int:
    return int(_env_float(name, default))


@dataclass(frozen=True)
class Limits:
    max_waiting: int = 8
    wait_timeout: float = 300.0
    inference_timeout: float = 300.0
    timeout_grace: float = 10.0
    cache_models: int = 4
    cache_bytes: int = 3 * 2**30
    retry_after: float = 60.0
    torch_threads: int = field(default_factory=lambda: _cpus())
    queue_max_size: int = 64
    model_event_concurrency: int = 32
    default_concurrency: int = 2
    decode_concurrency: int = 2
    max_work_pixels: int = 2_100_000

    @classmethod
    def from_env(cls) -> 'Limits':
        d = cls()
        return cls(
            max_waiting=_env_int('ASMLP_MAX_WAITING', d.max_waiting),
            wait_timeout=_env_float('ASMLP_WAIT_TIMEOUT', d.wait_timeout),
            inference_timeout=_env_float('ASMLP_INFERENCE_TIMEOUT', d.inference_timeout),
            timeout_grace=_env_float('ASMLP_TIMEOUT_GRACE', d.timeout_grace),
            cache_models=max(1, _env_int('ASMLP_CACHE_MODELS', d.cache_models)),
            cache_bytes=max(1, _env_int('ASMLP_CACHE_BYTES', d.cache_bytes)),
            retry_after=_env_float('ASMLP_RETRY_AFTER', d.retry_after),
            torch_threads=max(1, _env_int('ASMLP_TORCH_THREADS', d.torch_threads)),
            queue_max_size=max(1, _env_int('ASMLP_QUEUE_MAX_SIZE', d.queue_max_size)),
            model_event_concurrency=max(1, _env_int('ASMLP_MODEL_EVENT_CONCURRENCY', d.model_event_concurrency)),
            default_concurrency=max(1, _env_int('ASMLP_DEFAULT_CONCURRENCY', d.default_concurrency)),
            decode_concurrency=max(1, _env_int('ASMLP_DECODE_CONCURRENCY', d.decode_concurrency)),
            max_work_pixels=max(1, _env_int('ASMLP_MAX_WORK_PIXELS', d.max_work_pixels)),
        )


def queue_settings(limits: Optional[Limits] = None) -> dict:
    """Keyword arguments of ``gr.Blocks.queue`` for the app (``app.py`` and tests launch with the same)."""
    limits = limits or Limits.from_env()
    return dict(max_size=limits.queue_max_size, default_concurrency_limit=limits.default_concurrency)
