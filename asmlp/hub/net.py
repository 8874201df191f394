"""Is an endpoint reachable? A quick probe with a hard deadline, and a process-wide cache of the answers.

huggingface_hub waits 23 s and more when DNS fails and minutes on a server that accepts and never answers (it retries
with a fixed 60 s timeout and backoff). Before any Hub or URL request the resolver asks :func:`check`: resolve the
host (in a helper thread, since ``getaddrinfo`` has no timeout), connect, for https do the TLS handshake, send a
``HEAD /`` and wait for the first byte of an answer — all within ``ASMLP_NET_TIMEOUT`` seconds (default 2). Any
answer counts as reachable (a 404 too): this tests liveness, not the file. An unreachable origin is remembered for
``ASMLP_NET_TTL`` seconds (default 300), a reachable one for 60 s, so later calls don't pay the wait again.

With an http(s) proxy configured for the URL (``HTTPS_PROXY`` etc., honouring ``NO_PROXY``) the proxy itself is
probed with a ``CONNECT``.
"""
from __future__ import annotations

import os
import socket
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

__all__ = ['Reachability', 'check', 'check_many', 'mark_unreachable', 'reset', 'probe_timeout']

_POSITIVE_TTL = 60.0
_lock = threading.Lock()
_cache: dict[tuple[str, str, int], tuple[bool, float, str]] = {}  # origin -> (reachable, expires, reason)


@dataclass(frozen=True)
class Reachability:
    ok: bool
    reason: str          # '' when reachable; else e.g. 'connection refused'
    cached: bool         # answered from the cache, no probe made
    seconds: float       # time the probe took (0 when cached)


def probe_timeout() -> float:
    return float_env('ASMLP_NET_TIMEOUT', 2.0)


def _ttl() -> float:
    return float_env('ASMLP_NET_TTL', 300.0)


def float_env(name: str, default: float) -> float:
    """A positive float from the environment variable ``name``, else ``default``."""
    try:
        value = float(os.environ.get(name, ''))
        return value if value > 0 else default
    except ValueError:
        return default


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = (parts.scheme or 'https').lower()
    host = (parts.hostname or '').lower()
    if not host:
        raise ValueError(f'not an http(s) URL: {url!r}')
    return scheme, host, parts.port or (443 if scheme == 'https' else 80)


def reset() -> None:
    """Forget every cached answer."""
    with _lock:
        _cache.clear()


def mark_unreachable(url: str, reason: str) -> None:
    """Remember ``url``'s origin as unreachable (e.g. a request timed out after a good probe)."""
    with _lock:
        _cache[_origin(url)] = (False, time.monotonic() + _ttl(), reason)


def check(url: str, timeout: Optional[float] = None) -> Reachability:
    """Whether ``url``'s origin (scheme, host, port) answers, probing at most once per TTL."""
    origin = _origin(url)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(origin)
        if hit is not None and hit[1] > now:
            return Reachability(hit[0], hit[2], True, 0.0)
    start = time.monotonic()
    limit = timeout or probe_timeout()
    reason = _probe(*origin, deadline=start + limit, limit=limit)
    seconds = time.monotonic() - start
    with _lock:
        _cache[origin] = (not reason, time.monotonic() + (_ttl() if reason else _POSITIVE_TTL), reason)
    return Reachability(not reason, reason, False, seconds)


def check_many(urls) -> dict[str, Reachability]:
    """:func:`check` for several URLs at once: the origins not in the cache are probed in parallel threads, so a
    model whose Hub endpoint and download host both hang costs one probe timeout, not two."""
    firsts: dict[tuple[str, str, int], str] = {}
    for url in urls:
        firsts.setdefault(_origin(url), url)
    now = time.monotonic()
    with _lock:
        todo = [url for origin, url in firsts.items() if not (origin in _cache and _cache[origin][1] > now)]
    if len(todo) > 1:
        threads = [threading.Thread(target=check, args=(url,), name='asmlp-probe', daemon=True) for url in todo]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return {url: check(url) for url in urls}


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _resolve(host: str, port: int, deadline: float) -> list:
    result: list = []

    def work():
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as error:
            result.append(error)

    thread = threading.Thread(target=work, name=f'asmlp-dns-{host}', daemon=True)
    thread.start()
    thread.join(_remaining(deadline))
    if not result:
        raise TimeoutError
    if isinstance(result[0], OSError):
        raise result[0]
    return result[0]


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    last: Optional[OSError] = None
    for family, kind, proto, _, address in _resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(address)
            return sock
        except OSError as error:
            sock.close()
            if isinstance(error, (TimeoutError, socket.timeout)):
                raise
            last = error
    raise last or OSError(f'no address for {host}')


def _proxy_for(scheme: str, host: str) -> Optional[tuple[str, int]]:
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parts = urlsplit(proxy if '://' in proxy else f'http://{proxy}')
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or 80


def _probe(scheme: str, host: str, port: int, deadline: float, limit: float) -> str:
    """'' if the origin answers before ``deadline``, else a short reason."""
    proxy = _proxy_for(scheme, host)
    target = proxy or (host, port)
    sock = None
    try:
        sock = _connect(*target, deadline)
        if proxy:
            request = f'CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n'
        else:
            if scheme == 'https':
                context = ssl.create_default_context()
                context.check_hostname = False  # liveness only: nothing read here is trusted
                context.verify_mode = ssl.CERT_NONE
                sock.settimeout(_remaining(deadline))
                sock = context.wrap_socket(sock, server_hostname=host)
            request = f'HEAD / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: asmlp-probe\r\nConnection: close\r\n\r\n'
        sock.settimeout(_remaining(deadline))
        sock.sendall(request.encode('ascii'))
        sock.settimeout(_remaining(deadline))
        if not sock.recv(1):
            return f'{_name(target)} closed the connection without answering'
        return ''
    except (TimeoutError, socket.timeout):
        return f'{_name(target)} did not answer within {limit:g} s'
    except socket.gaierror as error:
        return f'cannot resolve {target[0]} ({error.strerror or error})'
    except ConnectionRefusedError:
        return f'{_name(target)} refused the connection'
    except (OSError, ssl.SSLError) as error:
        return f'{_name(target)}: {error.strerror or error}'
    finally:
        if sock is not None:
            sock.close()


def _name(target: tuple[str, int]) -> str:
    return f'{target[0]}:{target[1]}'
