"""From logits to label maps: bilinear resizes of logits and the argmax over classes, fused on the CPU.

mmseg resizes a segmenter's logits bilinearly (align_corners=False) to the image, averages the overlapping crops of
its sliding window, and takes the argmax. At 512x683 and 150 classes the full-size logits are 210 MB of float32,
written and read again; here the resize, the crop sum and the argmax run on bands of output rows that stay in the
cache. Rows are resized by the rows of the interpolation matrix that
:func:`~asmlp.models.lowres_conv.interpolation_matrix` takes from ``F.interpolate``, columns by ``F.interpolate``
itself (the band's H scale is 1: exactly the identity). The argmax of a sum of crops equals that of their average (the
count is a positive per-pixel scalar).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .lowres_conv import interpolation_matrix

__all__ = ['blended_argmax', 'resize_logits', 'resized_argmax', 'widened']

Box = tuple[int, int, int, int]  # y1, y2, x1, x2 on the canvas


def widened(logits: torch.Tensor) -> torch.Tensor:
    """Logits in float32 at least: under autocast, low-resolution logits are widened before they are resized."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def resize_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False) to ``size``, in float32 at least (:func:`widened`); a map already of
    that size is returned as is."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(widened(logits), size=tuple(size), mode='bilinear', align_corners=False)


def resized_argmax(logits: torch.Tensor, size: Sequence[int], band_bytes: int = 4 << 20) -> torch.Tensor:
    """``resize_logits(logits, size).argmax(1)``, (N, H, W) int64, without the full-size logits on the CPU."""
    size = tuple(int(s) for s in size)
    return blended_argmax([(logits, (0, size[0], 0, size[1]))], size, band_bytes)


def blended_argmax(pieces: Sequence[tuple[torch.Tensor, Box]], size: Sequence[int],
                   band_bytes: int = 4 << 20) -> torch.Tensor:
    """Labels (N, H, W) int64 of a canvas of ``size``: the argmax over classes of the sum of the pieces' logits
    (N, C, h, w), each resized to its box (y1, y2, x1, x2). The boxes must cover the canvas (as the crops of a
    sliding window do). ``band_bytes``: float32 logits per band of output rows (cache-sized)."""
    height, width = (int(s) for s in size)
    if not pieces:
        raise ValueError('blended_argmax needs at least one piece')
    first = pieces[0][0]
    batch, classes = first.shape[:2]
    for logits, (y1, y2, x1, x2) in pieces:
        if logits.shape[:2] != (batch, classes) or not (0 <= y1 < y2 <= height and 0 <= x1 < x2 <= width):
            raise ValueError(f'piece {tuple(logits.shape)} at {(y1, y2, x1, x2)} does not fit {batch}x{classes} '
                             f'logits on a {height}x{width} canvas')
    if first.device.type != 'cpu':  # plenty of fast memory: materialise
        total = first.new_zeros((batch, classes, height, width),
                                dtype=torch.promote_types(first.dtype, torch.float32))
        for logits, (y1, y2, x1, x2) in pieces:
            total[:, :, y1:y2, x1:x2] += resize_logits(logits, (y2 - y1, x2 - x1))
        return total.argmax(1)
    prepared = []
    for logits, (y1, y2, x1, x2) in pieces:
        logits = widened(logits)
        h, w = logits.shape[-2:]
        rows = interpolation_matrix(h, y2 - y1, False).to(logits.dtype)
        flat = logits.permute(0, 2, 3, 1).reshape(batch, h, w * classes)  # a view for channels_last logits
        prepared.append((flat, rows, w, (y1, y2, x1, x2)))
    band = max(1, band_bytes // (width * classes * 4))
    labels = torch.empty((batch, height, width), dtype=torch.int64)
    with torch.autocast('cpu', enabled=False):  # blend in float32 even inside a bf16 autocast
        for top in range(0, height, band):
            bottom = min(height, top + band)
            total = None
            for flat, rows, w, (y1, y2, x1, x2) in prepared:
                r0, r1 = max(top, y1) - y1, min(bottom, y2) - y1
                if r0 >= r1:
                    continue
                part = _resized_rows(flat, rows[r0:r1], w, classes, x2 - x1)
                if total is None and r1 - r0 == bottom - top and x2 - x1 == width:
                    total = part  # the first piece covers the band: no zeros to add to
                    continue
                if total is None:
                    total = torch.empty((batch, classes, bottom - top, width),
                                        memory_format=torch.channels_last).zero_()
                total[:, :, y1 + r0 - top:y1 + r1 - top, x1:x2] += part
            torch.argmax(total, 1, out=labels[:, top:bottom])
    return labels


def _resized_rows(flat: torch.Tensor, rows: torch.Tensor, w: int, classes: int, width: int) -> torch.Tensor:
    """Output rows ``rows`` (r x h, a block of the row interpolation matrix) of logits ``flat`` (N, h, w * C),
    resized to ``width`` columns: (N, C, r, width), channels_last."""
    used = (rows != 0).any(0).nonzero()
    i0, i1 = int(used[0]), int(used[-1]) + 1
    batch = flat.shape[0]
    along_h = torch.matmul(rows[:, i0:i1], flat[:, i0:i1]).view(batch, rows.shape[0], w, classes)
    return F.interpolate(along_h.permute(0, 3, 1, 2), size=(rows.shape[0], width), mode='bilinear',
                         align_corners=False)
