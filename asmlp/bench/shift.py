"""``python -m asmlp bench shift``: copy vs official-style vs fast axial shift on AS-MLP-T's stage tensors.

The tensors are the four stage maps of AS-MLP-T at a 512x512 input (1x96x128x128 … 1x768x16x16), fp32, batch 1.
"Copy" is ``x.clone()`` of the same tensor (the floor for an out-of-place op), "official" the pad / chunk / roll /
cat / narrow code of the official repos (:func:`asmlp.ops.axial_shift_reference`, which ends in a strided view),
"official, materialised" the same plus the ``.contiguous()`` copy that the following 1x1 conv makes of that view
(the fast shift returns a dense tensor, so this is the like-for-like comparison), "fast" :func:`asmlp.ops.axial_shift`.
"""
from __future__ import annotations

import torch

from ..ops import axial_shift, axial_shift_reference
from .timing import machine_description, time_fn

STAGE_SHAPES = [(1, 96, 128, 128), (1, 192, 64, 64), (1, 384, 32, 32), (1, 768, 16, 16)]


def bench_shift(shapes=STAGE_SHAPES, shift_size: int = 5, repeat: int = 300) -> list[dict]:
    rows = []
    with torch.inference_mode():
        for shape in shapes:
            x = torch.randn(shape)
            for dim, axis in ((3, 'W'), (2, 'H')):
                copy = time_fn(x.clone, repeat=repeat)
                official = time_fn(lambda: axial_shift_reference(x, dim, shift_size), repeat=repeat)
                materialised = time_fn(lambda: axial_shift_reference(x, dim, shift_size).contiguous(), repeat=repeat)
                fast = time_fn(lambda: axial_shift(x, dim, shift_size), repeat=repeat)
                rows.append(dict(shape=shape, axis=axis, copy=copy, official=official, materialised=materialised,
                                 fast=fast))
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [
        '| tensor | dim | copy (ms) | official (ms) | official, materialised (ms) | fast (ms) '
        '| official / fast | official materialised / fast | fast / copy |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        c, o, m, f = (r[k].median_ms for k in ('copy', 'official', 'materialised', 'fast'))
        shape = 'x'.join(map(str, r['shape']))
        lines.append(f'| {shape} | {r["axis"]} | {c:.3f} | {o:.3f} | {m:.3f} | {f:.3f} | {o / f:.1f}x | {m / f:.1f}x '
                     f'| {f / c:.2f}x |')
    return '\n'.join(lines)


def main(threads: int = 2, repeat: int = 300) -> None:
    torch.set_num_threads(threads)
    print(f'# bench shift: shift size 5, fp32, batch 1, median of warm runs\n# {machine_description()}')
    print(format_rows(bench_shift(repeat=repeat)))
