"""AS-MLP architecture explorer: the axial shift op, AS-MLP / Swin / SETR segmenters, the zoo and metrics.

``import asmlp`` registers the AS-MLP classifiers ``asmlp_tiny``, ``asmlp_small`` and ``asmlp_base`` with timm.
"""
from . import models, ops
from .ops import axial_shift
from .hub import WeightStatus, create_segmenter, load_pretrained
from .zoo import list_models, model_entry

__version__ = '0.1.0'
__all__ = ['WeightStatus', 'axial_shift', 'create_segmenter', 'list_models', 'load_pretrained', 'model_entry',
           'models', 'ops']
