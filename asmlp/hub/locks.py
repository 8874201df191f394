"""One lock per target file or folder, held across threads and processes: :func:`target_lock`.

A download (transfer, sha256 check, rename into place), the writing of a converted ``weights/<name>/`` folder, a
record beside a download: whatever two processes (``torchrun`` ranks, two app workers, the CLI beside the app) may
write at once goes under the lock of the path it writes. The lock is a :class:`filelock.FileLock` on
``<folder>/.locks/<name>.lock`` (as the Hugging Face cache keeps its lock files in ``.locks/``,
https://huggingface.co/docs/hub/local-cache) plus a re-entrant thread lock, so the thread that holds it may take it
again (a downloader that also records) and other threads of the process wait without polling.

Lock order, where one block needs two: a ``weights/<name>/`` folder before a download it converts.

The ``.locks/`` folder and its empty ``*.lock`` files are permanent: a Unix lock file cannot be deleted safely while
another process may be waiting on it (that waiter would lock the deleted file while a newcomer locks a new one;
https://github.com/tox-dev/filelock/issues/76), so filelock leaves it in place on release. A process that dies
releases its lock with its file descriptors.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from filelock import FileLock

__all__ = ['LOCKS_DIR', 'lock_file', 'target_lock']

LOCKS_DIR = '.locks'
_registry_lock = threading.Lock()
_registry: dict[str, tuple[threading.RLock, FileLock]] = {}  # absolute target -> (thread lock, its FileLock)


def _forget_after_fork() -> None:
    """A forked child starts with no lock held (a thread of the parent may have held one at the fork)."""
    global _registry_lock
    _registry_lock = threading.Lock()
    _registry.clear()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_forget_after_fork)


def lock_file(target: Path) -> Path:
    """The lock file of ``target``: ``<target's folder>/.locks/<target's name>.lock``."""
    target = Path(target)
    return target.parent / LOCKS_DIR / f'{target.name}.lock'


def _locks_for(target: Path) -> tuple[threading.RLock, FileLock]:
    from filelock import FileLock
    key = os.path.abspath(target)
    with _registry_lock:
        pair = _registry.get(key)
        if pair is None:
            # thread_local=False: the one FileLock is shared by the threads of this process, which the RLock
            # serialises; its counter makes re-entry by the holding thread free
            pair = _registry[key] = (threading.RLock(), FileLock(str(lock_file(target)), thread_local=False))
        return pair


@contextlib.contextmanager
def target_lock(target: Path) -> Iterator[Path]:
    """Hold ``target``'s lock (see the module's docstring) for the ``with`` block; yields the lock file's path.

    Waits as long as another thread or process holds it. Re-entrant in the holding thread. ``OSError`` when the
    lock file cannot be created (a read-only folder).
    """
    thread_lock, file_lock = _locks_for(Path(target))
    with thread_lock:
        lock_file(target).parent.mkdir(parents=True, exist_ok=True)
        with file_lock:
            yield lock_file(target)
