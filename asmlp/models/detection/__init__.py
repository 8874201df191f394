"""COCO instance segmentation: Mask R-CNN and Cascade Mask R-CNN with mmdet 2.11's module names and inference.

One file per part (FPN, anchors, box coder, RPN head, RoI extractor, box / mask heads, RoI heads, post-processing,
test pipeline, the two-stage assembly); :class:`Instances` is what ``TwoStageDetector.predict`` returns.
"""
from .detector import TwoStageDetector
from .instances import Instances
from .preprocess import ImageMeta, preprocess_image

__all__ = ['Instances', 'ImageMeta', 'TwoStageDetector', 'preprocess_image']
