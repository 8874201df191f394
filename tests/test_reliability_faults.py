"""Faults, through the app: the Gradio app (``build_app``, the queue settings of ``app.py``) runs in this process
on a loopback port and is called with gradio_client, while a loopback origin server plays the Hugging Face Hub and
a download host. Each fault — Hub unreachable, a download cut half-way, a corrupt file in weights/, in the Hugging
Face cache or in the download cache, a read-only weights/ folder (and an unwritable cache), no disk space for a
download — must give a clear status in the compare panel, leave the other model working, and a retry must
succeed once the fault is gone. No network: every address is 127.0.0.1.

The faulty model is ``upernet_asmlp_nano`` (its zoo entry gets the sources under test); the healthy one is
``setr_pup_vit_nano`` with demo weights in the temporary weights/ folder.
"""
from __future__ import annotations

import builtins
import errno
import hashlib
import http.server
import json
import os
import re
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest
import torch

gradio_client = pytest.importorskip('gradio_client')
from gradio_client import Client, handle_file  # noqa: E402

import asmlp  # noqa: E402
from asmlp import zoo  # noqa: E402
from asmlp.convert import write_converted  # noqa: E402
from asmlp.hub import net  # noqa: E402
from asmlp.bench.app import launch_in_process  # noqa: E402
from asmlp.limits import Limits  # noqa: E402
from asmlp.engine import Engine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FAULTY, HEALTHY = 'upernet_asmlp_nano', 'setr_pup_vit_nano'
REPO_ID = 'asmlp-test/upernet_asmlp_nano'
COMMIT = 'a5' * 20
SEG_FILE = 'upernet_asmlp_nano_seg.pth'
EXAMPLE = str(REPO / 'assets' / 'examples' / 'coffee.jpg')

pytestmark = pytest.mark.skipif(FAULTY not in zoo._table() or HEALTHY not in zoo._table(),
                                reason='the nano demo models are not in the zoo')


# ----------------------------------------------------------------------------------------- the loopback origin

class Origin:
    """Hub file endpoints (``/{repo}/resolve/{rev}/{file}`` with the headers huggingface_hub reads) and plain files
    (``/files/{name}``); ``cut`` names files sent half-way (the full Content-Length announced, then the connection
    closed); :meth:`stop` / :meth:`start` take the server down and up again on the same port."""

    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.port = None
        self.server = None
        self.start()

    def start(self):
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def reply(self, code, data=b'', headers=(), body=True, name=None):
                self.send_response(code)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                if body and name in origin.cut:
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif body:
                    self.wfile.write(data)

            def answer(self, body):
                path = unquote(urlsplit(self.path).path)
                if path.startswith('/files/') and path[7:] in origin.files:
                    return self.reply(200, origin.files[path[7:]], body=body, name=path[7:])
                match = re.fullmatch(r'/([^/]+/[^/]+)/resolve/([^/]+)/(.+)', path)
                if not match or match.group(1) not in origin.repos:
                    return self.reply(404 if path != '/' else 200, b'origin',
                                      headers=[('X-Error-Code', 'RepoNotFound')] if match else [], body=body)
                files = origin.repos[match.group(1)]
                if match.group(3) not in files:
                    return self.reply(404, headers=[('X-Error-Code', 'EntryNotFound'), ('X-Repo-Commit', COMMIT)],
                                      body=body)
                content = files[match.group(3)]
                etag = hashlib.sha256(content).hexdigest()
                self.reply(200, content, [('X-Repo-Commit', COMMIT), ('ETag', f'"{etag}"')], body=body,
                           name=match.group(3))

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(('127.0.0.1', self.port or 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return f'http://127.0.0.1:{self.port}'


# ----------------------------------------------------------------------------------------------- fixtures, helpers

def trained(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = asmlp.create_segmenter(name)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_(0, 0.05)
    return model


def write_native(folder: Path, model, name: str, kind: str) -> Path:
    info = {'model': name, 'source_format': 'asmlp-mmseg-upernet', 'source_sha256': 'ab' * 32,
            'converter_version': 1, 'kind': kind}
    return write_converted(model, info, folder)


@pytest.fixture(scope='module')
def app(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp('faults')
    import huggingface_hub
    for key, value in dict(ASMLP_WEIGHTS_DIR=root / 'weights', ASMLP_CACHE_DIR=root / 'cache',
                           HF_HUB_CACHE=root / 'hf').items():
        mp.setenv(key, str(value))
    for key in ('HF_HUB_OFFLINE', 'ASMLP_OFFLINE', 'ASMLP_HUB_NAMESPACE', 'HF_HOME', 'ASMLP_NET_TTL'):
        mp.delenv(key, raising=False)
    mp.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)
    origin = Origin()
    mp.setenv('HF_ENDPOINT', origin.url)
    table = dict(zoo._table())
    mp.setattr(zoo, '_table', lambda: table)
    net.reset()

    faulty_model = trained(FAULTY, 1)
    native = root / 'native'
    write_native(native, faulty_model, FAULTY, 'ade20k')
    origin.repos[REPO_ID] = {n: (native / n).read_bytes() for n in ('config.json', 'model.safetensors')}
    seg = root / SEG_FILE
    torch.save({'state_dict': faulty_model.state_dict(), 'meta': {'iter': 1}}, seg)
    origin.files[SEG_FILE] = seg.read_bytes()

    engine = Engine(retry_after=0, limits=Limits(torch_threads=1))
    demo, url = launch_in_process(engine)
    client = Client(url, verbose=False)
    yield SimpleNamespace(root=root, origin=origin, table=table, engine=engine, client=client, native=native,
                          weights=root / 'weights', downloads=root / 'cache' / 'downloads', hf=root / 'hf')
    demo.close()
    engine.close()
    origin.stop()
    mp.undo()
    net.reset()


def sources(kind: str, origin: Origin) -> list[dict]:
    if kind == 'hub':
        return [{'type': 'hub', 'repo': REPO_ID, 'revision': 'main', 'filename': 'model.safetensors',
                 'format': 'native', 'kind': 'ade20k'}]
    return [{'type': 'url', 'url': f'{origin.url}/files/{SEG_FILE}', 'filename': SEG_FILE,
             'format': 'asmlp-mmseg-upernet', 'kind': 'ade20k'}]


@pytest.fixture
def world(app, monkeypatch):
    """A clean slate per test: empty weights/ but for the healthy model's demo folder, empty caches, no sources
    for the faulty model, a fresh engine cache and reachability cache, the origin up with nothing cut."""
    import shutil
    for folder in (app.weights, app.root / 'cache', app.hf):
        if folder.exists():
            for path in [folder, *folder.rglob('*')]:
                if not path.is_symlink():
                    path.chmod(0o755 if path.is_dir() else 0o644)
            shutil.rmtree(folder)
    write_native(app.weights / 'demo' / HEALTHY, trained(HEALTHY, 2), HEALTHY, 'demo')
    app.table[FAULTY] = {**app.table[FAULTY], 'weights': []}
    app.engine.clear()
    app.origin.cut.clear()
    net.reset()
    yield app
    net.reset()


def compare(app) -> dict:
    """The compare panel as a person sees it: per model title, its weights column and its notes."""
    status, masks, *_ = app.client.predict(handle_file(EXAMPLE), [FAULTY, HEALTHY], 'cpu', 'fp32', 128, 0.5,
                                           api_name='/compare')
    panel = {}
    for name in (FAULTY, HEALTHY):
        title = zoo.model_entry(name)['title']
        row = next(line for line in status.splitlines() if line.startswith(f'| **{title}** |'))
        notes = [line for line in status.splitlines() if line.startswith(f'- **{title}**:')]
        panel[name] = SimpleNamespace(weights=row.split(' | ')[1], notes=' '.join(notes))
    panel['masks'] = len(masks)
    panel['status'] = status
    return panel


def healthy_ok(panel):
    assert panel['masks'] == 2, panel['status']
    assert panel[HEALTHY].weights.startswith('demo weights'), panel['status']


FIGURES: dict[str, dict] = {}


def record(name, **figures):
    FIGURES[name] = figures
    out = REPO / 'test-output' / 'reliability'
    out.mkdir(parents=True, exist_ok=True)
    (out / 'faults.json').write_text(json.dumps(FIGURES, indent=1))


# ------------------------------------------------------------------------------------------------------- the faults

def test_hub_unreachable_then_back(world, monkeypatch):
    monkeypatch.setenv('ASMLP_NET_TTL', '1')  # the "unreachable" memory: short, so the test can see it expire
    world.table[FAULTY]['weights'] = sources('hub', world.origin)
    world.origin.stop()
    start = time.monotonic()
    down = compare(world)
    seconds = time.monotonic() - start
    assert down[FAULTY].weights.startswith('no weights — untrained') and 'could be reached' in down[FAULTY].weights
    assert 'refused' in down[FAULTY].notes and 'looked up again' in down[FAULTY].notes, down['status']
    healthy_ok(down)
    world.origin.start()
    time.sleep(1.2)
    up = compare(world)
    assert up[FAULTY].weights == f'ADE20K weights: {REPO_ID}@main (unpinned)', up['status']
    assert up[FAULTY].notes == ''
    healthy_ok(up)
    record('hub_unreachable', first_answer_s=round(seconds, 2), down=down[FAULTY].weights, up=up[FAULTY].weights)


def test_download_cut_half_way_then_complete(world):
    world.table[FAULTY]['weights'] = sources('url', world.origin)
    world.origin.cut.add(SEG_FILE)
    cut = compare(world)
    assert cut[FAULTY].weights.startswith('no weights — untrained'), cut['status']
    assert 'download failed' in cut[FAULTY].notes, cut['status']
    assert not (world.downloads / SEG_FILE).exists()  # no cut file under the file's name (a partial may stay, hidden,
    healthy_ok(cut)                                     # for the next call to resume)
    world.origin.cut.clear()
    whole = compare(world)
    digest = hashlib.sha256(world.origin.files[SEG_FILE]).hexdigest()
    assert whole[FAULTY].weights == (f'ADE20K weights: {world.origin.url}/files/{SEG_FILE} (sha256 {digest[:12]}…, '
                                     f'recorded at its first download)'), whole['status']
    assert (world.downloads / SEG_FILE).read_bytes() == world.origin.files[SEG_FILE]
    healthy_ok(whole)
    record('download_cut', cut=cut[FAULTY].notes, then=whole[FAULTY].weights)


def test_corrupt_file_in_weights_then_fixed(world):
    target = write_native(world.weights / FAULTY, trained(FAULTY, 1), FAULTY, 'ade20k')
    good = target.read_bytes()
    target.write_bytes(good[:len(good) // 2])
    broken = compare(world)
    assert 'unusable weights' in broken[FAULTY].weights and f'{FAULTY}/' in broken[FAULTY].weights, broken['status']
    healthy_ok(broken)
    target.write_bytes(good)
    fixed = compare(world)
    assert fixed[FAULTY].weights.startswith('ADE20K weights: ') and fixed[FAULTY].weights.endswith(f'{FAULTY}/')
    healthy_ok(fixed)
    record('corrupt_in_weights', broken=broken[FAULTY].weights, fixed=fixed[FAULTY].weights)


@pytest.mark.parametrize('cache', ['hf', 'downloads'])
def test_corrupt_file_in_a_cache_then_removed(world, cache):
    world.table[FAULTY]['weights'] = sources('hub' if cache == 'hf' else 'url', world.origin)
    first = compare(world)
    assert first[FAULTY].weights.startswith('ADE20K weights: '), first['status']
    if cache == 'hf':
        (cached,) = [p for p in world.hf.rglob('model.safetensors') if 'snapshots' in p.parts]
        blob = cached.resolve()
    else:
        blob = world.downloads / SEG_FILE
    blob.write_bytes(b'\0not what was downloaded' * 100)
    world.engine.clear()  # a restart, or the model evicted from the cache
    broken = compare(world)
    assert 'unusable weights' in broken[FAULTY].weights, broken['status']
    healthy_ok(broken)
    if cache == 'downloads':  # asmlp's own cache: the damaged download is deleted, and named
        assert not blob.exists() and f'deleted {blob}' in broken[FAULTY].weights + broken[FAULTY].notes
    blob.unlink(missing_ok=True)  # the fault gone: the damaged file removed
    again = compare(world)
    assert again[FAULTY].weights == first[FAULTY].weights, again['status']
    healthy_ok(again)
    record(f'corrupt_in_{cache}_cache', broken=broken[FAULTY].weights, then=again[FAULTY].weights)


class ReadOnly:
    """Makes folders read-only like a read-only mount: chmod a-w (effective for non-root users) and an audit hook
    that fails every write-mode open, rename, removal or mkdir below them with EROFS (effective for root too) and
    records the attempt."""
    roots: list[Path] = []
    attempts: list[tuple] = []
    installed = False
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    @classmethod
    def hook(cls, event, args):
        if not cls.roots or event not in ('open', 'os.rename', 'os.remove', 'os.rmdir', 'os.mkdir', 'os.truncate',
                                          'os.symlink', 'os.link', 'shutil.rmtree', 'shutil.move', 'shutil.copyfile'):
            return
        if event == 'open':
            path, mode, flags = args
            if not ((isinstance(mode, str) and any(c in mode for c in 'wax+')) or (flags or 0) & cls.WRITE_FLAGS):
                return
            paths = [path]
        else:
            paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        for path in paths:
            if isinstance(path, int):
                continue
            try:
                resolved = Path(os.fsdecode(path)).resolve()
            except (TypeError, ValueError):
                continue
            if any(resolved == r or r in resolved.parents for r in cls.roots):
                cls.attempts.append((event, str(resolved)))
                raise OSError(errno.EROFS, 'Read-only file system', os.fsdecode(path))

    def __init__(self, *folders: Path):
        self.folders = [Path(f).resolve() for f in folders]

    def __enter__(self):
        if not ReadOnly.installed:
            sys.addaudithook(ReadOnly.hook)
            ReadOnly.installed = True
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)
            for path in [folder, *folder.rglob('*')]:
                mode = path.stat().st_mode
                path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        ReadOnly.attempts = []
        ReadOnly.roots = self.folders
        return self

    def __exit__(self, *exc):
        ReadOnly.roots = []
        for folder in self.folders:
            for path in [folder, *folder.rglob('*')]:
                path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_read_only_weights_folder_and_cache(world):
    write_native(world.weights / FAULTY, trained(FAULTY, 1), FAULTY, 'ade20k')
    with ReadOnly(world.weights) as read_only:
        panel = compare(world)
    assert panel[FAULTY].weights.startswith('ADE20K weights: '), panel['status']
    healthy_ok(panel)
    assert read_only.attempts == []  # nothing in the app writes to weights/
    # an unwritable download cache: the download fails with a clear status, the other model works
    import shutil
    shutil.rmtree(world.weights / FAULTY)
    world.table[FAULTY]['weights'] = sources('url', world.origin)
    world.engine.clear()
    with ReadOnly(world.weights, world.root / 'cache') as read_only:
        blocked = compare(world)
    assert blocked[FAULTY].weights.startswith('no weights — untrained'), blocked['status']
    assert 'Read-only file system' in blocked[FAULTY].weights + blocked[FAULTY].notes, blocked['status']
    assert read_only.attempts and all(str(world.root / 'cache') in p for _, p in read_only.attempts)
    healthy_ok(blocked)
    writable = compare(world)
    assert writable[FAULTY].weights.startswith(f'ADE20K weights: {world.origin.url}/files/{SEG_FILE} (sha256 '), \
        writable['status']
    healthy_ok(writable)
    record('read_only', weights_folder=panel[FAULTY].weights, cache=blocked[FAULTY].weights + ' ' +
           blocked[FAULTY].notes, then=writable[FAULTY].weights)


def test_no_disk_space_for_a_download(world, monkeypatch):
    world.table[FAULTY]['weights'] = sources('url', world.origin)
    downloads = world.downloads.resolve()
    real_open = builtins.open

    class Full:
        """A file on a full disk: writes fail with ENOSPC once 64 kB are in."""

        def __init__(self, file):
            self.file, self.written = file, 0

        def write(self, data):
            if self.written + len(data) > 65536:
                raise OSError(errno.ENOSPC, 'No space left on device')
            self.written += len(data)
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def writing(mode: str) -> bool:
        return any(c in mode for c in 'wax+')

    def open_(file, mode='r', *args, **kwargs):
        opened = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and writing(mode) and Path(file).resolve().parent == downloads:
            return Full(opened)
        return opened

    real_fdopen = os.fdopen

    def fdopen_(fd, mode='r', *args, **kwargs):  # a file opened with os.open, then wrapped
        opened = real_fdopen(fd, mode, *args, **kwargs)
        try:
            path = Path(os.readlink(f'/proc/self/fd/{fd}'))
        except OSError:
            return opened
        return Full(opened) if writing(mode) and path.parent == downloads else opened

    monkeypatch.setattr(builtins, 'open', open_)
    monkeypatch.setattr(os, 'fdopen', fdopen_)
    full = compare(world)
    assert full[FAULTY].weights.startswith('no weights — untrained'), full['status']
    assert 'No space left on device' in full[FAULTY].notes, full['status']
    assert not (world.downloads / SEG_FILE).exists()  # nothing under the file's name
    healthy_ok(full)
    monkeypatch.setattr(builtins, 'open', real_open)  # space freed
    monkeypatch.setattr(os, 'fdopen', real_fdopen)
    again = compare(world)
    assert again[FAULTY].weights.startswith(f'ADE20K weights: {world.origin.url}/files/{SEG_FILE} (sha256 '), \
        again['status']
    healthy_ok(again)
    record('no_disk_space', full=full[FAULTY].notes, then=again[FAULTY].weights)


def test_a_request_over_its_time_budget_gets_a_clear_message_and_the_app_keeps_serving(world):
    from gradio_client.exceptions import AppError
    budget = world.engine.timeout
    world.engine.timeout = 0.0
    try:
        with pytest.raises(AppError, match='time budget of 0 s'):
            compare(world)
    finally:
        world.engine.timeout = budget
    assert world.engine.gate.snapshot()['running'] == 0
    healthy_ok(compare(world))
