"""``python -m asmlp bench fused``: the Triton axial-shift kernels on a CUDA GPU, against the memory ceiling.

One markdown table, median of warm runs timed with CUDA events, fp16:

* **copy ceiling**: device-to-device ``copy_`` of a 1 GiB buffer (read + write bytes / time), and of each tensor below;
* **shift**: on AS-MLP-T's stage tensors at 512x512 (channels_last, batch 1 and 8): the fast path (two shifts, a
  few strided copies each), the Triton single-direction shift (2·N·e bytes) and the Triton two-output shift
  (both directions from one read: 3·N·e bytes), as achieved bandwidth and as a fraction of the same tensor's copy;
* **token mixing**: the ``AxialShift`` module (eval, inference mode) with backend ``fast`` (fast shifts + cuDNN
  1x1 convs + GELU, the eager path) vs ``triton`` (shift, both convs, GELU and sum in one fused kernel);
* **end to end**: UperNet-AS-MLP-T (``fast`` and ``triton``) vs UperNet-Swin-T at 512x512, batch 1 and 8
  (``asmlp.create_segmenter``, random weights, ``.half()``, channels_last input).

Without a CUDA GPU (or without Triton) it says so and returns. Imports neither gradio nor plotly.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from ..ops import use_backend
from .timing import time_fn

STAGES = ((96, 128), (192, 64), (384, 32), (768, 16))  # AS-MLP-T (channels, side) at 512x512
E2E_MODELS = ('upernet_asmlp_tiny', 'upernet_swin_tiny')
Timer = Callable[[Callable[[], object]], float]


def cuda_timer(warmup: int = 10, repeat: int = 50) -> Timer:
    """Median milliseconds of ``fn()`` over ``repeat`` warm runs, each bracketed by CUDA events."""
    def measure(fn):
        return time_fn(fn, warmup=warmup, repeat=repeat, device='cuda').median_ms
    return measure


def wall_timer(warmup: int = 1, repeat: int = 1) -> Timer:
    """Wall-clock stand-in for :func:`cuda_timer` (CPU smoke runs; not a measurement)."""
    def measure(fn):
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)
    return measure


def _row(section, case, ms, gbps=None, ratio=None, note=''):
    return dict(section=section, case=case, ms=ms, gbps=gbps, ratio=ratio, note=note)


def _gbps(nbytes: int, ms: float) -> float:
    return nbytes / ms / 1e6


def bench_copy(device, timer: Timer, nbytes: int = 1 << 30) -> dict:
    src = torch.empty(nbytes // 2, dtype=torch.float16, device=device).normal_()
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src))
    return _row('copy ceiling', f'{nbytes / 2 ** 30:g} GiB buffer', ms, _gbps(2 * nbytes, ms), note='read + write')


def bench_shift(device, timer: Timer, shapes, dtype=torch.float16) -> list[dict]:
    from ..ops import axial_shift, axial_shift_pair
    from ..ops import shift_triton
    rows = []
    for shape in shapes:
        x = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        nbytes = x.numel() * x.element_size()
        name = 'x'.join(map(str, shape)) + ' CL'
        dst = torch.empty_like(x)
        copy = timer(lambda: dst.copy_(x))
        rows.append(_row('shift', f'{name} copy', copy, _gbps(2 * nbytes, copy), 1.0, 'ceiling for this tensor'))
        with torch.inference_mode(), use_backend('fast'):
            fast = timer(lambda: (axial_shift(x, 3), axial_shift(x, 2)))
            fast_out = axial_shift(x, 3), axial_shift(x, 2)
        rows.append(_row('shift', f'{name} fast, W + H', fast, _gbps(4 * nbytes, fast), _gbps(4 * nbytes, fast)
                         / _gbps(2 * nbytes, copy), 'two shifts: 4·N·e'))
        single = timer(lambda: shift_triton.shift(x, 3, 5, 1))
        rows.append(_row('shift', f'{name} triton, W only', single, _gbps(2 * nbytes, single),
                         _gbps(2 * nbytes, single) / _gbps(2 * nbytes, copy), '2·N·e'))
        with torch.inference_mode(), use_backend('triton'):
            pair = timer(lambda: axial_shift_pair(x))
            exact = all(torch.equal(a, b) for a, b in zip(axial_shift_pair(x), fast_out))
        rows.append(_row('shift', f'{name} triton, W + H one read', pair, _gbps(3 * nbytes, pair),
                         _gbps(3 * nbytes, pair) / _gbps(2 * nbytes, copy),
                         f'3·N·e; {fast / pair:.2f}x vs fast; bit-exact {exact}'))
    return rows


def bench_token_mixing(device, timer: Timer, shapes, dtype=torch.float16) -> list[dict]:
    from ..models.asmlp import AxialShift
    rows = []
    for shape in shapes:
        torch.manual_seed(0)
        module = AxialShift(shape[1]).to(device=device, dtype=dtype).eval()
        x = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        name = 'x'.join(map(str, shape)) + ' CL'
        with torch.inference_mode():
            with use_backend('fast'):
                eager = timer(lambda: module(x))
                ref = module(x).float()
            with use_backend('triton'):
                fused = timer(lambda: module(x))
                err = ((module(x).float() - ref).abs().max() / ref.abs().max()).item()
        rows.append(_row('token mixing', f'{name} eager (fast shift + convs)', eager))
        rows.append(_row('token mixing', f'{name} fused triton', fused, ratio=eager / fused,
                         note=f'speed-up vs eager; max rel. diff {err:.1e}'))
    return rows


def bench_end_to_end(device, timer: Timer, size, batches, models=E2E_MODELS, dtype=torch.float16) -> list[dict]:
    from ..zoo import build_segmenter
    rows = []
    for batch in batches:
        x = torch.randn(batch, 3, *size, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        baseline = None
        for name in models:
            torch.manual_seed(0)
            model = build_segmenter(name).to(device=device, dtype=dtype).eval()
            backends = ('fast', 'triton') if 'asmlp' in name else ('auto',)
            for backend in backends:
                with torch.inference_mode(), use_backend(backend):
                    ms = timer(lambda: model(x))
                baseline = baseline or ms
                label = f'{name} b{batch}' + (f' ({backend})' if backend != 'auto' else '')
                rows.append(_row('end to end', label, ms, ratio=baseline / ms,
                                 note=f'{batch * 1e3 / ms:.1f} img/s; speed-up vs first row of this batch'))
    return rows


def format_rows(rows: list[dict]) -> str:
    def fmt(value, spec):
        return '' if value is None else format(value, spec)
    lines = ['| section | case | ms (median) | GB/s | ratio | note |', '|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["section"]} | {r["case"]} | {r["ms"]:.3f} | {fmt(r["gbps"], ".0f")} '
                     f'| {fmt(r["ratio"], ".2f")} | {r["note"]} |')
    return '\n'.join(lines)


def run(device, timer: Timer, batches=(1, 8), size=(512, 512), stages=STAGES, models=E2E_MODELS,
        copy_bytes: int = 1 << 30) -> list[dict]:
    """All the rows (``stages``: (channels, side) of the shift / token-mixing tensors)."""
    shapes = [(batch, channels, side, side) for batch in batches for channels, side in stages]
    rows = [bench_copy(device, timer, copy_bytes)]
    rows += bench_shift(device, timer, shapes)
    rows += bench_token_mixing(device, timer, shapes)
    rows += bench_end_to_end(device, timer, size, batches, models)
    return rows


def main(repeat: int = 50, batches=(1, 8), size=(512, 512)) -> None:
    if not torch.cuda.is_available():
        print('# bench fused: no CUDA GPU on this machine; the Triton kernels are benchmarked only on a GPU '
              '(nothing measured)')
        return
    from ..ops import triton_problem
    problem = triton_problem('cuda')
    if problem:
        print(f'# bench fused: the Triton kernels cannot run on the GPU here: {problem}; nothing measured')
        return
    import triton
    device = torch.device('cuda')
    print(f'# bench fused: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, triton '
          f'{triton.__version__}; fp16, median of {repeat} warm runs (CUDA events); AS-MLP-T stage tensors '
          f'at {size[0]}x{size[1]}, batches {", ".join(map(str, batches))}')
    rows = run(device, cuda_timer(repeat=repeat), batches=batches, size=size)
    print(format_rows(rows))
