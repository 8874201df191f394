"""The Gradio app as plain parts:

- ``layout.py``: the page (the components of each tab, placed); ``texts.py``: what the tabs explain;
- ``handlers.py``: the handlers as plain functions over the engine (callable and testable without Gradio), and
  what each model handler's call will run; ``views.py``: what they show (Markdown, tables, result files);
  ``files.py``: result images written once, never rewritten under a reader;
- ``wiring.py``: :func:`build_app`, the Gradio event functions (:class:`App`) and the events;
- ``registry.py``: the one registration of the model handlers (:class:`ModelHandler`, :class:`Work`) and what a
  deployment adds (:class:`Deployment`; ``asmlp/space/`` supplies the Hugging Face Space's);
- ``starter.py``: :class:`EngineStarter`, the engine created in the background (the page is served first).

``app.py`` launches it. Names are imported on first use (``registry`` needs no Gradio).
"""
from __future__ import annotations

from ..lazy import lazy_getattr

_LAZY = {
    'build_app': '.wiring', 'App': '.wiring', 'answering': '.wiring', 'EXPECTED_ERRORS': '.wiring',
    'EngineStarter': '.starter', 'ResultFiles': '.files',
    'Deployment': '.registry', 'ModelHandler': '.registry', 'Work': '.registry', 'MODEL_HANDLERS': '.registry',
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
