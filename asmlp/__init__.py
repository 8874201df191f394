"""AS-MLP architecture explorer: the axial shift op, AS-MLP / Swin / SETR segmenters, COCO detectors, the zoos and
metrics.

``import asmlp`` is light: torch, timm and the models load on first use of a name below (PEP 562). The AS-MLP
classifiers ``asmlp_tiny``, ``asmlp_small`` and ``asmlp_base`` are registered with timm whichever of ``asmlp`` and
``timm`` is imported first (:mod:`asmlp.timm_registration`).
"""
from __future__ import annotations

import importlib
import importlib.util

from .timm_registration import ensure_registered

__version__ = '0.1.0'

_LAZY = {  # public name -> the module that defines it
    'WeightStatus': '.hub', 'load_pretrained': '.hub', 'axial_shift': '.ops',
    'create_segmenter': '.hub', 'list_models': '.zoo', 'model_entry': '.zoo',
    'list_classifiers': '.classifiers', 'load_classifier': '.classifiers',
    'list_detectors': '.detectors', 'create_detector': '.detectors', 'load_detector': '.hub',
}
_SUBMODULES = ('models', 'ops')
__all__ = sorted([*_LAZY, *_SUBMODULES])


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBMODULES or (not name.startswith('_') and importlib.util.find_spec(f'{__name__}.{name}')):
        value = importlib.import_module(f'.{name}', __name__)  # asmlp.hub, asmlp.zoo, ... as before: on first use
    else:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


ensure_registered()
