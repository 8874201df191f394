"""A download's partial file and what the server said about it, kept across calls so that a cut transfer resumes.

Beside the target ``<folder>/<name>``: ``.<name>.part`` holds the bytes received so far, ``.<name>.part.json``
what the server answered when they started to arrive (the URL asked, the full length, its ``ETag`` and
``Last-Modified``). The next call asks for the rest with ``Range: bytes=<size>-`` and ``If-Range`` (RFC 9110
§14.2, §13.1.5, https://www.rfc-editor.org/rfc/rfc9110): a server sends the rest (206) only while the file is the
one it started; otherwise the whole file (200), and the download starts over. :func:`continues` checks the answer
again on this side (a server may ignore ``If-Range``). Both files are only touched under the target's lock
(:func:`asmlp.hub.locks.target_lock`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Mapping, Optional

from ..paths import atomic_write

__all__ = ['PartialInfo', 'Partial', 'continues', 'sha256_of']

_CONTENT_RANGE = re.compile(r'bytes (\d+)-(\d+)/(\d+|\*)')


@dataclass(frozen=True)
class PartialInfo:
    """What the server said when the kept bytes started to arrive."""
    url: str                              # the URL asked (before redirects: a share link's cookie comes from them)
    length: int                           # the whole file's bytes (Content-Length of the 200 answer)
    etag: Optional[str] = None
    last_modified: Optional[str] = None

    def if_range(self) -> Optional[str]:
        """The ``If-Range`` value: the ETag, or Last-Modified when there is none; None for a weak ETag, which may
        not be sent there (RFC 9110 §13.1.5; the answer is then checked by :func:`continues` alone)."""
        if self.etag:
            return None if self.etag.startswith('W/') else self.etag
        return self.last_modified

    @classmethod
    def from_answer(cls, url: str, headers: Mapping[str, str]) -> Optional['PartialInfo']:
        """From a 200 answer's headers; None without a Content-Length (then a cut cannot even be seen)."""
        length = (headers.get('Content-Length') or '').strip()
        if not length.isdigit():
            return None
        return cls(url, int(length), headers.get('ETag') or None, headers.get('Last-Modified') or None)


def continues(info: PartialInfo, start: int, status: int, headers: Mapping[str, str]) -> bool:
    """Whether an answer to ``Range: bytes=<start>-`` is the rest of the file ``info`` describes: a 206 whose
    ``Content-Range`` is ``bytes <start>-<length - 1>/<length>`` (or ``/*``) and whose ETag and Last-Modified, when
    sent, are the ones kept."""
    if status != 206:
        return False
    match = _CONTENT_RANGE.fullmatch((headers.get('Content-Range') or '').strip())
    if not match or int(match.group(1)) != start or int(match.group(2)) != info.length - 1:
        return False
    if match.group(3) != '*' and int(match.group(3)) != info.length:
        return False
    for name, kept in (('ETag', info.etag), ('Last-Modified', info.last_modified)):
        sent = headers.get(name)
        if kept and sent and sent != kept:
            return False
    return True


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 of the file at ``path`` as it is on disk."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Partial:
    """The partial file of target ``dest`` and its metadata file."""

    def __init__(self, dest: Path):
        dest = Path(dest)
        self.path = dest.with_name(f'.{dest.name}.part')
        self.meta_path = dest.with_name(f'.{dest.name}.part.json')

    def info(self) -> Optional[PartialInfo]:
        """The metadata kept, or None (none, unreadable, or of another layout)."""
        try:
            data = json.loads(self.meta_path.read_text())
            info = PartialInfo(**data)
        except (OSError, ValueError, TypeError):
            return None
        if not isinstance(info.url, str) or not isinstance(info.length, int) or info.length <= 0:
            return None
        return info

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def resumable(self) -> bool:
        """Kept bytes with their metadata, fewer than the whole file."""
        info = self.info()
        return info is not None and 0 < self.size() < info.length

    def kept(self, url: str) -> tuple[Optional[PartialInfo], int]:
        """``(info, size)`` of what an earlier call left for ``url``; ``(None, 0)`` when there is nothing to resume
        from ``url``. Left-overs that nothing can resume are deleted; a partial of another URL (another form of a
        share link) is left alone until a download of the whole file replaces it."""
        if not self.resumable():
            self.discard()
            return None, 0
        info = self.info()
        return (info, self.size()) if info.url == url else (None, 0)

    def open(self) -> BinaryIO:
        """The partial file for reading and writing, kept bytes intact (created empty when missing)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return os.fdopen(fd, 'r+b')

    def begin(self, out: BinaryIO, info: Optional[PartialInfo]) -> None:
        """Start the whole file again in ``out``: empty it, and record ``info`` (none kept when None)."""
        out.seek(0)
        out.truncate()
        if info is None:
            self.meta_path.unlink(missing_ok=True)
        else:
            text = json.dumps(asdict(info), indent=1) + '\n'
            atomic_write(self.meta_path, lambda tmp: Path(tmp).write_text(text))

    def finish(self, dest: Path) -> None:
        """Rename the complete file into place (atomic), then drop its metadata."""
        os.replace(self.path, dest)
        self.meta_path.unlink(missing_ok=True)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)
