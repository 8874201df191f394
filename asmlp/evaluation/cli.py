"""``python -m asmlp evaluate | predict | synth-ade20k`` (:func:`register_cli` adds them to ``asmlp/__main__.py``).

- ``evaluate --data DIR --models NAME... [--aug none|ms-flip]``: mmseg 0.x ADE20K val mIoU beside the published
  numbers; ``torchrun --nproc_per_node=N -m asmlp evaluate ...`` shards the images over N processes.
- ``predict IMAGE_OR_DIR... --models NAME... --out DIR``: label PNG (1..150), colour mask and overlay per image and
  model, by the same inference code; ``--task instances`` with COCO detectors: the detections as JSON (the app's
  ``detect`` format, :mod:`asmlp.evaluation.detections`) and an overlay per image and model.
- ``synth-ade20k DIR --count N [--seed S] [--heldout]``: generated scenes in the ADEChallengeData2016 layout.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models.tta import AUGS
from ..errors import first_line
from .cli_common import add_run_options, error, positive, set_threads, write_json

__all__ = ['register_cli', 'run_evaluate', 'run_predict', 'run_synth']

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def _common(parser: argparse.ArgumentParser) -> None:
    from ..engine.choices import DEVICES, PRECISIONS
    parser.add_argument('--models', nargs='+', required=True, metavar='NAME',
                        help='zoo model names (predict --task instances: COCO detector names)')
    parser.add_argument('--aug', choices=AUGS, default='none',
                        help="test-time augmentation: none (single scale) or ms-flip (the papers' MS: 6 scales x "
                             "flip, softmax averaged; about 17.4x the work)")
    parser.add_argument('--device', choices=DEVICES, default='auto', help='auto: a CUDA GPU when there is one')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='fp32 (default: the reproducible numbers), bf16, fp16 (GPU), auto')
    parser.add_argument('--short-side', type=positive, metavar='S',
                        help="test short side (default: the model's own, zoo inference.short_side: 512 for ADE20K "
                             "models, 128 for the demo models); the scale is (4S, S), MS scales are that x r")
    parser.add_argument('--threads', type=positive, metavar='N',
                        help='torch intra-op threads per process (default: torch\'s, $OMP_NUM_THREADS; torchrun '
                             'sets 1 per process)')


def _fmt(value) -> str:
    return '-' if value is None else f'{value:.2f}'


def format_table(report: dict) -> str:
    rows = [f'{"model":<24} {"weights":<8} {"aug":<8} {"images":>6} {"aAcc":>6} {"mIoU":>6} {"mAcc":>6} '
            f'{"paper mIoU":>10}  source of the paper number']
    for m in report['models']:
        rows.append(f'{m["model"]:<24} {m["weights"]["kind"]:<8} {m["aug"]:<8} {m["images"]:>6} {_fmt(m["aAcc"]):>6} '
                    f'{_fmt(m["mIoU"]):>6} {_fmt(m["mAcc"]):>6} {_fmt(m["published"]["mIoU"]):>10}  '
                    f'{(m["published"]["source"] or "-")[:70]}')
    for m in report['models']:
        rows.append(f'{m["model"]}: {m["weights"]["label"]}; {m["weights"]["source"] or "no source"} '
                    f'(sha256 {(m["weights"]["sha256"] or "-")[:16]}); {m["images_per_second"] or "-"} images/s'
                    + (f'; skipped {len(m["skipped"])} bad samples: ' + ', '.join(s['name'] for s in m['skipped'])
                       if m['skipped'] else ''))
    return '\n'.join(rows)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..engine.devices import check_model_names, resolve_device, resolve_precision
    from .dataset import ADE20KFolder, BadSample, DataError
    from .distributed import start
    from .run import EvalOptions, Refused, evaluate_models
    try:
        names = check_model_names(args.models)
        device = resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
        if args.resume and args.out is None:
            raise ValueError('--resume needs --out FILE.json (the per-image sums are kept in FILE.json.parts/)')
        data = ADE20KFolder(args.data)
    except (ValueError, DataError) as e:
        return error(str(e))
    procs, device = start(device, args.dist_timeout)
    set_threads(args)
    options = EvalOptions(aug=args.aug, limit=args.limit, precision=precision, allow_untrained=args.allow_untrained,
                          skip_bad=args.skip_bad, resume=args.resume, out=args.out,
                          save_predictions=args.save_predictions, progress=not args.no_progress,
                          short_side=args.short_side)
    if procs.main:
        for note in data.notes:
            print(f'note: {note}', file=sys.stderr, flush=True)
    try:
        report = evaluate_models(names, data, options, procs, device)
    except (BadSample, Refused, ValueError, OSError) as e:  # bad data, refused weights, --resume mismatch, disk
        hint = ' (--skip-bad skips and lists such samples)' if isinstance(e, BadSample) else ''
        return error(f'{e}{hint}')
    except RuntimeError as e:  # a failing shard (an injected fault), a collective that timed out or lost a peer
        lost = ' (another process failed, died or hung: see its message above)' if procs.distributed else ''
        return error(f'{first_line(e)}{lost}')
    if procs.main:
        print(format_table(report), flush=True)
        if args.out is not None:
            write_json(args.out, report)
            print(f'wrote {args.out}')
    procs.close()
    return 0


def _images_of(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


def _predict_inputs(args: argparse.Namespace, check_names) -> tuple[list[str], object, str, list[Path]]:
    """``predict``'s checked names (``check_names``), device, precision and image files; torch threads set.
    ValueError (one line) for bad names, device, precision, or no images."""
    from ..engine.devices import resolve_device, resolve_precision
    names = check_names(args.models)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    images = _images_of(args.inputs)
    if not images:
        raise ValueError(f'no images in {", ".join(map(str, args.inputs))} ({", ".join(IMAGE_SUFFIXES)})')
    set_threads(args)
    return names, device, precision, images


def run_predict(args: argparse.Namespace) -> int:
    """Label PNG (annotation encoding 1..150), colour mask and overlay per image and model; ``--task instances``:
    :func:`run_predict_instances`."""
    if getattr(args, 'task', 'segmentation') == 'instances':
        return run_predict_instances(args)
    import torch
    from PIL import Image

    from .. import load_pretrained, viz
    from ..models.tta import segment
    from ..precision import autocast
    from ..engine.devices import check_model_names
    from .dataset import BadSample, encode_labels, read_image
    try:
        names, device, precision, images = _predict_inputs(args, check_model_names)
    except ValueError as e:
        return error(str(e))
    failed = 0
    for name in names:
        model, status = load_pretrained(name)
        model = model.to(device).eval()
        print(f'{name}: {status.message}', flush=True)
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        for path in images:
            try:
                image = read_image(path.stem, path)
            except BadSample as e:
                failed += 1
                print(f'skipped {e}', file=sys.stderr, flush=True)
                continue
            with torch.inference_mode(), autocast(device, precision):
                labels = segment(model, image, args.aug, args.short_side)
            Image.fromarray(encode_labels(labels)).save(out / f'{path.stem}.png')
            Image.fromarray(viz.colorize(labels)).save(out / f'{path.stem}_color.png')
            Image.fromarray(viz.overlay(image, labels, args.opacity)).save(out / f'{path.stem}_overlay.png')
        print(f'{name}: {len(images) - failed} images -> {out}/', flush=True)
    return 1 if failed else 0


def run_predict_instances(args: argparse.Namespace) -> int:
    """Per image and COCO detector: ``OUT/<model>/<image>.json`` (the detections at or above ``--score-threshold``
    in the ``detect`` format) and ``<image>_overlay.png`` (boxes, classes and scores, instance masks), by the app's
    code (:func:`asmlp.engine.detect.detect_one`, :mod:`asmlp.evaluation.detections`)."""
    from PIL import Image

    from ..engine.cache import ModelCache, load_detector
    from ..engine.choices import check_detector_names
    from ..engine.detect import detect_one
    from .dataset import BadSample, read_image
    from .detections import detection_record, overlay
    try:
        if not 0.0 <= args.score_threshold <= 1.0:
            raise ValueError(f'--score-threshold must be within 0..1, got {args.score_threshold}')
        names, device, precision, images = _predict_inputs(args, check_detector_names)
    except ValueError as e:
        return error(str(e))
    failed = 0
    models = ModelCache(load_detector, max_models=1)
    for name in names:
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        done = 0
        for path in images:
            try:
                image = read_image(path.stem, path)
            except BadSample as e:
                failed += 1
                print(f'skipped {e}', file=sys.stderr, flush=True)
                continue
            result = detect_one(models, image, name, device, precision)
            if not done:
                print(f'{name}: {result.status.message}', flush=True)
            record = {'image': str(path), **detection_record(result, args.score_threshold)}
            write_json(out / f'{path.stem}.json', record)
            Image.fromarray(overlay(image, result.instances, args.score_threshold)).save(
                out / f'{path.stem}_overlay.png')
            done += 1
        print(f'{name}: {done} images -> {out}/', flush=True)
    models.clear()
    return 1 if failed else 0


def run_synth(args: argparse.Namespace) -> int:
    from .synthetic_set import write_synthetic_ade20k
    try:
        names = write_synthetic_ade20k(args.dir, args.count, args.seed, args.heldout, args.size)
    except ValueError as e:
        return error(str(e))
    print(f'wrote {len(names)} scenes to {args.dir}/images/validation and annotations/validation')
    return 0


def register_cli(subparsers) -> None:
    """Add ``evaluate``, ``predict`` and ``synth-ade20k``."""
    ev = subparsers.add_parser(
        'evaluate', help='ADE20K val mIoU with mmseg 0.x\'s protocol (torchrun for several processes)',
        description='mIoU / mAcc / aAcc on an ADEChallengeData2016 folder (or one in its layout), single scale or '
                    'MS+flip, beside the published numbers. Several processes or GPUs: torchrun --nproc_per_node=N '
                    '-m asmlp evaluate ...')
    ev.add_argument('--data', type=Path, required=True, metavar='DIR',
                    help='unzipped ADEChallengeData2016 (images/validation/*.jpg, annotations/validation/*.png)')
    _common(ev)
    ev.add_argument('--limit', type=positive, metavar='N', help='only the first N images (by name)')
    ev.add_argument('--out', type=Path, metavar='FILE.json', help='the report (and FILE.json.parts/: per-image sums)')
    ev.add_argument('--save-predictions', type=Path, metavar='DIR',
                    help='write DIR/<model>/<image>.png label maps (1..150, the annotation encoding)')
    ev.add_argument('--allow-untrained', action='store_true',
                    help='evaluate models without trained segmentation weights too')
    ev.add_argument('--skip-bad', action='store_true', help='skip and list bad samples instead of stopping')
    ev.add_argument('--resume', action='store_true', help='reuse the per-image sums of an interrupted run (--out)')
    add_run_options(ev)
    ev.set_defaults(func=run_evaluate)

    pr = subparsers.add_parser('predict', help='label PNG, colour mask and overlay per image and model',
                               description='Segment images with zoo models (the inference code of evaluate and '
                                           'the app): OUT/<model>/<image>.png (labels 1..150), _color.png, '
                                           '_overlay.png. --task instances: COCO detectors, OUT/<model>/<image>.json '
                                           '(boxes [x, y, w, h], scores, COCO categories, masks as COCO RLE) and '
                                           '_overlay.png.')
    pr.add_argument('inputs', nargs='+', type=Path, metavar='IMAGE_OR_DIR')
    _common(pr)
    pr.add_argument('--out', type=Path, required=True, metavar='DIR')
    pr.add_argument('--opacity', type=float, default=0.5, help='overlay opacity (0.5)')
    pr.add_argument('--task', choices=('segmentation', 'instances'), default='segmentation',
                    help='segmentation (zoo segmenters, default) or instances (COCO detectors: data/coco.json)')
    pr.add_argument('--score-threshold', type=float, default=0.3, metavar='S',
                    help='--task instances: keep detections scoring at least S (0.3)')
    pr.set_defaults(func=run_predict)

    sy = subparsers.add_parser('synth-ade20k', help='generated scenes in the ADE20K layout',
                               description='Write generated scenes (asmlp.synthetic) as images/validation/*.jpg and '
                                           'annotations/validation/*.png (ids 1..150, 0 = other).')
    sy.add_argument('dir', type=Path, metavar='DIR')
    sy.add_argument('--count', type=positive, metavar='N', help='scenes (16; --heldout: 64, the recorded set)')
    sy.add_argument('--seed', type=int, default=0, metavar='S')
    sy.add_argument('--heldout', action='store_true',
                    help="the held-out scenes behind the demo models' recorded heldout.miou")
    sy.add_argument('--size', type=positive, default=128, help='scene side in pixels (128)')
    sy.set_defaults(func=run_synth)
