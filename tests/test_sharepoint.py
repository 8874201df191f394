"""The official AS-MLP weights by code: OneDrive-for-Business share links through a loopback stand-in of SharePoint.

The stand-in behaves as public downloaders describe SharePoint (the sources cited in ``asmlp/hub/sharepoint.py``);
it was never checked against the live links: ``<link>?download=1`` answers 302 with a ``FedAuth`` cookie and
redirects to the file under ``/personal/<user>/...``, which is refused (403) without that cookie;
``/personal/<user>/_layouts/15/download.aspx?share=<token>`` is the second form; a tenant without anonymous links
answers 200 with an HTML sign-in page; closed accounts 403 / 404. Faults: a transfer cut half-way (resumed with
Range), a server that stalls. Checkpoints are tiny ones in the official AS-MLP layouts (ImageNet classifier
``{'model': ...}``, mmseg UperNet ``{'state_dict': ..., 'meta': ...}``), built by the helpers of test_hub.
"""
from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import secrets
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import torch

import asmlp
from asmlp.hub import fetch
from asmlp.hub.download import download_models, mirror_models
from asmlp.hub.pin import pin_downloads
from asmlp.hub.sharepoint import download_urls, is_share_link
from asmlp.hub.sources import WeightSource
import test_hub
from test_hub import TINY, official_imagenet_file, official_seg_file, same_weights

env, online = test_hub.env, test_hub.online  # test_hub's fixtures, by their names

USER = 'someone_example_edu'
TOKEN = 'EaBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789-abcdefgh'
PAGE = 'https://github.com/svip-lab/AS-MLP'
SIGN_IN = b'<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>Sign in</body></html>'


class SharePoint:
    """A loopback OneDrive-for-Business tenant serving one file behind a share link.

    ``mode``: ``ok``; ``signin`` (``download=1`` answers 200 with a sign-in page, ``download.aspx`` works);
    ``signin-all``, ``403``, ``404`` (both forms); ``cut`` (the first full transfer stops half-way; Range works);
    ``stall`` (headers, then nothing).
    """

    def __init__(self, data: bytes = b''):
        self.data, self.mode = data, 'ok'
        self.cookie = f'FedAuth={secrets.token_hex(16)}'
        self.requests: list[dict] = []
        self.cuts = 0
        sp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def send(self, code, body=b'', headers=()):
                self.send_response(code)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                if self.command != 'HEAD':
                    self.wfile.write(body)

            def do_HEAD(self):
                self.send(200 if self.path == '/' else 404)

            def do_GET(self):
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                sp.requests.append({'path': parts.path, 'query': parts.query, 'cookie': self.headers.get('Cookie'),
                                    'range': self.headers.get('Range')})
                file_path = f'/personal/{USER}/Documents/asmlp.pth'
                redirect = [('Location', file_path), ('Set-Cookie', f'{sp.cookie}; path=/; HttpOnly')]
                html = [('Content-Type', 'text/html; charset=utf-8')]
                if parts.path == f'/:u:/g/personal/{USER}/{TOKEN}' and query.get('download') == ['1']:
                    if sp.mode in ('signin', 'signin-all'):
                        return self.send(200, SIGN_IN, html)
                    if sp.mode in ('403', '404'):
                        return self.send(int(sp.mode), b'<html>gone</html>', html)
                    return self.send(302, b'', redirect)
                if parts.path == f'/personal/{USER}/_layouts/15/download.aspx' and query.get('share') == [TOKEN]:
                    if sp.mode == 'signin-all':
                        return self.send(200, SIGN_IN, html)
                    if sp.mode in ('403', '404'):
                        return self.send(int(sp.mode), b'<html>gone</html>', html)
                    return self.send(302, b'', redirect)
                if parts.path == file_path:
                    if self.headers.get('Cookie') != sp.cookie:
                        return self.send(403, b'<html>Access denied</html>', html)
                    return self.file()
                self.send(404, b'<html>not found</html>', html)

            def file(self):
                data, start = sp.data, 0
                wanted = self.headers.get('Range')
                if wanted:
                    start = int(wanted.split('=')[1].split('-')[0])
                    self.send_response(206)
                    self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
                else:
                    self.send_response(200)
                self.send_header('Content-Type', 'application/octet-stream')
                self.send_header('Content-Length', str(len(data) - start))
                self.end_headers()
                if sp.mode == 'stall':
                    time.sleep(3)
                    return
                if sp.mode == 'slow':  # 8 pieces, 0.4 s apart
                    step = -(-(len(data) - start) // 8)
                    for at in range(start, len(data), step):
                        self.wfile.write(data[at:at + step])
                        self.wfile.flush()
                        time.sleep(0.4)
                    return
                if sp.mode == 'cut' and not wanted:
                    sp.cuts += 1
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data[start:])

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.server = Server(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        self.link = f'{self.url}/:u:/g/personal/{USER}/{TOKEN}?e=AbCdEf'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sharepoint(env, online):
    sp = SharePoint()
    yield sp
    sp.close()


def share_source(sp: SharePoint, kind: str = 'ade20k', filename: str = 'tiny_seg.pth',
                 sha256: str = None) -> WeightSource:
    fmt = 'asmlp-mmseg-upernet' if kind == 'ade20k' else 'asmlp-imagenet'
    return WeightSource(type='sharepoint', url=sp.link, page=PAGE, filename=filename, format=fmt, kind=kind,
                        sha256=sha256)


def is_lock(path: Path) -> bool:
    """The permanent part of a folder that was written under locks (asmlp.hub.locks): ``.locks/`` and its empty
    ``*.lock`` files."""
    return path.name == '.locks' and path.is_dir() or (
        path.parent.name == '.locks' and path.suffix == '.lock' and path.stat().st_size == 0)


def nothing_half_written(env) -> None:
    downloads = env.tmp / 'cache' / 'downloads'
    leftovers = [p for p in downloads.rglob('*') if p.is_file() and not is_lock(p)] if downloads.exists() else []
    assert leftovers == [], leftovers
    assert [p for p in env.weights.rglob('*') if not is_lock(p)] == []


def official_file(path: Path, fmt: str, seed: int = 2):
    """(bytes, reference tensors) of an official-layout tiny checkpoint of ``fmt``."""
    if fmt == 'asmlp-imagenet':
        state = official_imagenet_file(path, seed)
        reference = {f'backbone.{k}': v for k, v in state.items() if not k.startswith(('norm.', 'head.'))}
    else:
        reference = official_seg_file(path, seed).state_dict()
    return path.read_bytes(), reference


# ------------------------------------------------------------------------------------------------ the link forms

def test_share_link_download_forms():
    link = ('https://shanghaitecheducn-my.sharepoint.com/:u:/g/personal/liandz_shanghaitech_edu_cn/'
            'Eb2lPJI2BshEjJxf9CmRkCUBnB63Wj25-FVVc6zJvgRg6w?e=dEQd5q')
    assert is_share_link(link)
    assert download_urls(link) == [
        'https://shanghaitecheducn-my.sharepoint.com/:u:/g/personal/liandz_shanghaitech_edu_cn/'
        'Eb2lPJI2BshEjJxf9CmRkCUBnB63Wj25-FVVc6zJvgRg6w?download=1',
        'https://shanghaitecheducn-my.sharepoint.com/personal/liandz_shanghaitech_edu_cn/_layouts/15/download.aspx'
        '?share=Eb2lPJI2BshEjJxf9CmRkCUBnB63Wj25-FVVc6zJvgRg6w']
    plain = 'https://download.openmmlab.com/mmsegmentation/v0.5/setr/x.pth'
    assert not is_share_link(plain) and download_urls(plain) == [plain]


# ------------------------------------------------------------------------------------------------ the handshake

@pytest.mark.parametrize('fmt', ['asmlp-mmseg-upernet', 'asmlp-imagenet'])
def test_cookie_handshake_gives_the_same_tensors_as_the_file_dropped_in_weights(env, sharepoint, fmt):
    kind = 'ade20k' if fmt == 'asmlp-mmseg-upernet' else 'imagenet-backbone'
    source = share_source(sharepoint, kind, filename=f'official_{kind}.pth')
    sharepoint.data, reference = official_file(env.tmp / 'src.pth', fmt)
    digest = hashlib.sha256(sharepoint.data).hexdigest()
    reports = []
    downloaded, status = asmlp.hub.load_pretrained(TINY, sources=[source], progress=reports.append)
    assert status.kind == kind and status.format == fmt and status.sha256 == digest
    assert status.source == sharepoint.link and f'sha256 {digest[:12]}…, recorded at its first download' in \
        status.message
    # the handshake: download=1 without a cookie, a 302 that sets FedAuth, the file fetched with it
    first, then = sharepoint.requests[0], sharepoint.requests[1]
    assert first['query'] == 'download=1' and first['cookie'] is None
    assert then['path'] == f'/personal/{USER}/Documents/asmlp.pth' and then['cookie'] == sharepoint.cookie
    with pytest.raises(urllib.error.HTTPError) as refused:  # the file is refused without the cookie
        urllib.request.urlopen(f'{sharepoint.url}/personal/{USER}/Documents/asmlp.pth', timeout=5)
    assert refused.value.code == 403
    # kept with its record; progress heard to the end
    cached = env.tmp / 'cache' / 'downloads' / source.filename
    assert cached.read_bytes() == sharepoint.data
    record = json.loads((cached.parent / f'{source.filename}.verified.json').read_text())
    assert record['sha256'] == digest and record['url'] == sharepoint.link and record['model'] == TINY
    assert reports[-1].finished and reports[-1].done == reports[-1].total == len(sharepoint.data)
    assert 'MB/s' in reports[-1].text() and source.filename in reports[-1].text()
    # the same file dropped in weights/ by hand converts to the same tensors
    shutil.rmtree(env.tmp / 'cache')
    (env.weights / source.filename).write_bytes(sharepoint.data)
    by_hand, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == kind and status.source.endswith(source.filename)
    assert same_weights(downloaded, by_hand)
    converted = downloaded.state_dict()
    assert all(torch.equal(converted[k], v) for k, v in reference.items())


def test_download_aspx_is_the_fallback_when_download_1_asks_for_a_login(env, sharepoint):
    sharepoint.mode = 'signin'
    sharepoint.data, reference = official_file(env.tmp / 'src.pth', 'asmlp-mmseg-upernet')
    model, status = asmlp.hub.load_pretrained(TINY, sources=[share_source(sharepoint)])
    assert status.kind == 'ade20k'
    paths = [r['path'] for r in sharepoint.requests]
    assert paths[:3] == [f'/:u:/g/personal/{USER}/{TOKEN}', f'/personal/{USER}/_layouts/15/download.aspx',
                         f'/personal/{USER}/Documents/asmlp.pth']
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())


@pytest.mark.parametrize('mode', ['signin-all', '403', '404'])
def test_a_refused_link_ends_in_one_line_naming_file_link_and_page(env, sharepoint, mode):
    sharepoint.mode = mode
    sharepoint.data, _ = official_file(env.tmp / 'src.pth', 'asmlp-mmseg-upernet')
    (env.tmp / 'src.pth').unlink()
    source = share_source(sharepoint)
    model, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'none' and isinstance(model, torch.nn.Module)
    (line,) = status.problems
    assert '\n' not in status.message and line in status.message
    assert source.filename in line and sharepoint.link in line and f'fetch it by hand from {PAGE}' in line
    assert ('HTML page' in line) if mode == 'signin-all' else (f'HTTP {mode}' in line)
    assert 'download.aspx' in line  # both forms were tried
    nothing_half_written(env)


def test_a_transfer_cut_half_way_is_resumed_with_range(env, sharepoint):
    sharepoint.mode = 'cut'
    sharepoint.data, reference = official_file(env.tmp / 'src.pth', 'asmlp-mmseg-upernet')
    model, status = asmlp.hub.load_pretrained(TINY, sources=[share_source(sharepoint)])
    assert status.kind == 'ade20k' and sharepoint.cuts == 1
    ranges = [r['range'] for r in sharepoint.requests if r['range']]
    assert ranges == [f'bytes={len(sharepoint.data) // 2}-']
    assert (env.tmp / 'cache' / 'downloads' / 'tiny_seg.pth').read_bytes() == sharepoint.data
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())


def test_a_stalled_server_fails_with_a_clear_message_not_a_hang(env, sharepoint, monkeypatch):
    monkeypatch.setenv('ASMLP_DOWNLOAD_TIMEOUT', '0.5')
    sharepoint.mode = 'stall'
    sharepoint.data, _ = official_file(env.tmp / 'src.pth', 'asmlp-mmseg-upernet')
    (env.tmp / 'src.pth').unlink()
    start = time.perf_counter()
    _, status = asmlp.hub.load_pretrained(TINY, sources=[share_source(sharepoint)])
    assert time.perf_counter() - start < 3
    assert status.kind == 'none' and 'stalled: no data for 0.5 s (ASMLP_DOWNLOAD_TIMEOUT)' in status.message
    assert f'fetch it by hand from {PAGE}' in status.message
    nothing_half_written(env)


def test_a_file_that_is_not_the_models_checkpoint_is_deleted_and_named(env, sharepoint):
    import timm
    wrong = timm.create_model('asmlp_tiny', embed_dim=16, depths=(1, 1, 1, 1), num_classes=10)  # other widths
    torch.save({'model': wrong.state_dict()}, env.tmp / 'wrong.pth')
    sharepoint.data = (env.tmp / 'wrong.pth').read_bytes()
    (env.tmp / 'wrong.pth').unlink()
    source = share_source(sharepoint, 'imagenet-backbone', filename='tiny_imagenet.pth')
    _, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    cached = env.tmp / 'cache' / 'downloads' / 'tiny_imagenet.pth'
    assert status.kind == 'none' and 'shape mismatch' in status.message and f'deleted {cached}' in status.message
    nothing_half_written(env)


# ------------------------------------------------------------------------------------------------ sha256 pinning

def test_pin_from_downloads_then_other_bytes_are_refused(env, sharepoint, tmp_path, capsys):
    sharepoint.data, _ = official_file(env.tmp / 'src.pth', 'asmlp-mmseg-upernet', seed=2)
    digest = hashlib.sha256(sharepoint.data).hexdigest()
    entry = json.loads(json.dumps(env.table[TINY]))
    entry['weights'] = [{'type': 'sharepoint', 'url': sharepoint.link, 'page': PAGE, 'filename': 'tiny_seg.pth',
                         'format': 'asmlp-mmseg-upernet', 'kind': 'ade20k', 'sha256': None}]
    env.table[TINY]['weights'] = entry['weights']
    zoo_copy = tmp_path / 'zoo.json'
    zoo_copy.write_text(json.dumps({TINY: entry}, indent=1))
    # nothing downloaded yet: nothing to pin
    (nothing,) = pin_downloads(zoo_copy)
    assert nothing.new is None and 'not downloaded' in nothing.error
    (_, _, status), = download_models([TINY])
    assert status.kind == 'ade20k'
    parser = argparse.ArgumentParser()
    asmlp.hub.register_cli(parser.add_subparsers(dest='command'))
    args = parser.parse_args(['pin', '--from-downloads', '--zoo', str(zoo_copy)])
    assert args.func(args) == 0
    assert digest in capsys.readouterr().out
    pinned = json.loads(zoo_copy.read_text())[TINY]['weights'][0]
    assert pinned['sha256'] == digest
    source = WeightSource.from_json(pinned)
    # the same bytes again: accepted, and the status says the zoo vouches for them
    shutil.rmtree(env.tmp / 'cache')
    _, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'ade20k' and 'matches the zoo' in status.message
    # other bytes behind the link (another valid checkpoint of the same model): refused, nothing kept
    shutil.rmtree(env.tmp / 'cache')
    sharepoint.data, _ = official_file(env.tmp / 'src.pth', 'asmlp-mmseg-upernet', seed=5)
    (env.tmp / 'src.pth').unlink()
    _, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'none' and f"is not the zoo's {digest[:12]}" in status.message
    nothing_half_written(env)


# ------------------------------------------------------------------------------------------------ the CLI

def run_cli(argv: list[str]) -> int:
    from asmlp.__main__ import build_parser
    args = build_parser().parse_args(argv)
    return args.func(args)


def test_download_url_model_writes_weights_and_refuses_another_models_file(env, sharepoint, capsys):
    sharepoint.data, reference = official_file(env.tmp / 'src.pth', 'asmlp-mmseg-upernet')
    (env.tmp / 'src.pth').unlink()
    assert run_cli(['download', sharepoint.link, '--model', TINY]) == 0
    assert f'wrote {env.weights / TINY / "model.safetensors"}' in capsys.readouterr().out
    model, status = asmlp.hub.load_pretrained(TINY, sources=[])
    assert status.kind == 'ade20k' and status.format == 'native' and status.source.endswith(f'{TINY}/')
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())
    config = json.loads((env.weights / TINY / 'config.json').read_text())
    assert config['source_sha256'] == hashlib.sha256(sharepoint.data).hexdigest()
    # the same file again: nothing to do (another file needs --force: test_resolver)
    assert run_cli(['download', sharepoint.link, '--model', TINY]) == 0
    assert 'nothing to do' in capsys.readouterr().out
    shutil.rmtree(env.weights / TINY)
    # a checkpoint of another model (a Swin-family zoo model here): refused, one line, nothing written or kept
    assert run_cli(['download', sharepoint.link, '--model', 'upernet_swin_nano']) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('download: ')]  # no bars
    assert len(errors) == 1 and 'is not a checkpoint of upernet_swin_nano' in errors[0] and 'AS-MLP' in errors[0]
    # a sign-in page instead of the file: refused too
    sharepoint.mode = 'signin-all'
    assert run_cli(['download', sharepoint.link, '--model', TINY]) == 1
    assert 'HTML page' in capsys.readouterr().err
    nothing_half_written(env)
    assert run_cli(['download', sharepoint.link]) == 1  # a URL needs --model
    assert '--model NAME' in capsys.readouterr().err


def test_download_names_fills_the_cache_and_mirror_publishes_it(env, sharepoint, monkeypatch, capsys):
    sharepoint.data, reference = official_file(env.tmp / 'src.pth', 'asmlp-mmseg-upernet')
    env.table[TINY]['weights'] = [{'type': 'sharepoint', 'url': sharepoint.link, 'page': PAGE,
                                   'filename': 'tiny_seg.pth', 'format': 'asmlp-mmseg-upernet', 'kind': 'ade20k'}]
    assert run_cli(['download', TINY]) == 0
    out = capsys.readouterr().out
    assert TINY in out and 'ade20k' in out and sharepoint.link in out
    assert (env.tmp / 'cache' / 'downloads' / 'tiny_seg.pth').read_bytes() == sharepoint.data
    # mirror: the cached download, converted and published where ASMLP_HUB_NAMESPACE=me looks
    calls = []
    api = SimpleNamespace(
        create_repo=lambda repo, **kw: calls.append(('create', repo, kw.get('exist_ok'))),
        upload_folder=lambda **kw: calls.append(('upload', kw['repo_id'], sorted(
            p.name for p in Path(kw['folder_path']).iterdir()))) or SimpleNamespace(commit_url='https://x/commit/1'))
    sharepoint.close()  # from the cache now
    (done,) = mirror_models([TINY], 'me', api=api)
    assert calls == [('create', f'me/{TINY}', True),
                     ('upload', f'me/{TINY}', ['README.md', 'config.json', 'model.safetensors'])]
    config = json.loads((done.folder / 'config.json').read_text())
    assert config == {'model': TINY, 'kind': 'ade20k', 'source_format': 'asmlp-mmseg-upernet',
                      'source_sha256': hashlib.sha256(sharepoint.data).hexdigest(), 'converter_version': 1}
    # what was uploaded loads strictly as the namespace's native folder would
    shutil.copytree(done.folder, env.weights / TINY)
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'ade20k' and all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())
    with pytest.raises(ValueError, match='namespace'):
        mirror_models([TINY], 'a/b', api=api)
    assert fetch.downloads_dir() == env.tmp / 'cache' / 'downloads'


# ------------------------------------------------------------------------------------------------ the app's engine

def test_the_app_downloads_before_the_time_budget_starts_and_shows_progress(env, sharepoint):
    from asmlp.service import Engine
    sharepoint.mode = 'slow'  # ~3.2 s of transfer
    sharepoint.data, reference = official_file(env.tmp / 'src.pth', 'asmlp-mmseg-upernet')
    env.table[TINY]['weights'] = [{'type': 'sharepoint', 'url': sharepoint.link, 'page': PAGE,
                                   'filename': 'tiny_seg.pth', 'format': 'asmlp-mmseg-upernet', 'kind': 'ade20k'}]
    engine = Engine(timeout=2.5)  # less than the download takes: the download must not count
    heard = []
    image = (torch.rand(48, 64, 3) * 255).to(torch.uint8).numpy()
    start = time.perf_counter()
    (result,) = engine.segment(image, [TINY], device='cpu', precision='fp32', short_side=48,
                               progress=lambda fraction, text: heard.append((fraction, text)))
    assert time.perf_counter() - start > engine.timeout  # the download (in this call) took longer than the budget
    assert result.status.kind == 'ade20k' and result.status.source == sharepoint.link
    downloads = [text for _, text in heard if 'tiny_seg.pth' in text]
    mb = f'{len(sharepoint.data) / 1e6:.1f}'
    assert downloads[-1].startswith(f'UperNet + AS-MLP (tiny test model): Downloaded tiny_seg.pth: {mb} / {mb} MB, ')
    assert downloads[-1].endswith(' MB/s') and 'ETA' in downloads[0]
    loaded = engine.get(TINY, torch.device('cpu')).model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.items())


def test_hub_downloads_report_progress_too(env, online, monkeypatch):
    from test_hub import COMMIT, FakeHub, hub_source, native_files, trained_tiny, write_native
    hub = FakeHub()
    try:
        write_native(env.tmp / 'converted', trained_tiny())
        files = native_files(env.tmp / 'converted')
        hub.add('org/tiny', COMMIT, files, refs={'main': COMMIT})
        monkeypatch.setenv('HF_ENDPOINT', hub.url)
        reports = []
        _, status = asmlp.hub.load_pretrained(TINY, sources=[hub_source('org/tiny')], progress=reports.append)
    finally:
        hub.close()
    assert status.kind == 'ade20k'
    done = [r for r in reports if r.filename == 'model.safetensors']
    assert done and done[-1].finished and done[-1].done == len(files['model.safetensors'])
