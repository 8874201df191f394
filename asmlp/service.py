"""Moved to :mod:`asmlp.engine` (the model cache, admission, the time budget, segmentation, measurement); this
module keeps the old import path of its public names."""
from __future__ import annotations

from typing import Optional

from .engine.choices import DEVICES, PRECISIONS, check_names, default_short_side
from .engine.devices import check_model_names, resolve_device, resolve_precision
from .engine.engine import DEFAULT_MODELS, Engine
from .engine.cache import Loaded
from .engine.measure import Measurement
from .engine.segment import Segmentation

__all__ = ['Engine', 'Loaded', 'Segmentation', 'Measurement', 'DEFAULT_MODELS', 'DEVICES', 'PRECISIONS',
           'check_names', 'check_model_names', 'default_short_side', 'resolve_device', 'resolve_precision',
           'weights_on_disk']


def weights_on_disk(name: str) -> Optional[str]:
    """The best weight kind found for ``name`` on disk or in the caches without loading anything (None when there
    is none): ``asmlp.hub.weights_on_disk`` where the hub has it, else :func:`asmlp.hub.available_kind`."""
    from . import hub
    find = getattr(hub, 'weights_on_disk', None) or hub.available_kind
    return find(name)
