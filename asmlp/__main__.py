"""Command line: ``python -m asmlp info | bench shift``."""
from __future__ import annotations

import argparse
import sys


def _info(args: argparse.Namespace) -> None:
    import json

    import timm
    import torch

    import asmlp  # noqa: F401  (registers the models)
    from .metrics import count_gmacs, count_params

    height, width = args.size
    rows = []
    for name in timm.list_models('asmlp_*'):
        with torch.device('meta'):
            model = timm.create_model(name).eval()
        rows.append(dict(name=name, params=count_params(model), gmacs=count_gmacs(model, (1, 3, height, width))))
    if args.json:
        print(json.dumps(rows))
        return
    print(f'{"model":<14} {"params (M)":>11} {f"GMACs @ {height}x{width}":>18}')
    for r in rows:
        print(f'{r["name"]:<14} {r["params"] / 1e6:>11.2f} {r["gmacs"]:>18.2f}')


def _bench(args: argparse.Namespace) -> None:
    if args.what == 'shift':
        from .bench.shift import main
        main(threads=args.threads, repeat=args.repeat)


def _positive_size(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'sizes must be >= 1, got {value}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m asmlp', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    info = sub.add_parser('info', help='table of the models: parameters and GMACs')
    info.add_argument('--size', nargs=2, type=_positive_size, default=(224, 224), metavar=('H', 'W'))
    info.add_argument('--json', action='store_true', help='print only a JSON list')
    info.set_defaults(func=_info)
    bench = sub.add_parser('bench', help='benchmarks (results belong in BENCHMARKS.md)')
    bench.add_argument('what', choices=['shift'])
    bench.add_argument('--threads', type=int, default=2)
    bench.add_argument('--repeat', type=int, default=300)
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
