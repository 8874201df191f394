"""Moved to :mod:`asmlp.engine.choices` (devices, precisions, name checks, the inference size to propose); this
module keeps the old import path."""
from .engine.choices import DEVICES, NAME_RE, PRECISIONS, check_names, default_short_side

__all__ = ['DEVICES', 'PRECISIONS', 'NAME_RE', 'default_short_side', 'check_names']
