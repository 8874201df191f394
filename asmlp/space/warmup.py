"""What a Space does from start-up, in the background (``data/space.json`` ``warm_up``).

- ``models`` (cpu-basic: free hardware sleeps when idle and starts again on the next visit): load the preselected
  models into the engine's CPU cache, and tell the first visitor what is loading and how far it is.
- ``counts`` (ZeroGPU, where the models load in the GPU worker): count the preselected models' GMACs and
  parameters on the meta device (:func:`asmlp.counts_cache.cached_segmenter_metrics`), which the GPU duration
  estimate needs; counted on the first request instead, SETR-L and the base pair take 10-20 s of the main
  process's CPU.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

from ..errors import first_line
from .hardware import current_hardware, hardware_spec

__all__ = ['WarmUp', 'engine_of', 'prime_counts', 'start_warm_up']


def engine_of(engine: Any, wait: bool = True) -> Any:
    """The :class:`asmlp.engine.Engine` of ``engine``: itself, or what an :class:`asmlp.app.EngineStarter` (it has
    ``ready``) has created, waiting for it (``wait``) or None while it starts."""
    if not hasattr(engine, 'ready'):
        return engine
    return engine.get() if wait or engine.ready else None


class WarmUp:
    """Loads ``names`` into ``engine``'s CPU cache on a daemon thread (an Engine, or the app's EngineStarter, which
    this starts); :meth:`note` says where it stands."""

    def __init__(self, engine: Any, names):
        self.engine, self.names = engine, list(names)
        self.started = time.monotonic()
        self.finished: Optional[float] = None
        self.failed: dict[str, str] = {}
        self._thread = threading.Thread(target=self._run, name='asmlp-warm-up', daemon=True)

    def start(self) -> 'WarmUp':
        self._thread.start()
        return self

    def join(self, timeout: Optional[float] = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        import torch
        engine = engine_of(self.engine)
        for name in self.names:
            try:
                engine.get(name, torch.device('cpu'))
            except Exception as error:  # noqa: BLE001  (the first Segment loads it again and reports the fault)
                self.failed[name] = f'{type(error).__name__}: {first_line(error, 160)}'
        self.finished = time.monotonic()

    def note(self) -> str:
        """Markdown for the status panel at page load."""
        from ..zoo import model_entry
        titles = [model_entry(n)['title'] for n in self.names]
        if self.finished is None:
            engine = engine_of(self.engine, wait=False)
            ready = 0 if engine is None else sum(engine.is_cached(n, 'cpu') for n in self.names)
            return (f'**Starting up** (this Space was asleep, or has just been built): loading the preselected models '
                    f'in the background — {", ".join(titles)} — {ready} of {len(titles)} ready after '
                    f'{time.monotonic() - self.started:.0f} s. The first *Segment* waits for the rest; later ones '
                    f'start at once.')
        text = f'Models ready since start-up ({self.finished - self.started:.1f} s to load): {", ".join(titles)}.'
        if self.failed:
            text += ' Not loaded: ' + '; '.join(f'{n} ({why})' for n, why in self.failed.items()) + '.'
        return text


def prime_counts(names) -> threading.Thread:
    """Count ``names`` at 512x2048 into the counts cache on a started daemon thread (returned)."""
    def count():
        from ..counts_cache import cached_segmenter_metrics
        for name in names:
            try:
                cached_segmenter_metrics(name, (512, 2048))
            except Exception:  # noqa: BLE001  (the estimate counts again when asked, and falls back on failure)
                pass
    thread = threading.Thread(target=count, name='asmlp-count', daemon=True)
    thread.start()
    return thread


def start_warm_up(engine: Any, names) -> Optional[WarmUp]:
    """What the Space hardware asks for at start-up (``data/space.json`` ``warm_up``): a started :class:`WarmUp`
    for ``models`` (cpu-basic); the counts primed for ``counts`` (ZeroGPU; None: nothing to tell); else None."""
    hardware = current_hardware()
    what = hardware_spec(hardware).get('warm_up') if hardware else None
    if what == 'counts':
        prime_counts(list(names))
    if what != 'models':
        return None
    return WarmUp(engine, names).start()
