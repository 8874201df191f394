"""Model families (one file each) and the segmenter that assembles them. Importing this package registers the
AS-MLP classifiers with timm."""
from .asmlp import ASMLP, ASMLPFeatures, checkpoint_filter_fn
from .heads import FCNHead, MLANeck, SETRMLAHead, SETRUPHead, UPerHead
from .segmenter import InferenceConfig, Segmenter

__all__ = ['ASMLP', 'ASMLPFeatures', 'checkpoint_filter_fn', 'FCNHead', 'MLANeck', 'SETRMLAHead', 'SETRUPHead',
           'UPerHead', 'InferenceConfig', 'Segmenter']
