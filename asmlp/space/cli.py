"""Command-line entry points: ``python -m asmlp export-space DIR [--hardware cpu-basic|zero-gpu] [--push USER/SPACE]
[--private]`` and ``python -m asmlp push-space DIR --repo USER/SPACE [--private]`` (an exported folder, again).

``register_cli(subparsers)`` adds them to ``asmlp/__main__.py``'s sub-parsers; the functions return an exit status
(0 ok, 1 failure; a refused hardware request is reported and still 0: the Space is there, on its default hardware).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ['register_cli', 'run_export_space', 'run_push_space']


def _push(folder: Path, repo: str, private: bool) -> int:
    from .export import ExportError
    from .push import push_space
    try:
        pushed = push_space(folder, repo, private=private)
    except ExportError as error:
        print(f'push-space: {error}', file=sys.stderr)
        return 1
    print(f'pushed {folder} to the Space {pushed.repo}: {pushed.url or "(no commit URL)"}')
    if pushed.hardware_message:
        print(f'hardware {pushed.flavor} not granted ({pushed.hardware_message}); choose {pushed.hardware} in the '
              f'Space settings')
    else:
        print(f'hardware {pushed.flavor} requested')
    return 0


def run_export_space(args: argparse.Namespace) -> int:
    from .export import ExportError, export_space
    try:
        exported = export_space(Path(args.dir), args.hardware)
    except ExportError as error:
        print(f'export-space: {error}', file=sys.stderr)
        return 1
    meta = exported.front_matter
    print(f'wrote the {exported.hardware} Space folder {exported.folder} (Python {meta["python_version"]}, gradio '
          f'{meta["sdk_version"]}, preload_from_hub: {", ".join(meta.get("preload_from_hub", [])) or "none"})')
    if args.push:
        return _push(exported.folder, args.push, args.private)
    return 0


def run_push_space(args: argparse.Namespace) -> int:
    return _push(Path(args.dir), args.repo, args.private)


def register_cli(subparsers) -> None:
    from .hardware import hardware_kinds
    export = subparsers.add_parser('export-space', help='write a Hugging Face Space folder for cpu-basic or ZeroGPU '
                                                        '(and push it with --push)')
    export.add_argument('dir', help='the folder to write (empty, or an earlier export: replaced)')
    export.add_argument('--hardware', choices=hardware_kinds(), default='cpu-basic')
    export.add_argument('--push', metavar='USER/SPACE',
                        help='then create or update this Space and request the hardware')
    export.add_argument('--private', action='store_true', help='a private Space (with --push)')
    export.set_defaults(func=run_export_space)
    push = subparsers.add_parser('push-space', help='upload a folder written by export-space to a Space')
    push.add_argument('dir')
    push.add_argument('--repo', required=True, metavar='USER/SPACE')
    push.add_argument('--private', action='store_true')
    push.set_defaults(func=run_push_space)
