"""AS-MLP architecture explorer: the axial shift op, the AS-MLP backbone (timm models ``asmlp_*``) and tools.

``import asmlp`` registers ``asmlp_tiny``, ``asmlp_small`` and ``asmlp_base`` with timm.
"""
from . import models, ops
from .ops import axial_shift

__version__ = '0.1.0'
__all__ = ['axial_shift', 'models', 'ops']
