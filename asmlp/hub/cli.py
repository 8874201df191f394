"""Command-line entry points: ``python -m asmlp pin`` and ``python -m asmlp publish``.

``register_cli(subparsers)`` adds both to the ``argparse`` sub-parsers of ``asmlp/__main__.py``; each sets
``func`` to :func:`run_pin` / :func:`run_publish`, which return a process exit status (0 ok, 1 failure).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ['register_cli', 'run_pin', 'run_publish']


def run_pin(args: argparse.Namespace) -> int:
    from .pin import PinError, list_pins, pin_zoo
    zoo = getattr(args, 'zoo', None)
    models = getattr(args, 'models', None)
    if getattr(args, 'list', False):
        print('\n'.join(list_pins(zoo, models)))
        return 0
    try:
        results = pin_zoo(zoo, models=models, dry_run=getattr(args, 'dry_run', False))
    except PinError as error:
        print(f'pin: {error}', file=sys.stderr)
        return 1
    for r in results:
        if r.error:
            print(f'{r.model:<30} {r.repo}@{r.revision} ({r.filename}): FAILED: {r.error}')
        else:
            change = 'unchanged' if not r.changed else (f'was {r.old[:12]}' if r.old else 'new')
            print(f'{r.model:<30} {r.repo}@{r.revision} ({r.filename}) -> {r.new}  ({change})')
    if not results:
        print('no Hub sources to pin')
    written = not getattr(args, 'dry_run', False) and any(r.changed for r in results)
    print(f'{"wrote" if written else "did not write"} {zoo or "asmlp/data/zoo.json"}'
          + ('' if written else (' (dry run)' if getattr(args, 'dry_run', False) else ' (nothing changed)')))
    return 1 if any(r.error for r in results) else 0


def run_publish(args: argparse.Namespace) -> int:
    from .publish import PublishError, publish_folder
    try:
        result = publish_folder(Path(args.dir), args.repo, private=getattr(args, 'private', False),
                                dry_run=getattr(args, 'dry_run', False),
                                commit_message=getattr(args, 'message', None))
    except PublishError as error:
        print(f'publish: {error}', file=sys.stderr)
        return 1
    print(f'model card written: {Path(args.dir) / "README.md"}')
    if result.url is None:
        print(f'dry run: would upload {", ".join(result.files)} to {result.repo}')
    else:
        print(f'uploaded {", ".join(result.files)} to {result.repo}: {result.url}')
        owner, repo_name = result.repo.split('/')
        print(f'use it with ASMLP_HUB_NAMESPACE={owner}' if repo_name in _models() else
              f'note: ASMLP_HUB_NAMESPACE looks for <namespace>/<zoo model name>; {repo_name!r} is not a zoo name')
    return 0


def _models() -> list[str]:
    from ..zoo import list_models
    return list_models()


def register_cli(subparsers) -> None:
    """Add ``pin`` and ``publish`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    pin = subparsers.add_parser(
        'pin', help='resolve the zoo\'s Hub refs to commit SHAs and write them into asmlp/data/zoo.json (online)',
        description='Resolve every Hub weight source\'s named ref (main, refs/pr/1, ...) to its commit SHA with '
                    'HfApi.list_repo_refs and write it into the zoo, so downloads are pinned. Review and commit the '
                    'diff. --list shows the sources and their pin state without any network access.')
    pin.add_argument('--zoo', type=Path, help='zoo.json to update (default: the package\'s asmlp/data/zoo.json)')
    pin.add_argument('--models', nargs='+', metavar='NAME', help='only these zoo models')
    pin.add_argument('--dry-run', action='store_true', help='resolve and print, write nothing')
    pin.add_argument('--list', action='store_true', help='list weight sources and pin state (offline)')
    pin.set_defaults(func=run_pin)

    publish = subparsers.add_parser(
        'publish', help='upload a converted folder (config.json + model.safetensors) to the Hub with a model card',
        description='Check DIR (as written by `python -m asmlp convert`), write its README.md model card and upload '
                    'the three files with huggingface_hub (log in first: `hf auth login`, or set HF_TOKEN). Name the '
                    'repo <namespace>/<zoo model name> to use it with ASMLP_HUB_NAMESPACE=<namespace>.')
    publish.add_argument('dir', help='folder with config.json + model.safetensors')
    publish.add_argument('--repo', required=True, help='Hub repo id, USER/REPO (create if missing)')
    publish.add_argument('--private', action='store_true', help='create the repo private')
    publish.add_argument('--message', help='commit message')
    publish.add_argument('--dry-run', action='store_true', help='check the folder and write the card, upload nothing')
    publish.set_defaults(func=run_publish)
