"""Getting one file: from the Hugging Face Hub (huggingface_hub and its cache) or from a URL or share link (into
asmlp's download cache: one urllib path with a cookie jar, checked before it is kept, resumed with Range within a
call and across calls), fast when the network is not there, safe when threads and processes fetch the same file.

Both ask :mod:`asmlp.hub.net` first; when the endpoint does not answer, the Hub path falls back to the Hugging Face
cache (``local_files_only=True``) and the URL path to the download cache. ``HF_HUB_OFFLINE=1`` (or
``ASMLP_OFFLINE=1``) skips the network entirely, for the Hub and for URLs. The endpoint, the cache folders and the
offline switch are read from the environment at call time (huggingface_hub reads them once, at import).

A URL download holds its target's lock (:func:`target_lock`, :mod:`asmlp.hub.locks`) for the transfer, the sha256
check and the rename; its partial file and metadata (:mod:`asmlp.hub.partial`) outlive a cut transfer. What stays
in the download folder: the files, their ``*.verified.json`` records (:mod:`asmlp.hub.records`), the ``.locks/``
folder, and ``.<name>.part`` + ``.<name>.part.json`` only while a cut download waits to be resumed.
"""
from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import logging
import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..paths import downloads_dir
from . import net
from .locks import target_lock
from .partial import Partial, PartialInfo, continues, sha256_of
from .progress import ProgressCallback, Throttle, tqdm_class_for
from .records import sha256_problem

__all__ = ['Unavailable', 'NotTheFile', 'Stalled', 'Interrupted', 'CorruptDownload', 'Fetched', 'offline',
           'hub_endpoint', 'hub_cache_dir', 'downloads_dir', 'fetch_hub_file', 'from_hf_cache', 'fetch_url',
           'fetch_first', 'download', 'target_lock', 'CHECKPOINT_MAGIC', 'RESUMES']

log = logging.getLogger('asmlp.hub')
CHECKPOINT_MAGIC = b'PK\x03\x04'  # torch.save's zip format
RESUMES = 3  # Range requests after a cut transfer, within one call

_SNAPSHOT_RE = re.compile(r'[/\\]snapshots[/\\]([0-9a-f]{40})[/\\]')


class Unavailable(Exception):
    """The file cannot be had right now (offline, unreachable, not on the server, not cached)."""


class _LocalFault(Exception):
    """A download that failed here (disk full, transfer cut short), not because the host is unreachable."""


class CorruptDownload(ValueError):
    """The bytes arrived but are not the expected file (sha256 mismatch)."""


@dataclass(frozen=True)
class Fetched:
    path: Path
    commit: Optional[str] = None   # Hub: the commit the file was resolved to
    from_cache: bool = False       # served without contacting the server
    sha256: Optional[str] = None   # known when just downloaded


def _truthy(value: Optional[str]) -> bool:
    return (value or '').strip().upper() in {'1', 'ON', 'YES', 'TRUE'}


def offline() -> bool:
    """``HF_HUB_OFFLINE`` / ``ASMLP_OFFLINE`` set now, or huggingface_hub started in offline mode."""
    if _truthy(os.environ.get('HF_HUB_OFFLINE')) or _truthy(os.environ.get('ASMLP_OFFLINE')):
        return True
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    from huggingface_hub import constants
    return (os.environ.get('HF_ENDPOINT', '').strip() or constants.ENDPOINT).rstrip('/')


def hub_cache_dir() -> str:
    from huggingface_hub import constants
    if os.environ.get('HF_HUB_CACHE'):
        return os.path.expanduser(os.environ['HF_HUB_CACHE'])
    if os.environ.get('HF_HOME'):
        return os.path.join(os.path.expanduser(os.environ['HF_HOME']), 'hub')
    return constants.HF_HUB_CACHE


def _commit_of(path: str) -> Optional[str]:
    match = _SNAPSHOT_RE.search(path)
    return match.group(1) if match else None


def from_hf_cache(repo: str, filename: str, revision: str, cache_dir: str | None = None,
                  why: str = 'cache only') -> Fetched:
    """The file from huggingface_hub's cache (``refs/<revision>`` or a commit's snapshot), touching no network.

    ``try_to_load_from_cache`` reads the cache folders only; ``hf_hub_download(local_files_only=True)`` would
    also build request headers, and with telemetry enabled that fetches an agent registry from the Hub once per
    process (3 s timeout, unbounded DNS).
    """
    from huggingface_hub import try_to_load_from_cache
    try:
        path = try_to_load_from_cache(repo, filename, cache_dir=cache_dir or hub_cache_dir(), revision=revision)
    except Exception:  # noqa: BLE001  (invalid names)
        path = None
    if not isinstance(path, str):
        raise Unavailable(f'{why}; {repo}@{revision}/{filename} is not in the Hugging Face cache')
    return Fetched(Path(path), _commit_of(path), from_cache=True)


def _is_connection_error(error: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (httpx2.ConnectError, httpx2.TimeoutException, OfflineModeIsEnabled, TimeoutError,
                              ConnectionError)):
            return True
        error = error.__cause__ or error.__context__
    return False


def fetch_hub_file(repo: str, filename: str, revision: str = 'main', *, commit: Optional[str] = None,
                   progress: Optional[ProgressCallback] = None) -> Fetched:
    """A Hub file's local path, from huggingface_hub's cache or downloaded into it; :class:`Unavailable` if not.

    ``commit`` (a pinned 40-hex SHA) is used instead of ``revision`` and served from the cache without any request
    when cached. Otherwise the endpoint is probed first (:func:`asmlp.hub.net.check`); unreachable or offline means
    cache only. A reachable endpoint gets one metadata request without retries and with a short timeout
    (``ASMLP_HUB_TIMEOUT``, 5 s) before ``hf_hub_download``: a failure there falls back to the cache at once instead
    of entering huggingface_hub's 60 s-timeout retry loop (only a server that stalls between the two requests still
    can). With telemetry enabled, huggingface_hub's first request of the process also fetches an agent registry from
    ``huggingface_hub.constants.ENDPOINT`` (3 s timeout); ``HF_HUB_DISABLE_TELEMETRY=1`` avoids it.
    """
    from huggingface_hub import errors, get_hf_file_metadata, hf_hub_download, hf_hub_url

    wanted = commit or revision
    endpoint, cache_dir = hub_endpoint(), hub_cache_dir()
    label = f'{repo}@{wanted}/{filename}'
    if commit:
        try:
            return from_hf_cache(repo, filename, commit, cache_dir, 'pinned')
        except Unavailable:
            pass
    if offline():
        return from_hf_cache(repo, filename, wanted, cache_dir, 'offline (HF_HUB_OFFLINE)')
    reach = net.check(endpoint)
    if not reach.ok:
        return from_hf_cache(repo, filename, wanted, cache_dir, f'Hub unreachable: {reach.reason}')

    timeout = net.float_env('ASMLP_HUB_TIMEOUT', 5.0)
    try:
        get_hf_file_metadata(hf_hub_url(repo, filename, revision=wanted, endpoint=endpoint), timeout=timeout,
                             endpoint=endpoint)
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.RemoteEntryNotFoundError) as error:
        raise Unavailable(f'{label}: not on the Hub ({type(error).__name__})') from None
    except Exception as error:  # noqa: BLE001  (network trouble, 5xx, a non-Hub server, ...)
        why = f'Hub request failed: {type(error).__name__}: {error}'.split('\n')[0][:200]
        if _is_connection_error(error):
            net.mark_unreachable(endpoint, why)
        return from_hf_cache(repo, filename, wanted, cache_dir, why)
    try:
        extra = {'tqdm_class': tqdm_class_for(progress, filename)} if progress is not None else {}
        path = hf_hub_download(repo, filename, revision=wanted, cache_dir=cache_dir, endpoint=endpoint,
                               etag_timeout=timeout, **extra)
    except Exception as error:  # noqa: BLE001
        why = f'{label}: download failed: {type(error).__name__}: {error}'.split('\n')[0][:300]
        if _is_connection_error(error):
            net.mark_unreachable(endpoint, why)
        raise Unavailable(why) from None
    return Fetched(Path(path), _commit_of(path))


def fetch_url(url: str, filename: str, *, sha256: Optional[str] = None, sha256_prefix: Optional[str] = None,
              progress: Optional[ProgressCallback] = None, dest_dir: Optional[Path] = None) -> Fetched:
    """``url`` (a plain URL or a share link) downloaded once into ``dest_dir`` (default :func:`downloads_dir`) as
    ``filename``; see :func:`fetch_first`. Safe to call from several threads and processes at once."""
    from .sharepoint import download_urls
    return fetch_first(download_urls(url), filename, sha256=sha256, sha256_prefix=sha256_prefix, progress=progress,
                       dest_dir=dest_dir)


def fetch_first(urls: list[str], filename: str, *, sha256: Optional[str] = None, sha256_prefix: Optional[str] = None,
                progress: Optional[ProgressCallback] = None, dest_dir: Optional[Path] = None) -> Fetched:
    """The file from the first of ``urls`` that gives it (the forms of one link), downloaded once.

    A file already in ``dest_dir`` is returned without any request. Otherwise the target's lock
    (:func:`target_lock`) is taken first: a thread or process that waited on it while another downloaded finds the
    file and returns it without any request either. Each URL goes through :func:`download`; what it refuses (an HTML
    page, a 403, not a checkpoint) makes the next URL be tried, and when none gives the file :class:`Unavailable`
    says why for each. A sha256 mismatch raises :class:`CorruptDownload` at once.
    """
    dest = Path(dest_dir or downloads_dir()) / filename
    if dest.is_file():
        return Fetched(dest, from_cache=True)
    if offline():
        raise Unavailable(f'offline (HF_HUB_OFFLINE/ASMLP_OFFLINE); {filename} not in {dest.parent}')
    with _locked(dest, urls[0]):
        if dest.is_file():  # another thread or process downloaded it meanwhile
            return Fetched(dest, from_cache=True)
        reach = net.check(urls[0])
        if not reach.ok:
            raise Unavailable(f'{urls[0]}: unreachable ({reach.reason})')
        reasons = []
        for url in urls:
            try:
                return download(url, dest, sha256=sha256, sha256_prefix=sha256_prefix, progress=progress)
            except Unavailable as why:
                reasons.append(str(why))
                if isinstance(why, (Stalled, Interrupted)):
                    break  # this form gave the file and the host stopped: the other forms are on the same host
        raise Unavailable('; '.join(reasons) if len(reasons) > 1 else reasons[0])


class NotTheFile(Unavailable):
    """The server answered, but not with a checkpoint (an HTML page such as a sign-in page, an HTTP error)."""


class Stalled(Unavailable):
    """No byte arrived for ``ASMLP_DOWNLOAD_TIMEOUT`` seconds."""


class Interrupted(Unavailable):
    """The transfer was cut more often than ``RESUMES`` allows; the bytes received are kept for the next call."""


def _head_problem(content_type: str, head: bytes) -> Optional[str]:
    """Why the first bytes (and the Content-Type) are not a checkpoint, or None."""
    if 'html' in content_type.lower() or head.lstrip()[:1] == b'<':
        return (f'answered with an HTML page ({content_type or "no Content-Type"}), not the file: the link may now '
                f'ask for a login, or no longer exist')
    if head.startswith(CHECKPOINT_MAGIC) or head[:1] == b'\x80' and head[1:2] in b'\x02\x03\x04\x05':
        return None  # torch.save zip, or a legacy torch.save pickle (protocol 2-5)
    if len(head) >= 9 and head[8:9] == b'{':
        return None  # safetensors: 8-byte header length, then JSON
    return f'answered with something that is not a checkpoint (first bytes {head[:8]!r})'


def _opener() -> urllib.request.OpenerDirector:
    """urllib with a cookie jar: the ``FedAuth`` cookie of a SharePoint redirect reaches the file's URL."""
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


@contextlib.contextmanager
def _locked(dest: Path, url: str) -> Iterator[None]:
    """:func:`target_lock` of ``dest``; a folder where it cannot be created is :class:`Unavailable`."""
    with contextlib.ExitStack() as stack:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(target_lock(dest))
        except OSError as error:
            raise Unavailable(f'{url}: download failed: cannot write to {dest.parent}: '
                              f'{error.strerror or error}') from None
        yield


def download(url: str, dest: Path, *, sha256: Optional[str] = None, sha256_prefix: Optional[str] = None,
             progress: Optional[ProgressCallback] = None) -> Fetched:
    """GET ``url`` into ``dest`` under ``dest``'s lock, through its partial file, with every check before keeping it.

    Redirects are followed with cookies kept. The answer must not be HTML (Content-Type and first bytes) and must
    start like a checkpoint (zip, legacy torch pickle or safetensors): otherwise :class:`NotTheFile`. A transfer
    cut short is resumed with ``Range: bytes=N-`` on the URL the redirects ended at (up to ``RESUMES`` times; a
    server that ignores Range sends the whole file again); after that :class:`Interrupted`. No byte for
    ``ASMLP_DOWNLOAD_TIMEOUT`` seconds (30) is :class:`Stalled`.

    Bytes received before the server stopped (cut, stalled, an HTTP or network error, a killed process) stay in the
    partial file with its metadata (:mod:`asmlp.hub.partial`): the next call for the same URL resumes them with
    ``Range`` and ``If-Range``, or starts over when the server's answer shows another file. The sha256 is computed
    from the complete file on disk; one that is not ``sha256`` (or does not start with ``sha256_prefix``) raises
    :class:`CorruptDownload` and deletes the partial file and its metadata, as does a local fault (a full disk). The
    file appears at ``dest`` by one atomic rename. ``progress`` hears :class:`~asmlp.hub.progress.DownloadProgress`
    reports.
    """
    dest = Path(dest)
    with _locked(dest, url):
        partial = Partial(dest)
        report = Throttle(progress, dest.name)
        done = keep = False
        try:
            length = _transfer(url, partial, report)
            digest_hex = sha256_of(partial.path)  # the bytes on disk, not the stream that was written
            wrong = sha256_problem(digest_hex, sha256, sha256_prefix)
            if wrong:
                raise CorruptDownload(f'{url}: {wrong} (the file behind the link changed, or the transfer was '
                                      f'damaged)')
            partial.finish(dest)
            done = True
        except Stalled as error:
            keep = True
            net.mark_unreachable(url, str(error))  # the next attempt fails at once instead of waiting again
            raise
        except (Interrupted, NotTheFile):
            keep = True  # what is kept was checked when it arrived; If-Range checks it again next time
            raise
        except CorruptDownload:
            raise
        except Exception as error:  # noqa: BLE001  (HTTP errors, timeouts, resets, a full disk)
            detail = error if isinstance(error, _LocalFault) else f'{type(error).__name__}: {error}'
            why = f'{url}: download failed: {detail}'.split('\n')[0][:300]
            local = isinstance(error, _LocalFault)
            if not local and (_is_connection_error(error) or isinstance(error, OSError) and not hasattr(error, 'code')):
                net.mark_unreachable(url, why)
            keep = not local and isinstance(error, (OSError, http.client.HTTPException))  # the network's fault
            raise Unavailable(why) from None
        except BaseException:  # KeyboardInterrupt, SystemExit: what arrived is good, as after a killed process
            keep = True
            raise
        finally:
            if not done and not (keep and partial.resumable()):
                try:
                    partial.discard()
                except OSError:  # a folder that turned read-only: nothing more can be done here
                    log.warning('could not remove the partial download %s', partial.path)
        report(length, length, finished=True)
    return Fetched(dest, sha256=digest_hex)


def _transfer(url: str, partial: Partial, report: Throttle) -> int:
    """Bring ``partial`` to the whole file from ``url``, resuming what an earlier call kept; returns its length."""
    timeout = net.float_env('ASMLP_DOWNLOAD_TIMEOUT', 30.0)
    opener, current = _opener(), url
    info, received = partial.kept(url)
    try:
        out = partial.open()
    except OSError as error:
        raise _LocalFault(f'cannot write to {partial.path.parent}: {error.strerror or error}') from None
    with out:
        out.seek(received)
        for _ in range(RESUMES + 1):
            headers = {'User-Agent': 'asmlp'}
            if received:
                headers['Range'] = f'bytes={received}-'
                if info.if_range():
                    headers['If-Range'] = info.if_range()
            try:
                response = opener.open(urllib.request.Request(current, headers=headers), timeout=timeout)
            except urllib.error.HTTPError as error:
                if not (received and error.code == 416):
                    raise NotTheFile(f'{url}: HTTP {error.code} {error.reason}') from None
                response = None  # 416: the kept bytes are longer than the file there now
            if response is None or received and response.status == 206 and not continues(
                    info, received, response.status, response.headers):
                if response is not None:  # a piece of another version of the file
                    response.close()
                partial.begin(out, None)  # ask for the whole file
                info, received, current = None, 0, url
                continue
            with response:
                reader = _Reader(response, url, timeout)
                if received and response.status == 206:  # the rest of the kept file (checked above)
                    received = reader.append(out, received, info.length, report, partial)
                elif response.status == 206:
                    raise NotTheFile(f'{url}: answered with a piece (206) of the file when asked for all of it')
                else:  # the whole file, from byte 0 (also when a Range was ignored or If-Range did not match)
                    current = response.geturl()  # resumed there, after the redirects, with the same cookies
                    head = reader.head()
                    if not head:
                        raise NotTheFile(f'{url}: answered with an empty file')
                    problem = _head_problem(response.headers.get('Content-Type', ''), head)
                    if problem:
                        raise NotTheFile(f'{url}: {problem}')
                    info = PartialInfo.from_answer(url, response.headers)
                    partial.begin(out, info)
                    received = _write(out, head, 0, partial)
                    received = reader.append(out, received, info and info.length, report, partial)
            if info is None or received >= info.length:
                out.flush()
                os.fsync(out.fileno())
                return received
    raise Interrupted(f'{url}: download failed: the connection was cut after {received} of '
                      f'{info.length if info else "?"} bytes, {RESUMES} resumes did not finish it; the bytes '
                      f'received are kept for the next try')


class _Reader:
    """An answer's bytes as they arrive: b'' at its end or when the connection was cut; :class:`Stalled` when none
    arrive for ``timeout`` seconds."""

    def __init__(self, response, url: str, timeout: float):
        self.response, self.url, self.timeout = response, url, timeout

    def read(self, size: int, received: int, total: Optional[int]) -> bytes:
        try:
            return self.response.read1(size)
        except http.client.IncompleteRead as cut:
            return cut.partial
        except ConnectionError:
            return b''
        except (TimeoutError, socket.timeout):
            raise Stalled(f'{self.url}: stalled: no data for {self.timeout:g} s (ASMLP_DOWNLOAD_TIMEOUT) after '
                          f'{received} of {total or "?"} bytes') from None

    def head(self, size: int = 64) -> bytes:
        """The first ``size`` bytes (fewer when the answer is shorter), for :func:`_head_problem`."""
        head = b''
        while len(head) < size:
            chunk = self.read(size - len(head), len(head), None)
            if not chunk:
                break
            head += chunk
        return head

    def append(self, out, received: int, total: Optional[int], report: Throttle, partial: Partial) -> int:
        """Write the rest of the answer to ``out``; returns the bytes now in the file."""
        report(received, total)
        while chunk := self.read(1 << 20, received, total):
            received = _write(out, chunk, received, partial)
            report(received, total)
        return received


def _write(out, chunk: bytes, received: int, partial: Partial) -> int:
    """Append ``chunk`` and hand it to the OS at once: what a killed process received is in the partial file."""
    try:
        out.write(chunk)
        out.flush()
    except OSError as error:  # the local disk, not the network
        raise _LocalFault(f'cannot write to {partial.path.parent}: {error.strerror or error}') from None
    return received + len(chunk)
