"""Getting one file: from the Hugging Face Hub (huggingface_hub and its cache) or from a plain URL (into asmlp's
download cache), fast when the network is not there.

Both ask :mod:`asmlp.hub.net` first; when the endpoint does not answer, the Hub path falls back to the Hugging Face
cache (``local_files_only=True``) and the URL path to the download cache. ``HF_HUB_OFFLINE=1`` (or
``ASMLP_OFFLINE=1``) skips the network entirely, for the Hub and for URLs. The endpoint, the cache folders and the
offline switch are read from the environment at call time (huggingface_hub reads them once, at import).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import net

__all__ = ['Unavailable', 'CorruptDownload', 'Fetched', 'offline', 'hub_endpoint', 'hub_cache_dir', 'downloads_dir',
           'fetch_hub_file', 'from_hf_cache', 'fetch_url']

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


def downloads_dir() -> Path:
    """``$ASMLP_CACHE_DIR/downloads`` (default ``$XDG_CACHE_HOME/asmlp`` or ``~/.cache/asmlp``)."""
    root = os.environ.get('ASMLP_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'), 'asmlp')
    return Path(root) / 'downloads'


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


def fetch_hub_file(repo: str, filename: str, revision: str = 'main', *, commit: Optional[str] = None) -> Fetched:
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
        path = hf_hub_download(repo, filename, revision=wanted, cache_dir=cache_dir, endpoint=endpoint,
                               etag_timeout=timeout)
    except Exception as error:  # noqa: BLE001
        why = f'{label}: download failed: {type(error).__name__}: {error}'.split('\n')[0][:300]
        if _is_connection_error(error):
            net.mark_unreachable(endpoint, why)
        raise Unavailable(why) from None
    return Fetched(Path(path), _commit_of(path))


def fetch_url(url: str, filename: str, *, sha256_prefix: Optional[str] = None) -> Fetched:
    """``url`` downloaded once into :func:`downloads_dir` (``filename``), checked against ``sha256_prefix``.

    A cached file is returned without any request. Socket operations time out after ``ASMLP_DOWNLOAD_TIMEOUT``
    seconds (30). A sha256 mismatch deletes the download and raises :class:`CorruptDownload`.
    """
    dest = downloads_dir() / filename
    if dest.is_file():
        return Fetched(dest, from_cache=True)
    if offline():
        raise Unavailable(f'offline (HF_HUB_OFFLINE/ASMLP_OFFLINE); {filename} not in {dest.parent}')
    reach = net.check(url)
    if not reach.ok:
        raise Unavailable(f'{url}: unreachable ({reach.reason})')
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f'.{filename}.', suffix='.part', dir=dest.parent)
    try:
        request = urllib.request.Request(url, headers={'User-Agent': 'asmlp'})
        with os.fdopen(fd, 'wb') as out, \
                urllib.request.urlopen(request, timeout=net.float_env('ASMLP_DOWNLOAD_TIMEOUT', 30.0)) as response:
            expected, received = response.headers.get('Content-Length'), 0
            while chunk := response.read(1 << 20):
                try:
                    out.write(chunk)
                except OSError as error:  # the local disk, not the network
                    raise _LocalFault(f'cannot write to {dest.parent}: {error.strerror or error}') from None
                received += len(chunk)
                digest.update(chunk)
        if expected is not None and received != int(expected):
            raise _LocalFault(f'the connection was cut after {received} of {expected} bytes')
        sha256 = digest.hexdigest()
        if sha256_prefix and not sha256.startswith(sha256_prefix):
            raise CorruptDownload(f'{url}: sha256 {sha256[:12]}… does not start with the expected {sha256_prefix}')
        os.replace(tmp, dest)
    except CorruptDownload:
        raise
    except Exception as error:  # noqa: BLE001  (HTTP errors, timeouts, resets, a full disk, a cut transfer)
        why = f'{url}: download failed: {error if isinstance(error, _LocalFault) else f"{type(error).__name__}: {error}"}'
        why = why.split('\n')[0][:300]
        if not isinstance(error, _LocalFault) and (
                _is_connection_error(error) or isinstance(error, OSError) and not hasattr(error, 'code')):
            net.mark_unreachable(url, why)
        raise Unavailable(why) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return Fetched(dest, sha256=sha256)
