"""Command-line entry points: ``python -m asmlp pin``, ``publish``, ``download`` and ``mirror``.

``register_cli(subparsers)`` adds them to the ``argparse`` sub-parsers of ``asmlp/__main__.py``; each sets
``func`` to :func:`run_pin` / :func:`run_publish` / :func:`run_download` / :func:`run_mirror`, which return a
process exit status (0 ok, 1 failure). Downloads draw a tqdm bar per file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import first_line

__all__ = ['register_cli', 'run_pin', 'run_publish', 'run_download', 'run_mirror']


def run_pin(args: argparse.Namespace) -> int:
    from .pin import PinError, list_pins, pin_downloads, pin_zoo
    zoo = getattr(args, 'zoo', None)
    models = getattr(args, 'models', None)
    if getattr(args, 'list', False):
        print('\n'.join(list_pins(zoo, models)))
        return 0
    if getattr(args, 'from_downloads', False):
        try:
            pins = pin_downloads(zoo, models=models, dry_run=getattr(args, 'dry_run', False))
        except PinError as error:
            print(f'pin: {error}', file=sys.stderr)
            return 1
        for p in pins:
            state = p.error or ('unchanged' if not p.changed else 'new')
            print(f'{p.model:<30} {p.filename}: {p.new or "-"}  ({state})')
        written = not getattr(args, 'dry_run', False) and any(p.changed for p in pins)
        print(f'{"wrote" if written else "did not write"} {zoo or "asmlp/data/zoo.json"}')
        return 1 if any(p.error and 'not downloaded' not in p.error for p in pins) else 0
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


def _is_url(text: str) -> bool:
    return text.startswith(('https://', 'http://'))


def run_download(args: argparse.Namespace) -> int:
    from ..zoo import list_models
    from .download import DownloadError, download_report, download_url
    from .fetch import CorruptDownload, Unavailable
    from .progress import tqdm_callback
    targets = list(getattr(args, 'targets', None) or [])
    urls = [t for t in targets if _is_url(t)]
    with tqdm_callback() as progress:
        if urls:
            if len(targets) != 1 or not getattr(args, 'model', None):
                print('download: give one URL and the zoo model it is for: download URL --model NAME', file=sys.stderr)
                return 1
            try:
                done = download_url(urls[0], args.model, force=getattr(args, 'force', False), progress=progress)
            except (DownloadError, Unavailable, CorruptDownload, ValueError, OSError) as error:
                print(f'download: {first_line(error)}', file=sys.stderr)
                return 1
            info = done.config
            if done.written:
                print(f'wrote {done.folder / "model.safetensors"} and {done.folder / "config.json"}: {info["model"]} '
                      f'from {info["source_format"]} ({info["kind"]}), source sha256 {info["source_sha256"]}')
            else:
                print(f'{done.folder}/ already holds {info["model"]} converted from this file (sha256 '
                      f'{info["source_sha256"]}): nothing to do')
            return 0
        names = list_models() if getattr(args, 'all', False) else targets
        if not names:
            print('download: name zoo models (python -m asmlp info), --all, or URL --model NAME', file=sys.stderr)
            return 1
        try:
            results = download_report(names, every_source=getattr(args, 'every_source', False), progress=progress)
        except ValueError as error:
            print(f'download: {error}', file=sys.stderr)
            return 1
    failed = 0
    for result in results:
        status = result.status
        where = f' [{result.source.display}]' if result.source is not None else ''
        print(f'{result.model:<30} {status.kind:<17} {status.message}{where}')
        if result.missed:
            failed += 1
            for problem in result.missed:
                print(f'{"":<30}   failed: {problem}')
    if failed:
        print(f'download: {failed} of {len(results)} did not get their best weights (the files above failed)',
              file=sys.stderr)
    return 1 if failed else 0


def run_mirror(args: argparse.Namespace) -> int:
    from .download import DownloadError, mirror_models
    from .progress import tqdm_callback
    from .publish import PublishError
    try:
        with tqdm_callback() as progress:
            done = mirror_models(args.models, args.namespace, private=getattr(args, 'private', False),
                                 dry_run=getattr(args, 'dry_run', False), progress=progress)
    except (DownloadError, PublishError, ValueError) as error:
        print(f'mirror: {error}', file=sys.stderr)
        return 1
    for m in done:
        print(f'{m.model:<30} {m.status.kind:<17} {"dry run, would upload" if m.url is None else "uploaded"} '
              f'{m.folder} to {m.repo}{"" if m.url is None else ": " + m.url}')
    print(f'use them with ASMLP_HUB_NAMESPACE={args.namespace.strip().strip("/")}')
    return 0


def _models() -> list[str]:
    from ..zoo import list_models
    return list_models()


def register_cli(subparsers) -> None:
    """Add ``pin``, ``publish``, ``download`` and ``mirror`` to ``subparsers`` (from
    ``ArgumentParser.add_subparsers``)."""
    pin = subparsers.add_parser(
        'pin', help='resolve the zoo\'s Hub refs to commit SHAs and write them into asmlp/data/zoo.json (online)',
        description='Resolve every Hub weight source\'s named ref (main, refs/pr/1, ...) to its commit SHA with '
                    'HfApi.list_repo_refs and write it into the zoo, so downloads are pinned. Review and commit the '
                    'diff. --list shows the sources and their pin state without any network access.')
    pin.add_argument('--zoo', type=Path, help='zoo.json to update (default: the package\'s asmlp/data/zoo.json)')
    pin.add_argument('--models', nargs='+', metavar='NAME', help='only these zoo models')
    pin.add_argument('--dry-run', action='store_true', help='resolve and print, write nothing')
    pin.add_argument('--list', action='store_true', help='list weight sources and pin state (offline)')
    pin.add_argument('--from-downloads', action='store_true',
                     help='write the sha256 of each verified download (python -m asmlp download) into its URL / '
                          'share-link source (offline)')
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

    download = subparsers.add_parser(
        'download', help='fetch (and check, convert) zoo weights into the caches, or a URL into weights/NAME/',
        description='download NAME...: fetch what load_pretrained would use for those zoo models (Hub files, URLs, '
                    'OneDrive share links), check it (not HTML, a checkpoint, a strict load) and keep it in the '
                    'caches; exits 1 naming the files that failed when a model did not get its best weights; '
                    '--every-source: every source of each, from where it says; --all: the whole zoo. download URL '
                    '--model NAME: any URL or share link, checked against that model, written to weights/NAME/ '
                    '($ASMLP_WEIGHTS_DIR honoured; the same file again is nothing to do).')
    download.add_argument('targets', nargs='*', metavar='NAME|URL', help='zoo model names, or one URL with --model')
    download.add_argument('--all', action='store_true', help='every zoo model')
    download.add_argument('--every-source', action='store_true', help='every source of each model, not only the '
                                                                      'first that works')
    download.add_argument('--model', metavar='NAME', help='with a URL: the zoo model the file is for')
    download.add_argument('--force', action='store_true', help='with a URL: fetch it again and replace a '
                                                               'weights/NAME/ converted from another file')
    download.set_defaults(func=run_download)

    mirror = subparsers.add_parser(
        'mirror', help='download + convert + publish zoo weights to USER/<NAME> on the Hub',
        description='For each model: its best weights (as download NAME), written in the native format and '
                    'published to USER/<NAME> with a model card, exactly where the resolver looks with '
                    'ASMLP_HUB_NAMESPACE=USER (log in first: `hf auth login`, or set HF_TOKEN).')
    mirror.add_argument('models', nargs='+', metavar='NAME', help='zoo model names')
    mirror.add_argument('--namespace', required=True, metavar='USER', help='Hub user or organisation')
    mirror.add_argument('--private', action='store_true', help='create the repos private')
    mirror.add_argument('--dry-run', action='store_true', help='download, convert and write the cards; upload nothing')
    mirror.set_defaults(func=run_mirror)
