"""``python -m asmlp bench models [--device cpu|cuda]``: forward latency of zoo segmenters, side by side.

For each model: the backbone alone and the whole inference forward, NCHW and channels_last, in fp32 and the
device's autocast precision (CPU: bf16, only where the CPU supports it natively; GPU: fp16, what precision "auto"
runs there), and how many pixels of that label map agree with fp32 on the same device. CPU times are wall clock,
GPU times CUDA events; the header says whether TF32 is on for fp32 on the GPU (torch's defaults unless changed).
Weights are random (seeded): latency does not depend on them, and the agreement shows the numerical drift of bf16
on the same weights. The input is a smooth synthetic scene (gradients and shapes) so label maps have structure.
"""
from __future__ import annotations

import numpy as np
import torch

from ..precision import autocast, cpu_bf16_supported
from ..preprocess import preprocess
from ..engine.engine import DEFAULT_MODELS
from ..zoo import build_segmenter
from .timing import check_device, device_description, time_fn

DEFAULT_SIZE = (512, 512)
FORMATS = {'NCHW': torch.contiguous_format, 'channels_last': torch.channels_last}


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An RGB uint8 scene: a vertical sky-to-ground gradient, a few coloured discs and rectangles, mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([80 + 120 * y, 120 + 60 * (1 - y), 200 - 150 * y], -1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, width / max(height, width)), rng.uniform(0.05, 0.2)
        mask = (y - cy) ** 2 + (x - cx) ** 2 < r ** 2 if rng.uniform() < 0.5 else (abs(y - cy) < r) & (abs(x - cx) < r)
        image[mask] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def device_precisions(device: torch.device) -> tuple[str, ...]:
    """fp32 and the device's low precision: fp16 on a GPU, bf16 on a CPU that has it (or ``ASMLP_CPU_BF16=1``)."""
    if device.type == 'cuda':
        return 'fp32', 'fp16'
    return ('fp32', 'bf16') if cpu_bf16_supported() else ('fp32',)


def bench_models(names, size: tuple[int, int], repeat: int, precisions: tuple[str, ...],
                 device: torch.device | str = 'cpu') -> list[dict]:
    """Time every model in every configuration; configurations outermost, so the models of one configuration
    are measured back to back under the same machine conditions."""
    device = torch.device(device)
    models = {}
    for name in names:
        torch.manual_seed(0)
        models[name] = build_segmenter(name).eval().to(device)
    image = preprocess(synthetic_image(*size), scale=None).to(device)
    rows, fp32_labels = [], {}
    for fmt_name, fmt in FORMATS.items():
        x = image.contiguous(memory_format=fmt)
        for precision in precisions:
            for name, model in models.items():
                model.to(memory_format=fmt)
                with torch.inference_mode(), autocast(device, precision):
                    backbone = time_fn(lambda: model.backbone(x), warmup=1, repeat=repeat, max_seconds=60,
                                       device=device)
                    e2e = time_fn(lambda: model(x), warmup=1, repeat=repeat, max_seconds=120, device=device)
                    labels = model(x).argmax(1)
                reference = fp32_labels.setdefault((name, fmt_name), labels)
                rows.append(dict(model=name, format=fmt_name, precision=precision, backbone=backbone, e2e=e2e,
                                 agreement=(labels == reference).float().mean().item()))
                print(f'# {name} {fmt_name} {precision}: end to end {e2e}', flush=True)
    return sorted(rows, key=lambda r: list(models).index(r['model']))


def format_rows(rows: list[dict]) -> str:
    lines = ['| model | format | precision | backbone (ms) | end to end (ms) | label agreement with fp32 |',
             '|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["model"]} | {r["format"]} | {r["precision"]} | {r["backbone"].median_ms:.0f} '
                     f'({r["backbone"].p10_ms:.0f}–{r["backbone"].p90_ms:.0f}) | {r["e2e"].median_ms:.0f} '
                     f'({r["e2e"].p10_ms:.0f}–{r["e2e"].p90_ms:.0f}) | {100 * r["agreement"]:.2f}% |')
    lines += ['', '| model | fastest configuration | end to end (ms) | label agreement with fp32 |',
              '|---|---|---|---|']
    for name in dict.fromkeys(r['model'] for r in rows):
        best = min((r for r in rows if r['model'] == name), key=lambda r: r['e2e'].median_ms)
        lines.append(f'| {name} | {best["format"]}, {best["precision"]} | {best["e2e"].median_ms:.0f} '
                     f'| {100 * best["agreement"]:.2f}% |')
    return '\n'.join(lines)


def main(models=DEFAULT_MODELS, size=DEFAULT_SIZE, repeat: int = 5, threads: int = 2, device: str = 'cpu') -> None:
    device = check_device(device)
    torch.set_num_threads(threads)
    precisions = device_precisions(device)
    height, width = size
    low = ('fp16 = torch.autocast' if device.type == 'cuda' else 'bf16 = torch.autocast' if 'bf16' in precisions
           else 'bf16 skipped: no native bf16 on this CPU, or ASMLP_CPU_BF16=0')
    print(f'# bench models on {device} at {height}x{width}, batch 1, median (p10–p90) of {repeat} warm runs; {low}')
    print(f'# {device_description(device)}')
    print(format_rows(bench_models(models, (height, width), repeat, precisions, device)))
