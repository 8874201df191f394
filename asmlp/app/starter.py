"""The app's engine, created in the background so that the page is served before torch loads."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Optional

from ..limits import Limits

if TYPE_CHECKING:  # the page is built without torch; the engine (torch, timm, the models) comes later
    from ..engine import Engine

__all__ = ['EngineStarter']


class EngineStarter:
    """The app's :class:`asmlp.engine.Engine`, created on an ``asmlp-engine-start`` thread, so that the page is
    served before torch, timm and the models' code are imported (``app.py`` calls :meth:`start` once the server is
    up; otherwise the first request does). A request that arrives first waits, its progress bar saying so.
    :meth:`close` closes the engine (its own or the one it was given)."""

    STARTING = 'Starting: loading torch, timm and the models\' code (first request after start-up)…'

    def __init__(self, engine: Optional['Engine'] = None, limits: Optional[Limits] = None):
        self.limits = engine.limits if engine is not None else (limits or Limits.from_env())
        self._engine, self._error = engine, None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
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
            self._thread = threading.Thread(target=self._create, name='asmlp-engine-start', daemon=True)
            self._thread.start()

    def _create(self) -> None:
        try:
            from .. import models  # noqa: F401  (torch, timm and the model code, imported once here)
            from ..engine import Engine
            self._engine = Engine(limits=self.limits)
        except BaseException as error:  # noqa: BLE001  (raised again to every request: a fault, logged there)
            self._error = error
        finally:
            self._ready.set()

    def get(self, progress: Optional[Callable] = None) -> 'Engine':
        """The engine, once started; ``progress(fraction, desc=...)`` hears that it is starting."""
        if not self._ready.is_set():
            self.start()
            if progress is not None:
                progress(0.0, desc=self.STARTING)
            self._ready.wait()
        if self._error is not None:
            raise RuntimeError(f'the app could not start its engine: {self._error}') from self._error
        return self._engine

    def close(self, timeout: Optional[float] = 60.0) -> None:
        """Wait for a start under way, then close the engine."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._engine is not None:
            self._engine.close(timeout)
