"""Package attributes imported on first use (PEP 562), so that importing a package stays light (no torch, no
Gradio until a name that needs them is used)."""
from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ['lazy_getattr']


def lazy_getattr(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``table[name]`` (a module path relative to ``package``)
    on first use of ``name`` and keeps the value in the package's namespace."""
    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f'module {package!r} has no attribute {name!r}')
        module = importlib.import_module(table[name], package)
        value = getattr(module, name)
        setattr(importlib.import_module(package), name, value)
        return value
    return __getattr__
