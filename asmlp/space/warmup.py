"""A cold cpu-basic Space (free hardware sleeps when idle and starts again on the next visit): load the preselected
models in the background from start-up, and tell the first visitor what is loading and how far it is."""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

from .hardware import current_hardware, hardware_spec

__all__ = ['WarmUp', 'start_warm_up']


class WarmUp:
    """Loads ``names`` into ``engine``'s CPU cache on a daemon thread; :meth:`note` says where it stands."""

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
        for name in self.names:
            try:
                self.engine.get(name, torch.device('cpu'))
            except Exception as error:  # noqa: BLE001  (the first Segment loads it again and reports the fault)
                self.failed[name] = f'{type(error).__name__}: {(str(error).splitlines() or [""])[0][:160]}'
        self.finished = time.monotonic()

    def note(self) -> str:
        """Markdown for the status panel at page load."""
        from ..zoo import model_entry
        titles = [model_entry(n)['title'] for n in self.names]
        if self.finished is None:
            ready = sum(self.engine.is_cached(n, 'cpu') for n in self.names)
            return (f'**Starting up** (this Space was asleep, or has just been built): loading the preselected models '
                    f'in the background — {", ".join(titles)} — {ready} of {len(titles)} ready after '
                    f'{time.monotonic() - self.started:.0f} s. The first *Segment* waits for the rest; later ones '
                    f'start at once.')
        text = f'Models ready since start-up ({self.finished - self.started:.1f} s to load): {", ".join(titles)}.'
        if self.failed:
            text += ' Not loaded: ' + '; '.join(f'{n} ({why})' for n, why in self.failed.items()) + '.'
        return text


def start_warm_up(engine: Any, names) -> Optional[WarmUp]:
    """A started :class:`WarmUp` where the Space hardware asks for one (``data/space.json`` ``warm_up``: cpu-basic),
    else None."""
    hardware = current_hardware()
    if hardware is None or not hardware_spec(hardware).get('warm_up'):
        return None
    return WarmUp(engine, names).start()
