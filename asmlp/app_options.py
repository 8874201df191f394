"""The choices the app offers, as data (no torch): devices, precisions and the inference size to propose.

The page is built from these and the zoo table alone, so that ``python app.py`` serves it before torch is imported
(:class:`asmlp.ui.EngineStarter`); :mod:`asmlp.service` validates and resolves them.
"""
from __future__ import annotations

from .zoo import model_entry

DEVICES = ('auto', 'cpu', 'gpu')
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')


def default_short_side(names) -> int:
    """The inference size to propose for ``names``: the largest of their test resizes' short sides (zoo
    ``inference.short_side``; 512 for the ADE20K models, 128 for the demo models trained at that size)."""
    return max((model_entry(n)['inference'].get('short_side', 512) for n in names), default=512)
