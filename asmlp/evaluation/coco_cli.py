"""``python -m asmlp evaluate-coco | synth-coco`` (:func:`register_cli` adds them to ``asmlp/__main__.py``).

- ``evaluate-coco --data DIR --models NAME... [--limit N] [--out FILE.json] [--save-results DIR]
  [--allow-untrained]``: box and mask AP on a COCO val2017 folder with mmdet 2.11's protocol, beside the published
  numbers; ``torchrun --nproc_per_node=N -m asmlp evaluate-coco ...`` shards the images over N processes.
- ``synth-coco DIR --count N [--seed S]``: generated scenes with instance annotations in the COCO layout.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..errors import first_line
from .cli_common import add_run_options, error, positive, set_threads, write_json

__all__ = ['register_cli', 'run_evaluate_coco', 'run_synth_coco', 'format_table']


def _fmt(value) -> str:
    return '-' if value is None else f'{value:.1f}'


def format_table(report: dict) -> str:
    """Box and mask AP per model (percent) beside the published AP."""
    names = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')
    rows = [f'{"model":<32} {"weights":<8} {"images":>6} {"type":<4} ' + ' '.join(f'{n:>5}' for n in names)
            + f' {"paper":>6}']
    for m in report['models']:
        for iou_type, paper_key, label in (('bbox', 'box_ap', 'box'), ('segm', 'mask_ap', 'mask')):
            metrics = m.get(iou_type)
            if metrics is None:
                continue
            first = iou_type == 'bbox'
            rows.append(f'{m["model"] if first else "":<32} {m["weights"]["kind"] if first else "":<8} '
                        f'{m["images"] if first else "":>6} {label:<4} '
                        + ' '.join(f'{_fmt(metrics[n]):>5}' for n in names)
                        + f' {_fmt(m["published"][paper_key]):>6}')
    for m in report['models']:
        notes = [(m[t] or {}).get('note') for t in ('bbox', 'segm')]
        rows.append(f'{m["model"]}: {m["weights"]["label"]}; {m["weights"]["source"] or "no source"} (sha256 '
                    f'{(m["weights"]["sha256"] or "-")[:16]}); {m["detections"]} detections, '
                    f'{m["images_per_second"] or "-"} images/s; paper: {m["published"]["source"] or "-"}'
                    + ''.join(f'; {note}' for note in dict.fromkeys(n for n in notes if n))
                    + ''.join(f'; wrote {path}' for path in m['results_files'].values()))
    return '\n'.join(rows)


def run_evaluate_coco(args: argparse.Namespace, provider=None) -> int:
    """The ``evaluate-coco`` command; ``provider`` (``name -> (detector, status)``) replaces the zoo's detectors."""
    from ..engine.devices import resolve_device, resolve_precision
    from .coco_dataset import CocoFolder
    from .coco_run import CocoOptions, check_detector_names, evaluate_detectors, zoo_detector
    from .dataset import BadSample
    from .distributed import start
    from .run import Refused
    try:
        names = check_detector_names(args.models) if provider is None else list(dict.fromkeys(args.models))
        device = resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
        data = CocoFolder(args.data)
    except ValueError as e:  # unknown names, device / precision, a folder or file that is not COCO
        return error(first_line(e))
    procs, device = start(device, args.dist_timeout)
    set_threads(args)
    options = CocoOptions(limit=args.limit, precision=precision, allow_untrained=args.allow_untrained,
                          progress=not args.no_progress, save_results=args.save_results)
    if procs.main:
        for note in data.notes:
            print(f'note: {note}', file=sys.stderr, flush=True)
    try:
        report: Optional[dict] = evaluate_detectors(names, data, options, procs, device, provider or zoo_detector)
    except (BadSample, Refused, ValueError, OSError) as e:  # bad data, refused weights, a wrong prediction, disk
        return error(first_line(e))
    except RuntimeError as e:  # a failing shard (an injected fault), a collective that timed out or lost a peer
        lost = ' (another process failed, died or hung: see its message above)' if procs.distributed else ''
        return error(f'{first_line(e)}{lost}')
    if report is not None:
        print(format_table(report), flush=True)
        if args.out is not None:
            write_json(args.out, report)
            print(f'wrote {args.out}')
    procs.close()
    return 0


def run_synth_coco(args: argparse.Namespace) -> int:
    from .coco_synthetic import write_synthetic_coco
    try:
        dataset = write_synthetic_coco(args.dir, args.count, args.seed, tuple(args.size))
    except ValueError as e:
        return error(str(e))
    print(f'wrote {len(dataset["images"])} scenes with {len(dataset["annotations"])} objects to {args.dir}/val2017 '
          f'and {args.dir}/annotations/instances_val2017.json')
    return 0


def register_cli(subparsers) -> None:
    """Add ``evaluate-coco`` and ``synth-coco``."""
    from ..engine.choices import DEVICES, PRECISIONS
    ev = subparsers.add_parser(
        'evaluate-coco', help='COCO val2017 box and mask AP with mmdet 2.11\'s protocol (torchrun for several '
                              'processes)',
        description='Box and mask AP (AP, AP50, AP75, APs/m/l; pycocotools COCOeval run as mmdet 2.11 runs it) of '
                    'COCO detectors on a val2017 folder, beside the published numbers. Several processes or GPUs: '
                    'torchrun --nproc_per_node=N -m asmlp evaluate-coco ...')
    ev.add_argument('--data', type=Path, required=True, metavar='DIR',
                    help='a folder with val2017/*.jpg and annotations/instances_val2017.json')
    ev.add_argument('--models', nargs='+', required=True, metavar='NAME', help='COCO detector names')
    ev.add_argument('--limit', type=positive, metavar='N', help='only the first N images (annotation file order)')
    ev.add_argument('--out', type=Path, metavar='FILE.json', help='write the report here')
    ev.add_argument('--save-results', type=Path, metavar='DIR',
                    help='write DIR/<model>.bbox.json and DIR/<model>.segm.json (COCO results format)')
    ev.add_argument('--allow-untrained', action='store_true', help='evaluate detectors without trained weights too')
    ev.add_argument('--device', choices=DEVICES, default='auto', help='auto: a CUDA GPU when there is one')
    ev.add_argument('--precision', choices=PRECISIONS, default='fp32',
                    help='fp32 (default: the reproducible numbers), bf16, fp16 (GPU), auto')
    ev.add_argument('--threads', type=positive, metavar='N', help='torch intra-op threads per process')
    add_run_options(ev)
    ev.set_defaults(func=run_evaluate_coco)

    sy = subparsers.add_parser('synth-coco', help='generated scenes with instance masks in the COCO layout',
                               description='Write generated scenes with objects of COCO\'s 80 categories (ids 1..90 '
                                           'with gaps) as val2017/*.jpg and annotations/instances_val2017.json.')
    sy.add_argument('dir', type=Path, metavar='DIR')
    sy.add_argument('--count', type=positive, default=8, metavar='N', help='scenes (8)')
    sy.add_argument('--seed', type=int, default=0, metavar='S')
    sy.add_argument('--size', nargs=2, type=positive, default=(120, 160), metavar=('H', 'W'),
                    help='scene height and width in pixels (120 160)')
    sy.set_defaults(func=run_synth_coco)
