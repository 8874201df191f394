"""Command line: ``python -m asmlp info | bench shift|models|fused|app | convert | pin | publish | download | mirror |
train-demo``."""
from __future__ import annotations

import argparse
import sys


def _info(args: argparse.Namespace) -> None:
    import json

    from .metrics import segmenter_metrics
    from .zoo import list_models

    rows = [segmenter_metrics(name, tuple(args.size)) for name in list_models()]
    if args.json:
        print(json.dumps(rows))
        return
    height, width = args.size

    def fmt(value, spec):
        return '-' if value is None else format(value, spec)

    header = (f'{"model":<28} {"params M":>9} {"no aux M":>9} {f"GMACs@{height}x{width}":>15} {"mode":>6} '
              f'{"paper M":>8} {"paper GMACs":>11} {"mIoU SS":>8} {"mIoU MS":>8}')
    print(header)
    for r in rows:
        print(f'{r["name"]:<28} {r["params"] / 1e6:>9.2f} {r["params_no_aux"] / 1e6:>9.2f} {r["gmacs"]:>15.1f} '
              f'{r["inference"]:>6} {fmt(r["paper_params"] and r["paper_params"] / 1e6, ".0f"):>8} '
              f'{fmt(r["paper_gmacs"], ".0f"):>11} {fmt(r["paper_miou_ss"], ".2f"):>8} {fmt(r["paper_miou_ms"], ".2f"):>8}')
    print(f'\nGMACs = 1e9 multiply-accumulates (FLOPs / 2, the papers\' "FLOPs") of one inference forward at '
          f'{height}x{width}: backbone + decode head, auxiliary heads excluded; "slide" models count every crop '
          f'of their sliding window. Parameters include auxiliary heads unless "no aux". Sources: asmlp/data/zoo.json.')


def _bench(args: argparse.Namespace) -> None:
    if args.what == 'shift':
        from .bench.shift import main
        main(threads=args.threads, repeat=args.repeat or 300)
    elif args.what == 'fused':
        from .bench.fused import main
        main(repeat=args.repeat or 50)
    elif args.what in ('models', 'app'):
        from .zoo import model_entry
        if args.what == 'models':
            from .bench.models import DEFAULT_MODELS, DEFAULT_SIZE, main
        else:
            from .bench.app import DEFAULT_MODELS, DEFAULT_SIZE, main
        models = args.models or DEFAULT_MODELS
        for name in models:
            model_entry(name)  # unknown names fail here, with the list of known ones
        main(models, tuple(args.size or DEFAULT_SIZE), repeat=args.repeat or 5, threads=args.threads)


def _positive_size(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'sizes must be >= 1, got {value}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m asmlp', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    info = sub.add_parser('info', help='table of the zoo models: parameters, GMACs, published numbers')
    info.add_argument('--size', nargs=2, type=_positive_size, default=(512, 2048), metavar=('H', 'W'))
    info.add_argument('--json', action='store_true', help='print only a JSON list')
    info.set_defaults(func=_info)
    bench = sub.add_parser('bench', help='benchmarks (results belong in BENCHMARKS.md)')
    bench.add_argument('what', choices=['shift', 'models', 'fused', 'app'])
    bench.add_argument('--threads', type=int, default=2)
    bench.add_argument('--repeat', type=_positive_size, help='timed runs per measurement (shift 300, models 5, fused 50)')
    bench.add_argument('--size', nargs=2, type=_positive_size, metavar=('H', 'W'),
                       help='input size of bench models (default 512 512) / image size of bench app (512 683)')
    bench.add_argument('--models', nargs='+', help='zoo names for bench models / app (default: the light T/S ones)')
    bench.set_defaults(func=_bench)
    from .convert import register_cli as register_convert
    from .demo.cli import register_cli as register_demo
    from .hub import register_cli as register_hub
    register_convert(sub)
    register_hub(sub)
    register_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == '__main__':
    sys.exit(main())
