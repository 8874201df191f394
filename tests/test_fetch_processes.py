"""URL downloads (asmlp.hub.fetch_url) shared by processes and resumed across calls, against a loopback file server.

The server follows HTTP range requests as RFC 9110 states them (https://www.rfc-editor.org/rfc/rfc9110):
``Range: bytes=N-`` is answered 206 with ``Content-Range: bytes N-(len-1)/len`` and the rest of the file (§14.2,
§14.4), a start past the end 416 (§15.5.17); ``If-Range`` with a validator other than the current ETag makes it
ignore the Range and send the whole file with 200 (§13.1.5). It sends each answer in small pieces with short
sleeps, can hold an answer after its first piece until the test lets it go, can cut every answer after N bytes, and
logs every GET (whole file or range, and its Range / If-Range headers).

What a download folder may hold afterwards (the permanent part): the file and ``.locks/<file>.lock`` (empty); a
``.<file>.part`` + ``.<file>.part.json`` pair only while a cut download waits to be resumed.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import huggingface_hub.constants
import pytest

from asmlp.hub import fetch, net

REPO = Path(__file__).resolve().parent.parent
NAME = 'f.pth'
PERMANENT = {NAME, '.locks', f'.locks/{NAME}.lock'}


def checkpoint_bytes(size: int, seed: int) -> bytes:
    """Bytes that start like torch.save's zip (the download's first check), then pseudo-random."""
    body = b''.join(hashlib.sha256(f'{seed}:{i}'.encode()).digest() for i in range(size // 32 + 1))
    return (b'PK\x03\x04' + body)[:size]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileServer:
    """One file at ``/f.pth`` over HTTP/1.1; see the module's docstring."""

    def __init__(self, data: bytes, piece: int = 4096, pause: float = 0.002):
        self.piece, self.pause = piece, pause
        self.cut_after = None          # cut every answer after this many body bytes
        self.honour_if_range = True    # False: a server that ignores If-Range (answers 206 whatever it says)
        self.hold = None               # a threading.Event: answers wait after their first piece until it is set
        self.first_piece_sent = threading.Event()
        self.requests: list[dict] = []
        self.sent = 0                  # body bytes sent, all answers
        self._lock = threading.Lock()
        self.set_data(data)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_HEAD(self):  # the reachability probe asks HEAD /
                self.send_response(200 if self.path == '/' else 404)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def do_GET(self):
                if self.path != f'/{NAME}':
                    self.send_response(404)
                    self.send_header('Content-Length', '0')
                    return self.end_headers()
                with server._lock:
                    data, etag = server.data, server.etag
                wanted, validator = self.headers.get('Range'), self.headers.get('If-Range')
                match = re.fullmatch(r'bytes=(\d+)-', wanted or '')
                start = None
                if match and (validator is None or validator == etag or not server.honour_if_range):
                    start = int(match.group(1))
                if start is not None and start >= len(data):
                    server.log('refused', wanted, validator)
                    self.send_response(416)
                    self.send_header('Content-Range', f'bytes */{len(data)}')
                    self.send_header('Content-Length', '0')
                    return self.end_headers()
                body = data[start or 0:]
                server.log('range' if start is not None else 'whole', wanted, validator)
                self.send_response(206 if start is not None else 200)
                if start is not None:
                    self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
                self.send_header('Content-Type', 'application/octet-stream')
                self.send_header('Content-Length', str(len(body)))
                self.send_header('ETag', etag)
                self.end_headers()
                self.send_body(body)

            def send_body(self, body: bytes):
                limit = len(body) if server.cut_after is None else min(len(body), server.cut_after)
                try:
                    for at in range(0, limit, server.piece):
                        piece = body[at:min(at + server.piece, limit)]
                        self.wfile.write(piece)
                        self.wfile.flush()
                        with server._lock:
                            server.sent += len(piece)
                        if at == 0:
                            server.first_piece_sent.set()
                            if server.hold is not None:
                                server.hold.wait(10)
                        time.sleep(server.pause)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if limit < len(body):  # cut: close the connection mid-answer
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/{NAME}'
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name='test-file-server',
                                       daemon=True)
        self.thread.start()

    def set_data(self, data: bytes) -> None:
        with self._lock:
            self.data, self.etag = data, f'"{sha256(data)[:16]}"'

    def log(self, kind: str, wanted, validator) -> None:
        with self._lock:
            self.requests.append({'kind': kind, 'range': wanted, 'if_range': validator})

    def kinds(self) -> list[str]:
        return [r['kind'] for r in self.requests]

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def online(monkeypatch):
    """HF_HUB_OFFLINE unset (conftest sets it), in the environment and in huggingface_hub's constants."""
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.delenv('ASMLP_OFFLINE', raising=False)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)
    net.reset()
    yield
    net.reset()


@pytest.fixture
def server():
    srv = FileServer(checkpoint_bytes(64_000, seed=1))
    yield srv
    srv.close()


def listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob('*')}


def partial_of(folder: Path) -> tuple[Path, Path]:
    return folder / f'.{NAME}.part', folder / f'.{NAME}.part.json'


def cut_call(server: FileServer, folder: Path) -> int:
    """One call while the server cuts every answer after 10 000 bytes: it fails, keeping what arrived."""
    server.cut_after, server.sent = 10_000, 0
    with pytest.raises(fetch.Unavailable, match='cut after'):
        fetch.fetch_url(server.url, NAME, dest_dir=folder)
    server.cut_after = None
    part, meta = partial_of(folder)
    kept = part.stat().st_size
    assert kept == server.sent and 0 < kept < len(server.data)  # every byte sent is on disk, none twice
    assert part.read_bytes() == server.data[:kept]
    assert json.loads(meta.read_text()) == {'url': server.url, 'length': len(server.data), 'etag': server.etag,
                                            'last_modified': None}
    assert not (folder / NAME).exists()
    return kept


# ------------------------------------------------------------------------------------------------ two processes

CHILD = '''
import json, sys
from pathlib import Path
from asmlp.hub import fetch_url
url, folder, digest = sys.argv[1:4]
print('ready', flush=True)
sys.stdin.readline()
print('calling', flush=True)
got = fetch_url(url, 'f.pth', sha256=digest, dest_dir=Path(folder))
print(json.dumps({'path': str(got.path), 'from_cache': got.from_cache, 'sha256': got.sha256}), flush=True)
'''


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'ASMLP_OFFLINE')}
    env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')
    return env


def start_child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-c', CHILD, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env(), cwd=REPO)


def test_two_processes_fetching_one_file_share_one_download(server, tmp_path):
    """Both calls start together; the server holds the first answer after one piece until both processes are in
    their call, so one of them waits on the other's download: one whole GET, both get the checked file."""
    folder = tmp_path / 'downloads'
    digest = sha256(server.data)
    server.hold = threading.Event()
    children = [start_child(server.url, str(folder), digest) for _ in range(2)]
    try:
        for child in children:
            assert child.stdout.readline().strip() == 'ready', child.stderr.read()
        for child in children:  # go, both at once
            child.stdin.write('go\n')
            child.stdin.flush()
        for child in children:
            assert child.stdout.readline().strip() == 'calling', child.stderr.read()
        assert server.first_piece_sent.wait(30)  # one download is under way, held
        time.sleep(0.5)  # let the other process reach the lock (the assertions hold however long it takes)
        server.hold.set()
        results = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    assert server.kinds() == ['whole']  # exactly one GET, of the whole file
    assert sorted(r['from_cache'] for r in results) == [False, True]  # one downloaded, one found it
    downloaded = next(r for r in results if not r['from_cache'])
    assert downloaded['sha256'] == digest
    assert {r['path'] for r in results} == {str(folder / NAME)}
    assert (folder / NAME).read_bytes() == server.data
    assert listing(folder) == PERMANENT  # nothing half-written: no partial, no metadata, no temporary file


def test_two_threads_fetching_one_file_share_one_download(online, server, tmp_path):
    folder = tmp_path / 'downloads'
    server.hold = threading.Event()
    results, errors = [], []

    def call():
        try:
            results.append(fetch.fetch_url(server.url, NAME, sha256=sha256(server.data), dest_dir=folder))
        except Exception as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=call, name=f'test-fetch-{i}') for i in range(2)]
    for thread in threads:
        thread.start()
    assert server.first_piece_sent.wait(30)
    time.sleep(0.2)  # the other thread reaches the lock (the assertions hold however long it takes)
    server.hold.set()
    for thread in threads:
        thread.join(30)
    assert errors == [] and not any(thread.is_alive() for thread in threads)
    assert server.kinds() == ['whole']
    assert sorted(r.from_cache for r in results) == [False, True] and {r.path for r in results} == {folder / NAME}
    assert (folder / NAME).read_bytes() == server.data and listing(folder) == PERMANENT


def test_a_killed_download_is_resumed_by_the_next_process(online, server, tmp_path):
    """A process killed mid-transfer leaves its bytes and metadata; its lock dies with it; the next call resumes."""
    folder = tmp_path / 'downloads'
    server.hold = threading.Event()
    child = start_child(server.url, str(folder), sha256(server.data))
    try:
        assert child.stdout.readline().strip() == 'ready', child.stderr.read()
        child.stdin.write('go\n')
        child.stdin.flush()
        assert server.first_piece_sent.wait(30)
        part, meta = partial_of(folder)
        deadline = time.monotonic() + 10
        while part.stat().st_size < server.piece and time.monotonic() < deadline:  # the piece reaches the disk
            time.sleep(0.02)
    finally:
        child.kill()
        child.communicate()
    server.hold.set()
    kept = part.stat().st_size
    assert kept == server.piece and part.read_bytes() == server.data[:kept] and meta.is_file()
    server.requests.clear()
    got = fetch.fetch_url(server.url, NAME, sha256=sha256(server.data), dest_dir=folder)
    assert server.requests == [{'kind': 'range', 'range': f'bytes={kept}-', 'if_range': server.etag}]
    assert got.sha256 == sha256(server.data) and not got.from_cache
    assert (folder / NAME).read_bytes() == server.data and listing(folder) == PERMANENT


# ------------------------------------------------------------------------------------------------ across calls

def test_a_cut_transfer_resumes_with_range_in_the_next_call(online, server, tmp_path):
    folder = tmp_path / 'downloads'
    kept = cut_call(server, folder)
    # within the call: the whole file asked once, then resumed with Range where each cut left it
    assert server.kinds()[0] == 'whole' and set(server.kinds()[1:]) == {'range'} and len(server.kinds()) > 1
    assert all(r['if_range'] == server.etag for r in server.requests[1:])
    server.requests.clear()
    got = fetch.fetch_url(server.url, NAME, dest_dir=folder)
    assert server.requests == [{'kind': 'range', 'range': f'bytes={kept}-', 'if_range': server.etag}]
    assert got.sha256 == sha256(server.data) and (folder / NAME).read_bytes() == server.data
    assert listing(folder) == PERMANENT
    server.requests.clear()
    assert fetch.fetch_url(server.url, NAME, dest_dir=folder).from_cache and server.requests == []


@pytest.mark.parametrize('honour_if_range', [True, False], ids=['if-range-honoured', 'if-range-ignored'])
def test_a_changed_file_on_the_server_makes_it_start_over(online, server, tmp_path, honour_if_range):
    """The file behind the URL changed (another ETag, another length) between the calls: whether the server applies
    If-Range (200, the whole new file) or not (206 of the new file), the kept bytes are not spliced with new ones."""
    folder = tmp_path / 'downloads'
    kept = cut_call(server, folder)
    old_etag = server.etag
    server.set_data(checkpoint_bytes(70_000, seed=2))
    server.honour_if_range = honour_if_range
    server.requests.clear()
    got = fetch.fetch_url(server.url, NAME, sha256=sha256(server.data), dest_dir=folder)
    asked = {'range': f'bytes={kept}-', 'if_range': old_etag}
    if honour_if_range:
        assert server.requests == [{'kind': 'whole', **asked}]
    else:  # the 206 of the other file is refused and the whole file asked for
        assert server.requests == [{'kind': 'range', **asked}, {'kind': 'whole', 'range': None, 'if_range': None}]
    assert got.sha256 == sha256(server.data) and (folder / NAME).read_bytes() == server.data
    assert listing(folder) == PERMANENT


def test_a_partial_longer_than_the_new_file_starts_over(online, server, tmp_path):
    """416 (the kept bytes reach past the end of the file there now): the whole file is asked for."""
    folder = tmp_path / 'downloads'
    kept = cut_call(server, folder)
    server.set_data(checkpoint_bytes(kept // 2, seed=3))
    server.honour_if_range = False
    server.requests.clear()
    got = fetch.fetch_url(server.url, NAME, dest_dir=folder)
    assert server.kinds() == ['refused', 'whole']
    assert got.sha256 == sha256(server.data) and (folder / NAME).read_bytes() == server.data
    assert listing(folder) == PERMANENT


# ------------------------------------------------------------------------------------------------ bad bytes

def test_a_sha256_mismatch_leaves_nothing_behind(online, server, tmp_path):
    folder = tmp_path / 'downloads'
    with pytest.raises(fetch.CorruptDownload, match='sha256'):
        fetch.fetch_url(server.url, NAME, sha256='0' * 64, dest_dir=folder)
    assert listing(folder) == PERMANENT - {NAME}
    # also when the bytes were resumed from an earlier call: the kept part goes with them
    cut_call(server, folder)
    server.requests.clear()
    wrong = 'ffffffff' if not sha256(server.data).startswith('ffffffff') else '00000000'
    with pytest.raises(fetch.CorruptDownload, match='sha256'):
        fetch.fetch_url(server.url, NAME, sha256_prefix=wrong, dest_dir=folder)
    assert server.kinds() == ['range']
    assert listing(folder) == PERMANENT - {NAME}


def test_fetch_url_is_exported_for_scripts():
    import asmlp.hub
    assert asmlp.hub.fetch_url is fetch.fetch_url and 'fetch_url' in asmlp.hub.__all__
