"""mmdet 2.11's COCO test pipeline for one image (``configs/_base_/datasets/coco_instance.py``).

``MultiScaleFlipAug(img_scale=(1333, 800), flip=False)`` with ``Resize(keep_ratio=True)``, ``Normalize``,
``Pad(size_divisor=32)``, ``ImageToTensor`` (mmdet ``mmdet/datasets/pipelines/transforms.py``,
github.com/open-mmlab/mmdetection v2.11.0; mmcv 1.3 ``image/geometric.py`` and ``image/photometric.py``):

* resize: ``mmcv.imrescale`` of the uint8 image, factor ``min(1333 / long side, 800 / short side)``, each side
  ``int(x * factor + 0.5)``, ``cv2.resize(..., INTER_LINEAR)`` on uint8 (the project's
  :func:`asmlp.preprocess.rescale_size`); ``scale_factor = (new_w / w, new_h / h, new_w / w, new_h / h)`` as float32;
* normalise: float32 image minus the mean, times 1 / std (``mmcv.imnormalize_``: ``cv2.subtract`` and
  ``cv2.multiply`` by float64 scalars of the float32 config values mean [123.675, 116.28, 103.53],
  std [58.395, 57.12, 57.375]); mmdet reads BGR and converts to RGB first, this takes RGB;
* pad: zeros at the bottom / right up to multiples of 32 (after normalising: padded pixels are 0, the mean colour).

One image at a time (batch 1): the padding is what the backbone sees (AS-MLP's ``GroupNorm(1, C)`` statistics and
Swin's windows include it), so batching images of other sizes would change the outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ...preprocess import check_rgb_image, rescale_size

__all__ = ['ImageMeta', 'COCO_MEAN', 'COCO_STD', 'COCO_SCALE', 'SIZE_DIVISOR', 'normalize', 'preprocess_image']

COCO_MEAN = (123.675, 116.28, 103.53)
COCO_STD = (58.395, 57.12, 57.375)
COCO_SCALE = (1333, 800)
SIZE_DIVISOR = 32


@dataclass(frozen=True)
class ImageMeta:
    """mmdet's ``img_metas`` of one image: (H, W) shapes and the float32 ``scale_factor`` (w, h, w, h)."""
    ori_shape: tuple[int, int]
    img_shape: tuple[int, int]
    pad_shape: tuple[int, int]
    scale_factor: np.ndarray


def normalize(image: np.ndarray, mean=COCO_MEAN, std=COCO_STD) -> np.ndarray:
    """float32 HxWx3 ``(image - mean) * (1 / std)`` computed by OpenCV as ``mmcv.imnormalize_`` does."""
    img = image.astype(np.float32)
    mean64 = np.float64(np.array(mean, dtype=np.float32).reshape(1, -1))
    stdinv = 1 / np.float64(np.array(std, dtype=np.float32).reshape(1, -1))
    cv2.subtract(img, mean64, img)
    cv2.multiply(img, stdinv, img)
    return img


def preprocess_image(image: np.ndarray, scale: tuple[int, int] = COCO_SCALE, size_divisor: int = SIZE_DIVISOR,
                     mean=COCO_MEAN, std=COCO_STD) -> tuple[torch.Tensor, ImageMeta]:
    """RGB uint8 HxWx3 -> (float32 1x3xHpxWp tensor, its :class:`ImageMeta`)."""
    image = check_rgb_image(image)
    height, width = image.shape[:2]
    new_h, new_w = rescale_size(height, width, scale)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    w_scale, h_scale = new_w / width, new_h / height
    img = normalize(resized, mean, std)
    pad_h, pad_w = -new_h % size_divisor, -new_w % size_divisor
    img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)))
    meta = ImageMeta(ori_shape=(height, width), img_shape=(new_h, new_w), pad_shape=img.shape[:2],
                     scale_factor=np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).unsqueeze(0), meta
