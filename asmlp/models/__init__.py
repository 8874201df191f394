"""Model families. Importing this package registers the AS-MLP models with timm."""
from .asmlp import ASMLP, ASMLPFeatures, checkpoint_filter_fn

__all__ = ['ASMLP', 'ASMLPFeatures', 'checkpoint_filter_fn']
