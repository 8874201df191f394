"""``python -m asmlp bench throughput``: ImageNet inference throughput (img/s) of the classifiers, side by side.

The papers' efficiency claim is throughput at 224x224 on one V100 (AS-MLP Table 1: batch 64; Swin and DeiT: their
own runs), so AS-MLP-T's 1047.7 img/s against Swin-T's 755 is a ratio (1.39) derived across two papers' runs,
never measured side by side. Here every model runs in one process under the same conditions: the timed forwards
are interleaved (one forward of each model per round), so a machine that slows down slows all of them. Weights are
random (throughput does not depend on them); the models are those of :mod:`asmlp.classifiers`. On a GPU
(``--device cuda --precision fp16 --channels-last``) AS-MLP's shift runs the Triton backend (``auto``;
``ASMLP_SHIFT_BACKEND`` chooses another), as the header says.
"""
from __future__ import annotations

import json

import torch

from ..classifiers import classifier_entry, create_classifier, list_classifiers
from ..precision import autocast
from .timing import check_device, device_description, summarize

DEFAULT_BATCH = 64  # AS-MLP Table 1
FAMILIES = ('AS-MLP', 'Swin')  # the ratio the AS-MLP paper claims: AS-MLP / Swin at equal size


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(names, batch: int, repeat: int, device: str = 'cpu', precision: str = 'fp32',
            channels_last: bool = False) -> list[dict]:
    """img/s of each model (median over ``repeat`` rounds; p10/p90 of the per-round rates), one forward of every
    model per round after one warm-up forward each."""
    import time
    dev = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, 3, 224, 224, device=dev).contiguous(memory_format=fmt)
    models = {}
    for name in names:
        torch.manual_seed(0)
        models[name] = create_classifier(name).eval().to(dev, memory_format=fmt)
    samples = {name: [] for name in names}
    with torch.inference_mode(), autocast(dev.type, precision):
        for model in models.values():
            model(x)
        _sync(dev)
        for _ in range(repeat):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                _sync(dev)
                samples[name].append((time.perf_counter() - start) * 1e3)
    rows = []
    for name in names:
        timing = summarize(samples[name])
        entry = classifier_entry(name)
        rows.append(dict(name=name, title=entry['title'], family=entry['family'], size=entry['size'], batch=batch,
                         device=dev.type, precision=precision, channels_last=channels_last,
                         img_s=batch / timing.median_ms * 1e3, img_s_p10=batch / timing.p90_ms * 1e3,
                         img_s_p90=batch / timing.p10_ms * 1e3, runs=timing.runs,
                         paper_img_s=entry['published']['throughput']))
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """AS-MLP / Swin throughput at equal size: measured here, and derived from the papers' V100 numbers."""
    by = {(r['family'], r['size']): r for r in rows}
    out = []
    for size in dict.fromkeys(r['size'] for r in rows):
        mine, theirs = by.get((FAMILIES[0], size)), by.get((FAMILIES[1], size))
        if mine and theirs:
            out.append(dict(pair=f'{mine["title"]} / {theirs["title"]}', measured=mine['img_s'] / theirs['img_s'],
                            paper=mine['paper_img_s'] / theirs['paper_img_s']))
    return out


def format_rows(rows: list[dict]) -> str:
    lines = ['| model | img/s here (p10–p90) | paper img/s (V100) |', '|---|---|---|']
    for r in rows:
        lines.append(f'| {r["title"]} | {r["img_s"]:.1f} ({r["img_s_p10"]:.1f}–{r["img_s_p90"]:.1f}) '
                     f'| {r["paper_img_s"]:g} |')
    pairs = ratios(rows)
    if pairs:
        lines += ['', '| ratio | measured here | derived from the papers (V100, two papers\' runs) |', '|---|---|---|']
        lines += [f'| {p["pair"]} | {p["measured"]:.2f} | {p["paper"]:.2f} |' for p in pairs]
    return '\n'.join(lines)


def main(models=None, batch: int = DEFAULT_BATCH, repeat: int = 5, threads: int = 2, device: str = 'cpu',
         precision: str = 'fp32', channels_last: bool = False, as_json: bool = False) -> None:
    device = str(check_device(device))
    torch.set_num_threads(threads)
    names = list(models or list_classifiers())
    for name in names:
        classifier_entry(name)  # unknown names fail before any model is built
    rows = measure(names, batch, repeat, device, precision, channels_last)
    if as_json:
        print(json.dumps(dict(machine=device_description(torch.device(device)), rows=rows, ratios=ratios(rows))))
        return
    from ..ops.backends import get_backend, resolve_backend
    backend = resolve_backend(torch.empty(0, device=device), get_backend())
    print(f'# bench throughput at 224x224, batch {batch}, {device} {precision}'
          f'{" channels_last" if channels_last else ""}, AS-MLP shift backend {backend}, median (p10–p90) of '
          f'{repeat} interleaved rounds')
    print(f'# {device_description(torch.device(device))}')
    print(format_rows(rows))
