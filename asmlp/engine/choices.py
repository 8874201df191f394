"""The choices the engine accepts, as data (no torch): devices, precisions, model-name checks and the inference
size to propose.

The app's page is built from these and the zoo table alone, so that ``python app.py`` serves it before torch is
imported (:class:`asmlp.app.EngineStarter`); :mod:`asmlp.engine.devices` resolves them.
"""
from __future__ import annotations

import re
from typing import Callable

from ..zoo import model_entry

__all__ = ['DEVICES', 'PRECISIONS', 'NAME_RE', 'default_short_side', 'check_names', 'check_detector_names',
           'is_detector']

DEVICES = ('auto', 'cpu', 'gpu')
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
NAME_RE = re.compile(r'[a-z0-9][a-z0-9_]{0,99}')  # every zoo / classifier name; nothing that can walk a path


def default_short_side(names) -> int:
    """The inference size to propose for ``names``: the largest of their test resizes' short sides (zoo
    ``inference.short_side``; 512 for the ADE20K models, 128 for the demo models trained at that size)."""
    return max((model_entry(n)['inference'].get('short_side', 512) for n in names), default=512)


def check_names(names, lookup: Callable[[str], object], kind: str, plural: str) -> list[str]:
    """Names from the UI or an API client, deduplicated in order and validated: a list (or one name) of at least
    one ``kind`` name of :data:`NAME_RE`'s form, each known to ``lookup`` (which raises ValueError naming the known
    ones); anything else raises ValueError saying what is wrong (``plural``: e.g. 'zoo names')."""
    if isinstance(names, str):
        names = [names]
    try:
        names = list(dict.fromkeys(names or []))
    except TypeError:
        raise ValueError(f'models must be a list of {plural}, got {type(names).__name__}') from None
    if not names:
        raise ValueError(f'choose at least one {kind}')
    for name in names:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ValueError(f'unknown {kind} {name!r}: {kind} names are {plural} (lowercase letters, digits, _)')
        lookup(name)
    return names


def check_detector_names(names) -> list[str]:
    """COCO detector names (``data/coco.json``, the demo detectors included) from the UI or an API client,
    validated as :func:`check_names` does."""
    from ..detectors import detector_entry
    return check_names(names, detector_entry, 'detector', 'COCO detector names')


def is_detector(name: str) -> bool:
    """Whether ``name`` is a COCO detector of the zoo (``data/coco.json``)."""
    from ..detectors import list_detectors
    return name in list_detectors(include_demo=True)
