"""``python -m asmlp bench shift [--device cpu|cuda] [--precision fp32|fp16|bf16]``: copy vs official-style vs
fast axial shift (and the Triton kernel on a GPU) on AS-MLP-T's stage tensors.

The tensors are the four stage maps of AS-MLP-T at a 512x512 input (1x96x128x128 … 1x768x16x16), batch 1, fp32
unless ``--precision`` says otherwise. "Copy" is ``x.clone()`` of the same tensor (the floor for an out-of-place op),
"official" the pad / chunk / roll / cat / narrow code of the official repos (:func:`asmlp.ops.axial_shift_reference`,
which ends in a strided view), "official, materialised" the same plus the ``.contiguous()`` copy that the following
1x1 conv makes of that view (the fast shift returns a dense tensor, so this is the like-for-like comparison),
"fast" :func:`asmlp.ops.axial_shift` with backend ``fast``, and on a CUDA device where the kernels run "triton" the
same with backend ``triton`` (one kernel). CPU times are wall clock, GPU times CUDA events.
"""
from __future__ import annotations

import torch

from ..ops import axial_shift, axial_shift_reference, triton_problem, use_backend
from .timing import check_device, device_description, time_fn

STAGE_SHAPES = [(1, 96, 128, 128), (1, 192, 64, 64), (1, 384, 32, 32), (1, 768, 16, 16)]
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def bench_shift(shapes=STAGE_SHAPES, shift_size: int = 5, repeat: int = 300, device: str = 'cpu',
                precision: str = 'fp32') -> list[dict]:
    device = torch.device(device)
    with_triton = device.type == 'cuda' and not triton_problem(device)  # interpreted CPU kernels: not a benchmark
    rows = []
    with torch.inference_mode():
        for shape in shapes:
            x = torch.randn(shape, device=device).to(DTYPES[precision])
            for dim, axis in ((3, 'W'), (2, 'H')):
                def timed(fn):
                    return time_fn(fn, repeat=repeat, device=device)
                row = dict(shape=shape, axis=axis, copy=timed(x.clone),
                           official=timed(lambda: axial_shift_reference(x, dim, shift_size)),
                           materialised=timed(lambda: axial_shift_reference(x, dim, shift_size).contiguous()))
                with use_backend('fast'):
                    row['fast'] = timed(lambda: axial_shift(x, dim, shift_size))
                if with_triton:
                    with use_backend('triton'):
                        row['triton'] = timed(lambda: axial_shift(x, dim, shift_size))
                rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    triton = bool(rows) and 'triton' in rows[0]
    lines = [
        '| tensor | dim | copy (ms) | official (ms) | official, materialised (ms) | fast (ms) '
        + ('| triton (ms) ' if triton else '')
        + '| official / fast | official materialised / fast | fast / copy |' + (' triton / copy |' if triton else ''),
        '|---|---|---|---|---|---|---|---|---|' + ('---|---|' if triton else ''),
    ]
    for r in rows:
        c, o, m, f = (r[k].median_ms for k in ('copy', 'official', 'materialised', 'fast'))
        shape = 'x'.join(map(str, r['shape']))
        t = r['triton'].median_ms if triton else None
        lines.append(f'| {shape} | {r["axis"]} | {c:.3f} | {o:.3f} | {m:.3f} | {f:.3f} '
                     + (f'| {t:.3f} ' if triton else '')
                     + f'| {o / f:.1f}x | {m / f:.1f}x | {f / c:.2f}x |' + (f' {t / c:.2f}x |' if triton else ''))
    return '\n'.join(lines)


def main(threads: int = 2, repeat: int = 300, device: str = 'cpu', precision: str = 'fp32') -> None:
    device = check_device(device)
    torch.set_num_threads(threads)
    print(f'# bench shift on {device}: shift size 5, {precision}, batch 1, median of warm runs '
          f'({"CUDA events" if device.type == "cuda" else "wall clock"})\n# {device_description(device)}')
    print(format_rows(bench_shift(repeat=repeat, device=device, precision=precision)))
