"""What a detector returns for one image: its instances in the original image's pixels.

The fields follow mmdet 2.x's per-image result (``bbox_results``: per class (x1, y1, x2, y2, score) rows,
``segm_results``: per class binary masks of the original image size; ``mmdet/core/bbox/transforms.py``
``bbox2result`` and ``mmdet/models/roi_heads/mask_heads/fcn_mask_head.py`` ``get_seg_masks`` in
github.com/open-mmlab/mmdetection v2.11.0) flattened into one list of instances, ordered by decreasing score as
mmdet's NMS leaves them. Labels are contiguous class indices 0..num_classes-1 (COCO: 0..79 in the order of mmdet's
``CocoDataset.CLASSES``; the category ids of an annotation file are its sorted ids at those indices).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ['Instances']


@dataclass(frozen=True)
class Instances:
    """N detected instances of one image (numpy arrays; N may be 0).

    boxes: (N, 4) float32 x1, y1, x2, y2 in original image pixels (corners, not clipped to integers).
    scores: (N,) float32 class scores in (0, 1].
    labels: (N,) int64 contiguous class indices.
    masks: (N, H, W) bool, H x W the original image size.
    """
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def __post_init__(self):
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        masks = np.asarray(self.masks, dtype=bool)
        if masks.ndim != 3:
            raise ValueError(f'masks must be (N, H, W), got shape {masks.shape}')
        if not len(boxes) == len(scores) == len(labels) == len(masks):
            raise ValueError(f'instances disagree in number: {len(boxes)} boxes, {len(scores)} scores, '
                             f'{len(labels)} labels, {len(masks)} masks')
        for name, value in (('boxes', boxes), ('scores', scores), ('labels', labels), ('masks', masks)):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the image the masks cover."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @classmethod
    def empty(cls, height: int, width: int) -> 'Instances':
        """No instances, for an image of ``height`` x ``width``."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   np.zeros((0, height, width), bool))
