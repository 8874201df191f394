"""The Hugging Face Space hardware kinds this project exports for (``data/space.json``) and which one the app runs
on now.

A Space's hardware is not set by its README front matter but in its settings or through the Hub API
(``HfApi.request_space_hardware``; ZeroGPU's flavor name there is ``zero-a10g``). At run time ZeroGPU sets
``SPACES_ZERO_GPU`` (``spaces.config.Config.zero_gpu``; gradio's ``is_zero_gpu_space()`` compares it with
``"true"``) and every Space sets ``SYSTEM=spaces`` and ``SPACE_ID`` (gradio ``utils.get_space()``).
"""
from __future__ import annotations

import functools
import json
import os
from importlib import resources
from typing import Any, Optional

__all__ = ['hardware_kinds', 'hardware_spec', 'zero_gpu', 'on_space', 'current_hardware', 'space_preset']

_TRUE = ('1', 'true', 'yes', 'on')


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return json.loads(resources.files('asmlp').joinpath('data/space.json').read_text())


def hardware_kinds() -> tuple[str, ...]:
    """The hardware kinds ``export-space`` writes folders for: ``cpu-basic``, ``zero-gpu``."""
    return tuple(_table())


def hardware_spec(hardware: str) -> dict[str, Any]:
    """The ``data/space.json`` entry of ``hardware`` (ValueError naming the known ones otherwise)."""
    table = _table()
    if hardware not in table:
        raise ValueError(f'unknown Space hardware {hardware!r}; known: {", ".join(table)}')
    return table[hardware]


def zero_gpu() -> bool:
    """Running on ZeroGPU: ``SPACES_ZERO_GPU`` is true."""
    return os.environ.get('SPACES_ZERO_GPU', '').strip().lower() in _TRUE


def on_space() -> bool:
    """Running inside a Hugging Face Space (``SYSTEM=spaces``)."""
    return os.environ.get('SYSTEM', '') == 'spaces'


def current_hardware() -> Optional[str]:
    """``zero-gpu`` on ZeroGPU, ``cpu-basic`` on any other Space without a CUDA device, None elsewhere (a local
    ``python app.py``, or a Space on dedicated GPU hardware: the local defaults apply there)."""
    if zero_gpu():
        return 'zero-gpu'
    if on_space():
        import torch
        return None if torch.cuda.is_available() else 'cpu-basic'
    return None


def space_preset() -> Optional[str]:
    """The preset the app preselects on the Space hardware it runs on (``data/space.json``), None off Spaces."""
    hardware = current_hardware()
    return hardware_spec(hardware)['preset'] if hardware else None
