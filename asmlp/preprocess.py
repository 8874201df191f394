"""mmseg's ADE20K test-time preprocessing (configs/_base_/datasets/ade20k.py, mmseg 0.11 as used by the AS-MLP,
Swin and SETR segmentation repos): keep-ratio resize into (2048, 512), i.e. short side 512 unless the long side
would exceed 2048 (mmcv.imrescale: cv2 bilinear, sizes rounded with int(x + 0.5)), then per-channel
normalisation of RGB 0-255 values.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

ADE20K_MEAN = (123.675, 116.28, 103.53)
ADE20K_STD = (58.395, 57.12, 57.375)
ADE20K_SCALE = (2048, 512)  # (long side cap, short side), mmseg's img_scale


def rescale_size(height: int, width: int, scale: tuple[int, int] = ADE20K_SCALE) -> tuple[int, int]:
    """(new_height, new_width) of a keep-ratio resize into ``scale`` = (max long side, max short side)."""
    if height < 1 or width < 1:
        raise ValueError(f'image sizes must be >= 1, got {height}x{width}')
    long_cap, short_cap = max(scale), min(scale)
    factor = min(long_cap / max(height, width), short_cap / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def check_rgb_image(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 RGB array, or a ValueError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f'expected an HxWx3 RGB numpy array, got {type(image).__name__}')
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected an HxWx3 RGB image, got shape {image.shape}')
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f'image sizes must be >= 1, got shape {image.shape}')
    if image.dtype != np.uint8:
        raise ValueError(f'expected uint8 pixel values 0-255, got {image.dtype}')
    return image


def preprocess(image: np.ndarray, scale: tuple[int, int] | None = ADE20K_SCALE) -> torch.Tensor:
    """RGB uint8 HxWx3 -> normalised float32 1x3xhxw tensor (resized into ``scale`` unless it is None)."""
    image = check_rgb_image(image)
    if scale is not None:
        new_h, new_w = rescale_size(*image.shape[:2], scale)
        if (new_h, new_w) != image.shape[:2]:
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    mean = torch.tensor(ADE20K_MEAN).view(3, 1, 1)
    std = torch.tensor(ADE20K_STD).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)
