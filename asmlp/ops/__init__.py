"""Operators: the axial shift (reference and fast CPU path)."""
from .shift import axial_shift, axial_shift_reference, channel_groups

__all__ = ['axial_shift', 'axial_shift_reference', 'channel_groups']
