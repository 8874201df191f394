"""``python -m asmlp erf``: RepLKNet's high-contribution area ratio of each stage's ERF, averaged over N images.

RepLKNet (``erf/analyze_erf.py``) averages the ERF maps of 50 images, normalises the mean (``log10(x + 1) / max``)
and reports, per threshold t, the share of the image of the smallest centred square holding t of it
(:func:`asmlp.explain.erf_area_ratio`). This command does that for any zoo segmenter's backbone or ImageNet
classifier (:mod:`asmlp.explain.subjects`), on square ``--size`` crops (resize the short side, centre crop,
ImageNet mean/std), and also gives the mean of the per-image ratios. Each model says whether its weights are
trained: the ERF of an untrained network shows only its wiring.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.webp', '.bmp')


def image_files(folder: Path, limit: int | None = None) -> list[Path]:
    """The images of ``folder`` by name (ValueError when there are none)."""
    if not folder.is_dir():
        raise ValueError(f'{folder}: not a folder')
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f'{folder}: no images ({", ".join(IMAGE_SUFFIXES)})')
    return files[:limit] if limit else files


def erf_inputs(files: list[Path], size: int):
    """Each image as a (1, 3, size, size) tensor (:func:`asmlp.explain.subjects.square_input`)."""
    from ..image_io import load_image
    from .subjects import square_input
    for path in files:
        image, _ = load_image(path)
        yield path.name, square_input(image, size)


def erf_ratios(names, files: list[Path], size: int, download: bool = True) -> dict:
    """Per model and stage: the area ratios of the mean ERF map (RepLKNet) and the mean of the per-image ratios."""
    import numpy as np

    from .erf import ERF_THRESHOLDS, effective_rf, erf_area_ratio, normalize_erf
    from .subjects import load_subject
    inputs = list(erf_inputs(files, size))
    models = []
    for name in names:
        subject = load_subject(name, size, download=download)
        sums, per_image = None, []
        for _, x in inputs:
            maps = effective_rf(subject.backbone, x)
            sums = maps if sums is None else [a + b for a, b in zip(sums, maps)]
            per_image.append([erf_area_ratio(normalize_erf(m)) for m in maps])
        stages = []
        for i, total in enumerate(sums):
            mean_map = erf_area_ratio(normalize_erf(total / len(inputs)))
            stages.append(dict(
                label=subject.stage_labels[i] if i < len(subject.stage_labels) else f'stage {i + 1}',
                area_ratio={str(t): mean_map[t][1] for t in ERF_THRESHOLDS},
                side_px={str(t): mean_map[t][0] for t in ERF_THRESHOLDS},
                mean_of_images={str(t): float(np.mean([r[i][t][1] for r in per_image])) for t in ERF_THRESHOLDS}))
        models.append(dict(name=name, title=subject.title, trained=subject.trained, weights=subject.status.message,
                           stages=stages))
    return dict(size=size, images=[n for n, _ in inputs], thresholds=list(ERF_THRESHOLDS), models=models)


def format_report(report: dict) -> str:
    thresholds = [str(t) for t in report['thresholds']]
    lines = [f'# ERF area ratio (RepLKNet: centred square holding t of the mean log-normalised ERF, share of the '
             f'image), {len(report["images"])} image(s) at {report["size"]}x{report["size"]}',
             '| model | stage | ' + ' | '.join(f't={t}' for t in thresholds) + ' |',
             '|---|---|' + '---|' * len(thresholds)]
    for m in report['models']:
        for s in m['stages']:
            lines.append(f'| {m["title"]} | {s["label"]} | ' + ' | '.join(f'{100 * s["area_ratio"][t]:.1f}%'
                                                                          for t in thresholds) + ' |')
    untrained = [m['title'] for m in report['models'] if not m['trained']]
    if untrained:
        lines.append(f'\nUntrained (their ERF shows the wiring only): {", ".join(untrained)}.')
    return '\n'.join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def register_cli(subparsers) -> None:
    """Add ``erf``."""
    p = subparsers.add_parser('erf', help='ERF area ratio per stage, averaged over images (RepLKNet)',
                              description=__doc__.split('\n\n')[0])
    p.add_argument('--models', nargs='+', required=True, metavar='NAME',
                   help='ImageNet classifiers (info --imagenet) and/or zoo segmenters (info)')
    p.add_argument('--images', type=Path, required=True, metavar='DIR', help='a folder of images')
    p.add_argument('--size', type=_positive, default=224, help='square input side (default 224)')
    p.add_argument('--limit', type=_positive, metavar='N', help='only the first N images (by name)')
    p.add_argument('--no-download', action='store_true', help='only weights on disk or in the caches')
    p.add_argument('--json', action='store_true', help='print one JSON object')
    p.set_defaults(func=run_erf)


def run_erf(args: argparse.Namespace) -> int:
    from ..classifiers import list_classifiers
    from ..zoo import list_models
    known = set(list_classifiers()) | set(list_models())
    unknown = [n for n in args.models if n not in known]
    if unknown:
        raise SystemExit(f'erf: unknown model(s) {", ".join(unknown)}; known: {", ".join(sorted(known))}')
    try:
        files = image_files(args.images, args.limit)
    except ValueError as error:
        raise SystemExit(f'erf: {error}') from None
    report = erf_ratios(args.models, files, args.size, download=not args.no_download)
    print(json.dumps(report) if args.json else format_report(report))
    return 0
