"""The one registration of the app's model handlers, and what a deployment adds to the app.

Every handler that runs a model (compare, measure, the two effective-receptive-field views, classify, detect) is
registered as a :class:`ModelHandler`: the Gradio event function plus what a call of it will run (:class:`Work`)
and how its weights are fetched beforehand. A :class:`Deployment` may wrap each of them (ZeroGPU:
``asmlp/space/zerogpu.py``); the app itself knows nothing of where it is deployed (``app.py`` hands the Space's
deployment in: :func:`asmlp.space.runtime.space_deployment`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

__all__ = ['MODEL_HANDLERS', 'Work', 'ModelHandler', 'Deployment']

MODEL_HANDLERS = ('compare', 'measure', 'erf', 'erf_imagenet', 'classify', 'detect')  # their API names

ProgressFn = Optional[Callable[[float, str], None]]


@dataclass(frozen=True)
class Work:
    """What one call of a model handler runs: ``models`` of ``kind`` (``segmenter``: zoo names, ``classifier``:
    ImageNet classifiers, ``detector``: COCO detectors) at ``size`` (the segmenters' inference short side, the
    classifiers' input side, the short side of the detectors' test scale), each
    ``passes`` forward passes (a backward counts two)."""
    handler: str
    kind: str
    models: tuple[str, ...]
    size: int
    passes: float


@dataclass(frozen=True)
class ModelHandler:
    """A model handler as registered: ``fn`` is the Gradio event function; ``work(*args, **kwargs)`` (the same
    arguments) says what a call runs, None when the call has no input to run on (``fn`` refuses it itself), and
    raises ValueError for unknown model names; ``prefetch(work, progress)`` downloads its weights without loading
    them; ``status_output``: the index of the Markdown output a wrapper may add a line to."""
    name: str
    fn: Callable[..., Any]
    work: Callable[..., Optional[Work]]
    prefetch: Callable[[Work, ProgressFn], None]
    status_output: Optional[int] = None


@dataclass(frozen=True)
class Deployment:
    """What the place the app runs on adds: ``wrap(handler) -> fn`` for every :class:`ModelHandler` (ZeroGPU:
    ``@spaces.GPU``); ``preset``: the preset to preselect (else the best one whose weights are here);
    ``warm_up(engine_starter, models) -> note or None``: work started with the app (a cold CPU Space loads the
    preselected models), ``note()`` the Markdown the status panel shows at page load."""
    wrap: Optional[Callable[[ModelHandler], Callable[..., Any]]] = None
    preset: Optional[str] = None
    warm_up: Optional[Callable[[Any, list], Optional[Callable[[], str]]]] = None
