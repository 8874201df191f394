"""What the evaluation commands (``evaluate``, ``predict``, ``evaluate-coco``, ``synth-*``) share: argument types, the
one-line error of a process (naming its rank under torchrun), torch threads, the JSON report written atomically."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..paths import atomic_write

__all__ = ['positive', 'error', 'set_threads', 'write_json', 'add_run_options']


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {text}')
    return value


def error(message: str) -> int:
    """Print ``error: message`` (``error (rank R of W)`` under torchrun) to stderr; the exit code 2."""
    rank, world = os.environ.get('RANK'), os.environ.get('WORLD_SIZE', '1')
    prefix = f'error (rank {rank} of {world})' if rank and world != '1' else 'error'
    print(f'{prefix}: {message}', file=sys.stderr, flush=True)
    return 2


def set_threads(args: argparse.Namespace) -> None:
    """``--threads N``: torch intra-op threads of this process."""
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)


def write_json(path: Path, report: dict) -> None:
    """``report`` as indented JSON at ``path`` (folders made; never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1) + '\n'))


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--dist-timeout`` and ``--no-progress`` of the evaluation loops."""
    parser.add_argument('--dist-timeout', type=float, default=1800.0, metavar='SECONDS',
                        help='torchrun: timeout of the process group\'s collectives (1800)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
