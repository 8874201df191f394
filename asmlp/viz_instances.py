"""Instances drawn on an image: each instance's mask blended in its own colour, its box outlined in that colour,
and a label (class name and score) on the box's top edge — the look of mmdet's ``show_result``
(https://github.com/open-mmlab/mmdetection/blob/v2.11.0/mmdet/core/visualization/image.py), drawn with OpenCV.
Numpy in, numpy out; no torch."""
from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np

__all__ = ['instance_colors', 'draw_instances']

GOLDEN = 0.618033988749895  # hue step: neighbouring instances get far-apart hues


def instance_colors(count: int) -> np.ndarray:
    """``count`` distinct RGB uint8 colours (hues spread by the golden ratio, saturated and bright), the same for the
    same index on every call."""
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb((i * GOLDEN) % 1.0, 0.85, 0.95)]
                     for i in range(count)], dtype=np.uint8).reshape(-1, 3)


def draw_instances(image: np.ndarray, boxes: np.ndarray, masks: np.ndarray, captions: Sequence[str],
                   opacity: float = 0.5, thickness: int = 2) -> np.ndarray:
    """``image`` (HxWx3 uint8 RGB) with instance ``i`` drawn in :func:`instance_colors` colour ``i``: its mask
    (``masks[i]``, HxW bool) blended at ``opacity``, its box (``boxes[i]``, x1 y1 x2 y2 in pixels) outlined, and
    ``captions[i]`` on a filled tag at the box's top-left corner (inside the image). Later instances are drawn over
    earlier ones: pass them lowest score first to keep the best on top, or best first to match a list."""
    import cv2
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    height, width = canvas.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    colors = instance_colors(len(boxes))
    for mask, color in zip(masks, colors):
        mask = np.asarray(mask, dtype=bool)
        canvas[mask] = (canvas[mask] * (1 - opacity) + color * opacity).round().astype(np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, min(height, width) / 900)
    for (x1, y1, x2, y2), caption, color in zip(boxes, captions, colors):
        rgb = tuple(int(c) for c in color)
        p1 = (int(np.clip(np.floor(x1), 0, width - 1)), int(np.clip(np.floor(y1), 0, height - 1)))
        p2 = (int(np.clip(np.ceil(x2), 0, width - 1)), int(np.clip(np.ceil(y2), 0, height - 1)))
        cv2.rectangle(canvas, p1, p2, rgb, thickness)
        (tw, th), base = cv2.getTextSize(caption, font, scale, 1)
        tx, ty = min(p1[0], max(0, width - tw - 2)), max(p1[1], th + base + 2)
        cv2.rectangle(canvas, (tx, ty - th - base - 2), (tx + tw + 2, ty), rgb, cv2.FILLED)
        text = (0, 0, 0) if sum(rgb) > 380 else (255, 255, 255)
        cv2.putText(canvas, caption, (tx + 1, ty - base - 1), font, scale, text, 1, cv2.LINE_AA)
    return canvas
