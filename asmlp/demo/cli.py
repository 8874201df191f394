"""``python -m asmlp train-demo [--detectors] [--model NAME ...] [--steps N] [--max-minutes M] [--seed S] [--out DIR]``.

Trains each demo model (default: the three segmenters; with ``--detectors`` the two demo detectors) from its seeded
random init on generated scenes, evaluates it on held-out scenes and writes ``DIR/<name>/`` (``model.safetensors``,
``config.json``, ``README.md``; DIR defaults to ``weights/demo``, where :func:`asmlp.hub.load_pretrained` finds the
segmenters as kind ``demo`` and :func:`asmlp.demo.detection_folder.load_demo_detector` the detectors).
``register_cli(subparsers)`` adds the sub-command to ``asmlp/__main__.py``; ``python -m asmlp.train_demo`` runs it
on its own.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .detection_recipes import DEMO_DETECTORS, DETECTION_RECIPES
from .recipes import DEMO_MODELS, EVAL_SCENES, RECIPES

__all__ = ['register_cli', 'run_train_demo', 'add_arguments', 'main']

_DESCRIPTION = ('Train the demo segmenters (nano AS-MLP, Swin, SETR) or, with --detectors, the demo detectors '
                '(Mask R-CNN nano on AS-MLP and Swin, on synth-coco scenes) on generated scenes and write their '
                'weights folders (default weights/demo/<name>/, kind "demo"). Seeded: the same command gives the '
                'same weights (same torch version and thread count).')


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f'must be > 0, got {text}')
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('--detectors', action='store_true',
                        help=f'train the demo detectors (default all: {", ".join(DEMO_DETECTORS)})')
    parser.add_argument('--model', '--models', dest='model', action='extend', nargs='+',
                        choices=DEMO_MODELS + DEMO_DETECTORS, metavar='NAME',
                        help=f'demo models (repeatable; default all segmenters: {", ".join(DEMO_MODELS)}; with '
                             f'--detectors all detectors)')
    parser.add_argument('--steps', type=_positive(int), metavar='N',
                        help='training steps (default: the recipe\'s, ' +
                             ', '.join(f'{n} {r.steps}' for n, r in {**RECIPES, **DETECTION_RECIPES}.items()) + ')')
    parser.add_argument('--max-minutes', type=_positive(float), metavar='M',
                        help='stop a model\'s training after M minutes (a cap: the weights are then not the '
                             'reproducible ones)')
    parser.add_argument('--seed', type=int, default=0, metavar='S', help='seed of the init and the scenes (0)')
    parser.add_argument('--out', type=Path, metavar='DIR', help='parent folder of the <name>/ folders (weights/demo)')
    parser.add_argument('--threads', type=_positive(int), default=2, help='torch threads (2)')
    parser.add_argument('--eval-scenes', type=_positive(int), default=EVAL_SCENES, metavar='K',
                        help=f'segmenters: held-out scenes for the recorded IoU ({EVAL_SCENES}); the detectors\' '
                             f'held-out sets are fixed (asmlp.demo.detection_recipes.HELDOUT_SETS)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def run_train_demo(args: argparse.Namespace) -> int:
    """Train, evaluate and write each model; prints one summary line per model. Returns 0."""
    from ..paths import weights_dir
    from .evaluate import evaluate
    from .folder import demo_config, write_folder
    from .train import train
    out = Path(args.out) if args.out else weights_dir() / 'demo'
    names = list(dict.fromkeys(args.model or (DEMO_DETECTORS if args.detectors else DEMO_MODELS)))
    if args.detectors and any(name not in DEMO_DETECTORS for name in names):
        wrong = ', '.join(name for name in names if name not in DEMO_DETECTORS)
        print(f'error: --detectors trains demo detectors ({", ".join(DEMO_DETECTORS)}), not {wrong}',
              file=sys.stderr)
        return 2
    for name in names:
        if name in DEMO_DETECTORS:
            _train_detector(name, args, out)
            continue
        result = train(name, steps=args.steps, seed=args.seed, max_minutes=args.max_minutes, threads=args.threads,
                       progress=not args.no_progress)
        report = evaluate(result.model, scenes=args.eval_scenes, size=result.recipe.size)
        folder = write_folder(result.model, demo_config(result, report), out / name)
        ious = ', '.join(f'{k} {v:.3f}' for k, v in report.iou.items() if v is not None)
        early = f' (stopped early at step {result.steps_done})' if result.stopped_early else ''
        print(f'{name}: {result.steps_done} steps in {result.seconds:.0f} s{early}; held-out mIoU {report.miou:.3f} '
              f'({ious}) -> {folder}/', flush=True)
    return 0


def _train_detector(name: str, args: argparse.Namespace, out: Path) -> None:
    """Train, evaluate (evaluate-coco on the held-out synth-coco sets) and write one demo detector."""
    import torch

    from .detection_evaluate import evaluate_heldout
    from .detection_folder import write_detector_folder
    from .detection_train import train_detector
    result = train_detector(name, steps=args.steps, seed=args.seed, max_minutes=args.max_minutes,
                            threads=args.threads, progress=not args.no_progress)
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        heldout = evaluate_heldout(result.model, name)
    finally:
        torch.set_num_threads(previous)
    folder = write_detector_folder(result, heldout, out / name)
    early = f' (stopped early at step {result.steps_done})' if result.stopped_early else ''
    aps = '; '.join(f'{k} ({v["scenes"]} scenes): box AP {v["bbox"]["AP"]}, mask AP {v["segm"]["AP"]}'
                    for k, v in heldout.items())
    print(f'{name}: {result.steps_done} steps in {result.seconds:.0f} s{early}; held-out {aps} -> {folder}/',
          flush=True)


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``train-demo`` to an argparse subparsers object (``func`` = :func:`run_train_demo`)."""
    parser = subparsers.add_parser('train-demo', help='train the demo segmenters (or --detectors) on generated scenes',
                                   description=_DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=run_train_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog='python -m asmlp.train_demo', description=_DESCRIPTION))
    return run_train_demo(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
