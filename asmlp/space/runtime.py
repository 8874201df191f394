"""What a Hugging Face Space adds to the app (:class:`asmlp.app.Deployment`): on ZeroGPU every model handler as a
``@spaces.GPU`` call (``zerogpu.py``), the preset its hardware preselects (``hardware.py``, ``data/space.json``),
and the work a cold cpu-basic Space starts with (``warmup.py``). ``app.py`` hands it to
:func:`asmlp.app.build_app`; elsewhere each part is empty and the app runs as it is."""
from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = ['space_deployment']


def _warm_up(engine: Any, names) -> Optional[Callable[[], str]]:
    from .warmup import start_warm_up
    warm = start_warm_up(engine, names)
    return None if warm is None else warm.note


def space_deployment(spaces: Any = None):
    """The :class:`asmlp.app.Deployment` of the Space the app runs on (``spaces``: the ZeroGPU package, default
    the installed one)."""
    from ..app.registry import Deployment
    from .hardware import space_preset
    from .zerogpu import handler_wrapper
    return Deployment(wrap=handler_wrapper(spaces), preset=space_preset(), warm_up=_warm_up)
