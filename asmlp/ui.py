"""Moved to :mod:`asmlp.app` (layout, handlers, wiring); this module keeps the old import path."""
from .app.starter import EngineStarter
from .app.wiring import EXPECTED_ERRORS, answering, build_app

__all__ = ['build_app', 'EngineStarter', 'answering', 'EXPECTED_ERRORS']
