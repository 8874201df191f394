"""Views of label maps: colour masks in the ADE20K palette, overlays, legends and disagreement maps."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .ade20k import CLASSES, PALETTE


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'expected an HxW integer label map, got {labels.dtype} shape {labels.shape}')
    if labels.size and (labels.min() < 0 or labels.max() >= len(PALETTE)):
        raise ValueError(f'labels must be ADE20K class indices 0..{len(PALETTE) - 1}')
    return labels


def colorize(labels: np.ndarray) -> np.ndarray:
    """HxW class indices -> HxWx3 uint8 RGB in the ADE20K palette."""
    return PALETTE[_check_labels(labels)]


def overlay(image: np.ndarray, labels: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """Blend the colour mask of ``labels`` over an RGB uint8 ``image`` of the same size (opacity 0..1)."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f'opacity must be within [0, 1], got {opacity}')
    mask = colorize(labels)
    if image.shape != mask.shape:
        raise ValueError(f'image {image.shape} and label map {labels.shape} sizes differ')
    blended = image.astype(np.float32) * (1.0 - opacity) + mask.astype(np.float32) * opacity
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def legend(labels: np.ndarray, min_share: float = 0.0) -> list[dict]:
    """Classes present, largest area first: ``{'index', 'name', 'share' (0..1), 'color' '#rrggbb'}``."""
    labels = _check_labels(labels)
    counts = np.bincount(labels.ravel(), minlength=len(CLASSES))
    total = max(labels.size, 1)
    rows = []
    for index in np.argsort(-counts, kind='stable'):
        share = counts[index] / total
        if counts[index] == 0 or share < min_share:
            break
        r, g, b = PALETTE[index]
        rows.append(dict(index=int(index), name=CLASSES[index], share=float(share), color=f'#{r:02x}{g:02x}{b:02x}'))
    return rows


def disagreement(label_maps: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """Where the label maps do not all agree: an HxWx3 uint8 view (agreeing pixels dark grey, disagreeing ones
    coloured by how many distinct labels meet there: 2 amber, 3+ red) and the share of disagreeing pixels."""
    maps = [_check_labels(m) for m in label_maps]
    if len(maps) < 2:
        raise ValueError('disagreement needs at least two label maps')
    if len({m.shape for m in maps}) != 1:
        raise ValueError(f'label maps have different sizes: {[m.shape for m in maps]}')
    stack = np.stack(maps)
    differs = (stack != stack[:1]).any(0)
    distinct = np.ones(stack.shape[1:], dtype=np.int64)
    for i in range(1, len(maps)):
        distinct += (stack[i][None] != stack[:i]).all(0)
    view = np.full((*differs.shape, 3), 40, dtype=np.uint8)
    view[distinct == 2] = (255, 176, 0)
    view[distinct >= 3] = (220, 30, 60)
    return view, float(differs.mean())
