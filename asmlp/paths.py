"""Where the project keeps files on disk."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent


def weights_dir() -> Path:
    """Local checkpoints: ``$ASMLP_WEIGHTS_DIR`` or the repository's ``weights/``."""
    return Path(os.environ.get('ASMLP_WEIGHTS_DIR') or REPO_ROOT / 'weights')


def cache_dir() -> Path:
    """The project's cache: ``$ASMLP_CACHE_DIR``, else ``$XDG_CACHE_HOME/asmlp`` or ``~/.cache/asmlp``."""
    root = os.environ.get('ASMLP_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'), 'asmlp')
    return Path(root)


def atomic_write(target: Path, write: Callable[[str], None]) -> None:
    """Write ``target`` through ``write(temporary_path)`` in the same folder, then rename: never half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f'.{target.name}.', dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def downloads_dir() -> Path:
    """Downloaded official files (URLs, share links), kept under their official names: ``cache_dir()/downloads``."""
    return cache_dir() / 'downloads'


def show_path(path) -> str:
    """A path as people know it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
