"""The sha256 of each good download, recorded beside it: ``<downloads>/<file>.verified.json``.

No sha256 is published for the official AS-MLP files (OneDrive), so the first download that passed every check
(not HTML, a checkpoint by its magic bytes, the model's strict load) is recorded: its sha256, the link, the model it
loaded into and when. The status of that model shows it; ``python -m asmlp pin --from-downloads`` copies the digest
into the zoo's ``sha256`` field, and from then on every download must match it.

Writing a record and forgetting a file take the file's lock (:func:`asmlp.hub.locks.target_lock`, the one its
download holds), so that "the first good download wins" holds across processes and a file is never forgotten while
another process downloads it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from ..paths import atomic_write
from .locks import target_lock

__all__ = ['SUFFIX', 'record_path', 'write_record', 'read_record', 'forget', 'sha256_problem']

SUFFIX = '.verified.json'


def record_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + SUFFIX)


def write_record(path: Path, *, sha256: str, url: str, model: str, source_format: str) -> Path:
    """Record ``path``'s verified download (never overwritten by a later one: the first good download wins)."""
    target = record_path(path)
    text = json.dumps({'file': Path(path).name, 'sha256': sha256, 'url': url, 'model': model,
                       'source_format': source_format, 'verified': 'strict load into the model',
                       'downloaded': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, indent=1) + '\n'
    with target_lock(path):
        if not target.exists():
            atomic_write(target, lambda tmp: Path(tmp).write_text(text))
    return target


def read_record(path: Path) -> Optional[dict]:
    """The record of ``path`` (None when there is none or it is unreadable)."""
    try:
        record = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get('sha256'), str):
        return None
    return record


def forget(path: Path) -> None:
    """Delete ``path`` and its record (a download that failed its checks)."""
    with target_lock(path):
        Path(path).unlink(missing_ok=True)
        record_path(path).unlink(missing_ok=True)


def sha256_problem(digest: str, sha256: Optional[str] = None, prefix: Optional[str] = None) -> Optional[str]:
    """Why ``digest`` is not the expected file (the zoo's whole ``sha256``, or the ``prefix`` an OpenMMLab file name
    carries), or None when it is (or nothing is expected). The one sha256 check of downloads and located files."""
    if sha256 and digest != sha256:
        return f"sha256 {digest[:12]}… is not the zoo's {sha256[:12]}…"
    if prefix and not digest.startswith(prefix):
        return f"sha256 {digest[:12]}… does not start with {prefix}, the official file's"
    return None
