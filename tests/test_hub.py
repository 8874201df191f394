"""Pretrained-weight resolution (asmlp.hub): zoo sources, local folders and files, the Hugging Face Hub through a
loopback server and a pre-filled cache, URL downloads, fast failure when the network is not there, ``pin``.

No test touches the real network: endpoints are 127.0.0.1 servers (answering, refusing, silent) or names under
``.invalid``. Models that must really load weights are a tiny zoo entry (AS-MLP with 8 channels) added to the zoo
table for the test.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import http.server
import json
import re
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import huggingface_hub
import pytest
import torch
from huggingface_hub.hf_api import GitRefInfo, GitRefs

import asmlp
from asmlp import zoo
from asmlp.convert import write_converted
from asmlp.hub import fetch, net
from asmlp.hub.pin import default_zoo_path, list_pins, pin_zoo
from asmlp.hub.sources import COMMIT_RE, WeightSource, validate_source, weight_sources

TINY = 'tiny_test_upernet_asmlp'
COMMIT = 'c0ffee' + '1' * 34
OTHER_COMMIT = 'beef' + '2' * 36


# ----------------------------------------------------------------------------------------------- fixtures, helpers

def tiny_entry(table: dict) -> dict:
    """An AS-MLP UperNet with 8 base channels (a few hundred kB of weights); the rest copied from AS-MLP-B."""
    base = table['upernet_asmlp_base']
    return {
        'family': 'AS-MLP', 'title': 'UperNet + AS-MLP (tiny test model)',
        'backbone': {'type': 'asmlp', 'name': 'asmlp_tiny',
                     'kwargs': {'shift_size': 5, 'embed_dim': 8, 'depths': [1, 1, 1, 1]}},
        'decode_head': {'type': 'UPerHead', 'kwargs': {'in_channels': [8, 16, 32, 64], 'channels': 16,
                                                       'pool_scales': [1, 2, 3, 6], 'num_classes': 150,
                                                       'dropout_ratio': 0.1}},
        'auxiliary_head': [{'type': 'FCNHead', 'kwargs': {'in_channels': 32, 'channels': 8, 'num_convs': 1,
                                                          'kernel_size': 3, 'concat_input': False, 'in_index': 2,
                                                          'num_classes': 150, 'dropout_ratio': 0.1}}],
        'inference': {'mode': 'whole'},
        'published': copy.deepcopy(base['published']),
        'weights': [
            {'type': 'manual', 'page': 'https://example.invalid/asmlp', 'filename': 'tiny_seg.pth',
             'format': 'asmlp-mmseg-upernet', 'kind': 'ade20k', 'license': 'MIT (svip-lab/AS-MLP LICENSE)'},
            {'type': 'manual', 'page': 'https://example.invalid/asmlp', 'filename': 'tiny_imagenet.pth',
             'format': 'asmlp-imagenet', 'kind': 'imagenet-backbone', 'license': 'MIT (svip-lab/AS-MLP LICENSE)'},
        ],
    }


@pytest.fixture
def env(monkeypatch, tmp_path):
    """Empty weights/, HF cache and download cache in tmp_path; no namespace; the tiny model in the zoo."""
    weights = tmp_path / 'weights'
    weights.mkdir()
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(weights))
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf'))
    for name in ('ASMLP_HUB_NAMESPACE', 'HF_ENDPOINT', 'ASMLP_OFFLINE', 'HF_HOME', 'ASMLP_NET_TTL',
                 'ASMLP_NET_TIMEOUT'):
        monkeypatch.delenv(name, raising=False)
    table = {**zoo._table(), TINY: tiny_entry(zoo._table())}
    monkeypatch.setattr(zoo, '_table', lambda: table)
    net.reset()
    yield SimpleNamespace(weights=weights, tmp=tmp_path, table=table)
    net.reset()


@pytest.fixture
def online(monkeypatch):
    """HF_HUB_OFFLINE unset, also in huggingface_hub's constants (read once at its import; conftest sets it)."""
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)


def trained_tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = asmlp.create_segmenter(TINY)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_()
    return model


def write_native(folder: Path, model: torch.nn.Module, kind: str = 'ade20k', name: str = TINY) -> Path:
    info = {'model': name, 'source_format': 'asmlp-mmseg-upernet', 'source_sha256': 'ab' * 32,
            'converter_version': 1, 'kind': kind}
    return write_converted(model, info, folder)


def same_weights(a: torch.nn.Module, b: torch.nn.Module, prefix: str = '') -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(prefix)]
    return bool(keys) and all(torch.equal(sa[k], sb[k]) for k in keys)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class SilentServer:
    """Accepts TCP connections (the kernel does, from the backlog) and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(64)
        self.url = f'http://127.0.0.1:{self.sock.getsockname()[1]}'

    def close(self):
        self.sock.close()


class FakeHub:
    """A loopback HTTP server with the Hub's file endpoints (HEAD/GET /{repo}/resolve/{revision}/{file}, the
    headers huggingface_hub reads: X-Repo-Commit, ETag, Content-Length; X-Error-Code on 404s) and plain files."""

    def __init__(self):
        self.repos: dict[str, dict] = {}     # repo -> {'refs': {ref: commit}, 'files': {commit: {name: bytes}}}
        self.plain: dict[str, bytes] = {}    # /files/<name>
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def reply(self, status, data=b'', headers=(), body=True):
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def answer(self, body):
                hub.requests.append((self.command, self.path))
                path = urlsplit(self.path).path
                if path.startswith('/files/') and path[len('/files/'):] in hub.plain:
                    return self.reply(200, hub.plain[path[len('/files/'):]], body=body)
                match = re.fullmatch(r'/([^/]+/[^/]+)/resolve/([^/]+)/(.+)', path)
                if not match:
                    return self.reply(404 if path != '/' else 200, b'fake hub', body=body)
                repo, revision, filename = match.group(1), unquote(match.group(2)), unquote(match.group(3))
                if repo not in hub.repos:
                    return self.reply(404, headers=[('X-Error-Code', 'RepoNotFound')], body=body)
                data = hub.repos[repo]
                commit = data['refs'].get(revision, revision if revision in data['files'] else None)
                if commit is None:
                    return self.reply(404, headers=[('X-Error-Code', 'RevisionNotFound')], body=body)
                files = data['files'][commit]
                if filename not in files:
                    return self.reply(404, headers=[('X-Error-Code', 'EntryNotFound'), ('X-Repo-Commit', commit)],
                                      body=body)
                content = files[filename]
                etag = hashlib.sha256(content).hexdigest()
                self.reply(200, content, [('X-Repo-Commit', commit), ('ETag', f'"{etag}"')], body=body)

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo: str, commit: str, files: dict[str, bytes], refs: dict[str, str] = None):
        entry = self.repos.setdefault(repo, {'refs': {}, 'files': {}})
        entry['files'][commit] = files
        entry['refs'].update(refs or {})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    yield hub
    hub.close()


def native_files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in ('config.json', 'model.safetensors')}


# ----------------------------------------------------------------------------------------------- the zoo's sources

def test_every_zoo_entry_has_valid_weight_sources():
    table = json.loads(default_zoo_path().read_text())
    for name, entry in table.items():
        assert isinstance(entry.get('weights'), list), name
        for data in entry['weights']:
            validate_source(data)
            # commits are written by `python -m asmlp pin` only: none is invented
            assert data.get('commit') is None or COMMIT_RE.fullmatch(data['commit']), (name, data)
            assert data['kind'] in ('ade20k', 'imagenet-backbone')


def test_zoo_weight_sources_say_where_each_model_comes_from():
    def first(name):
        return weight_sources(name)[0]

    tiny = weight_sources('upernet_swin_tiny')
    assert [(s.repo, s.revision, s.filename) for s in tiny if s.type == 'hub'] == [
        ('openmmlab/upernet-swin-tiny', 'refs/pr/1', 'model.safetensors'),  # safetensors first (PR ref)
        ('openmmlab/upernet-swin-tiny', 'main', 'pytorch_model.bin')]
    assert tiny[0].pin_text == 'unpinned (ref refs/pr/1)' and tiny[1].pin_text == 'unpinned (ref main)'
    assert tiny[-1].url == ('https://github.com/SwinTransformer/storage/releases/download/v1.0.1/'
                            'upernet_swin_tiny_patch4_window7_512x512.pth')
    assert tiny[-1].format == 'swin-official-upernet'
    assert first('upernet_swin_small').repo == 'openmmlab/upernet-swin-small'
    # the Hub's base/large are the window-12 ImageNet-22K models; the window-7 base has only the official release
    assert first('upernet_swin_base_w12_in22k').repo == 'openmmlab/upernet-swin-base'
    assert first('upernet_swin_large_w12_in22k').repo == 'openmmlab/upernet-swin-large'
    assert [s.type for s in weight_sources('upernet_swin_base')] == ['url']
    for name in ('setr_naive_vit_large', 'setr_pup_vit_large', 'setr_mla_vit_large'):
        (setr,) = weight_sources(name)
        assert setr.url.startswith('https://download.openmmlab.com/mmsegmentation/v0.5/setr/')
        assert setr.format == 'mmseg-setr' and setr.filename.endswith(f'-{setr.sha256_prefix}.pth')
    # the official OneDrive share links (README of svip-lab/AS-MLP and of svip-lab/AS-MLP-Semantic-Segmentation)
    share = 'https://shanghaitecheducn-my.sharepoint.com/:u:/g/personal/liandz_shanghaitech_edu_cn/'
    tokens = {'tiny': 'Eb2lPJI2BshEjJxf9CmRkCUBnB63Wj25-FVVc6zJvgRg6w?e=dEQd5q',
              'small': 'EVIbw8xHKk1Aq9MBQL-cRbIBVJA_hJE-HEVNf_GVgkw2iQ?e=QIIp2e',
              'base': 'EZVBFW_LKctLqgrnnINy88wBRtGFava9wp_65emsvVW2KQ?e=clNjuw'}
    for size in ('tiny', 'small', 'base'):
        backbone = [s for s in weight_sources(f'upernet_asmlp_{size}') if s.kind == 'imagenet-backbone']
        assert [(s.type, s.filename, s.page, s.url) for s in backbone] == [
            ('sharepoint', f'asmlp_{size}_patch4_shift5_224.pth', 'https://github.com/svip-lab/AS-MLP',
             share + tokens[size])]
    seg = first('upernet_asmlp_base')
    assert (seg.type, seg.format, seg.kind, seg.filename, seg.url) == (
        'sharepoint', 'asmlp-mmseg-upernet', 'ade20k', 'upernet_asmlp_base_patch4_shift5_512x512_160k_ade20k.pth',
        share + 'Eee6yxLZ27hAkk3yVAD6UtsB189avw7EFHN0cy59L9LOeA?e=Zc1ro0')
    assert seg.page == 'https://github.com/svip-lab/AS-MLP-Semantic-Segmentation'
    assert weight_sources('setr_pup_vit_small') == []


@pytest.mark.parametrize('bad', [
    {'type': 'hub', 'repo': 'a/b', 'revision': 'main', 'commit': 'abc', 'filename': 'f', 'format': 'native',
     'kind': 'ade20k'},
    {'type': 'url', 'url': 'https://x/y.pth', 'filename': 'z.pth', 'format': 'mmseg-setr', 'kind': 'ade20k'},
    {'type': 'manual', 'filename': 'f.pth', 'format': 'asmlp-imagenet', 'kind': 'imagenet-backbone'},
    {'type': 'hub', 'repo': 'a/b', 'revision': 'main', 'filename': 'f', 'format': 'native', 'kind': 'demo'},
])
def test_invalid_sources_are_rejected(bad):
    with pytest.raises(ValueError):
        validate_source(bad)


# ----------------------------------------------------------------------------------------------- local sources

def test_native_folder_loads_strictly_with_its_sha256(env):
    saved = trained_tiny()
    weights_file = write_native(env.weights / TINY, saved)
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'ade20k' and status.pretrained and status.format == 'native'
    assert status.sha256 == sha256(weights_file) and status.revision_pinned
    assert status.source.endswith(f'{TINY}/') and status.message.startswith('ADE20K weights: ')
    assert same_weights(model, saved) and not model.training
    # create_segmenter(pretrained=True) is the same, model only
    assert same_weights(asmlp.create_segmenter(TINY, pretrained=True), saved)


def test_native_folder_with_foreign_keys_is_refused_and_reported(env):
    from safetensors.torch import save_file
    write_native(env.weights / TINY, trained_tiny())
    state = {k: v.contiguous() for k, v in trained_tiny().state_dict().items()}
    state['decode_head.extra.weight'] = torch.zeros(3)
    save_file(state, str(env.weights / TINY / 'model.safetensors'))
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'none' and 'decode_head.extra.weight' in status.message


def test_corrupt_native_file_gives_none_with_the_reason(env):
    write_native(env.weights / TINY, trained_tiny())
    (env.weights / TINY / 'model.safetensors').write_bytes(b'\x00garbage' * 10)
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'none' and status.sha256 is None and status.source is None
    assert 'untrained' in status.message and 'model.safetensors' in status.message
    assert any('model.safetensors' in p for p in status.problems)
    assert isinstance(model, torch.nn.Module)


def test_corrupt_file_does_not_stop_the_other_sources(env):
    write_native(env.weights / TINY, trained_tiny())
    (env.weights / TINY / 'model.safetensors').write_bytes(b'not safetensors')
    demo = trained_tiny(seed=3)
    write_native(env.weights / 'demo' / TINY, demo, kind='demo')
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'demo' and not status.pretrained and same_weights(model, demo)
    assert 'demo' in status.message and any('model.safetensors' in p for p in status.problems)


def test_config_of_another_model_is_not_loaded(env):
    write_native(env.weights / TINY, trained_tiny(), name='upernet_asmlp_tiny')
    _, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'none' and "'upernet_asmlp_tiny'" in status.message


def test_demo_folder_must_say_demo(env):
    write_native(env.weights / 'demo' / TINY, trained_tiny(), kind='ade20k')
    _, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'none' and 'demo' in status.problems[0]


def test_nothing_anywhere_gives_the_untrained_model(env):
    model, status = asmlp.hub.load_pretrained(TINY)
    assert (status.kind, status.source, status.sha256, status.revision_pinned) == ('none', None, None, False)
    assert status.message.startswith('no weights — untrained, masks are meaningless')
    assert 'by hand from https://example.invalid/asmlp' in status.message  # where to get them
    assert isinstance(model, asmlp.models.segmenter.Segmenter) and not model.training
    with pytest.raises(ValueError, match='unknown model'):
        asmlp.hub.load_pretrained('no_such_model')


def test_native_imagenet_backbone_folder_says_head_untrained(env):
    saved = trained_tiny()
    write_native(env.weights / TINY, saved, kind='imagenet-backbone')
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'imagenet-backbone' and not status.pretrained
    assert status.message.startswith('ImageNet backbone only — head untrained')
    assert same_weights(model, saved, 'backbone.')


def official_imagenet_file(path: Path, seed: int = 1) -> dict:
    """An official-format AS-MLP ImageNet checkpoint (``{'model': classifier state_dict}``) of the tiny size."""
    import timm
    torch.manual_seed(seed)
    clf = timm.create_model('asmlp_tiny', embed_dim=8, depths=(1, 1, 1, 1), num_classes=10)
    state = clf.state_dict()
    torch.save({'model': state, 'epoch': 300}, path)
    return state


def official_seg_file(path: Path, seed: int = 2) -> torch.nn.Module:
    """An mmseg-style AS-MLP UperNet checkpoint (``{'state_dict': ..., 'meta': ...}``) of the tiny size."""
    model = trained_tiny(seed)
    torch.save({'state_dict': model.state_dict(), 'meta': {'iter': 160000}}, path)
    return model


def test_official_files_dropped_in_weights_are_converted_best_kind_first(env):
    state = official_imagenet_file(env.weights / 'tiny_imagenet.pth')
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'imagenet-backbone' and status.format == 'asmlp-imagenet'
    assert status.sha256 == sha256(env.weights / 'tiny_imagenet.pth')
    assert 'head untrained' in status.message and status.source.endswith('tiny_imagenet.pth')
    assert torch.equal(model.state_dict()['backbone.patch_embed.proj.weight'], state['patch_embed.proj.weight'])
    # an ADE20K file wins over the ImageNet one
    seg = official_seg_file(env.weights / 'tiny_seg.pth')
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'ade20k' and status.format == 'asmlp-mmseg-upernet' and same_weights(model, seg)
    # a corrupt ADE20K file: reported, and the ImageNet file is still used
    (env.weights / 'tiny_seg.pth').write_bytes(b'PK\x03\x04 truncated')
    _, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'imagenet-backbone' and any('tiny_seg.pth' in p for p in status.problems)


# ----------------------------------------------------------------------------------------------- the Hub

def hub_source(repo: str, commit: str = None, revision: str = 'main', filename='model.safetensors',
               fmt='native') -> WeightSource:
    return WeightSource(type='hub', format=fmt, kind='ade20k', repo=repo, revision=revision, commit=commit,
                        filename=filename)


def test_namespace_is_tried_before_the_zoo_repos(env, monkeypatch):
    calls = []

    def no_hub(repo, filename, revision='main', *, commit=None, progress=None):
        calls.append((repo, revision, filename))
        raise fetch.Unavailable('intercepted')

    def no_url(url, filename, *, sha256=None, sha256_prefix=None, progress=None):
        calls.append((url, None, filename))
        raise fetch.Unavailable('intercepted')

    monkeypatch.setattr(fetch, 'fetch_hub_file', no_hub)
    monkeypatch.setattr(fetch, 'fetch_url', no_url)
    monkeypatch.setattr(zoo, 'build_segmenter', lambda name: torch.nn.Linear(1, 1))  # the untrained build
    monkeypatch.setenv('ASMLP_HUB_NAMESPACE', 'someone')
    _, status = asmlp.hub.load_pretrained('upernet_swin_tiny')
    assert calls == [
        ('someone/upernet_swin_tiny', 'main', 'config.json'),  # small file first: no big download for nothing
        ('openmmlab/upernet-swin-tiny', 'refs/pr/1', 'model.safetensors'),
        ('openmmlab/upernet-swin-tiny', 'main', 'pytorch_model.bin'),
        ('https://github.com/SwinTransformer/storage/releases/download/v1.0.1/'
         'upernet_swin_tiny_patch4_window7_512x512.pth', None, 'upernet_swin_tiny_patch4_window7_512x512.pth')]
    assert status.kind == 'none' and len(status.problems) == 4
    calls.clear()
    monkeypatch.delenv('ASMLP_HUB_NAMESPACE')
    asmlp.hub.load_pretrained('upernet_swin_tiny')
    assert [c[0] for c in calls][0] == 'openmmlab/upernet-swin-tiny'


def test_hf_hub_download_through_a_loopback_hub_pinned_to_a_commit(env, online, fake_hub, monkeypatch):
    saved = trained_tiny()
    folder = env.tmp / 'converted'
    write_native(folder, saved)
    fake_hub.add('org/tiny', COMMIT, native_files(folder), refs={'main': COMMIT})
    monkeypatch.setenv('HF_ENDPOINT', fake_hub.url)
    source = hub_source('org/tiny', commit=COMMIT)
    model, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'ade20k' and status.revision_pinned and same_weights(model, saved)
    assert status.source == f'org/tiny@{COMMIT[:12]}' and status.message.endswith('(pinned, ref main)')
    assert status.sha256 == sha256(folder / 'model.safetensors')
    assert ('GET', f'/org/tiny/resolve/{COMMIT}/model.safetensors') in fake_hub.requests
    snapshot = Path(env.tmp / 'hf' / 'models--org--tiny' / 'snapshots' / COMMIT)
    assert (snapshot / 'model.safetensors').read_bytes() == (folder / 'model.safetensors').read_bytes()
    # a pinned commit in the cache is served without any request, even with the server gone
    fake_hub.close()
    fake_hub.requests.clear()
    model, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'ade20k' and same_weights(model, saved) and fake_hub.requests == []


def test_namespace_repo_by_ref_is_unpinned_and_then_cached(env, online, fake_hub, monkeypatch):
    saved = trained_tiny()
    write_native(env.tmp / 'converted', saved)
    fake_hub.add(f'me/{TINY}', OTHER_COMMIT, native_files(env.tmp / 'converted'), refs={'main': OTHER_COMMIT})
    monkeypatch.setenv('HF_ENDPOINT', fake_hub.url)
    monkeypatch.setenv('ASMLP_HUB_NAMESPACE', 'me')
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'ade20k' and same_weights(model, saved)
    assert status.message == f'ADE20K weights: me/{TINY}@main (unpinned)' and not status.revision_pinned
    # the server goes away: the probe fails, huggingface_hub's cache (refs/main) answers
    fake_hub.close()
    net.reset()
    start = time.perf_counter()
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'ade20k' and same_weights(model, saved) and time.perf_counter() - start < 5


def test_foreign_format_from_the_hub_is_converted(env, online, fake_hub, monkeypatch):
    seg = official_seg_file(env.tmp / 'pytorch_model.bin')
    fake_hub.add('org/seg', COMMIT, {'pytorch_model.bin': (env.tmp / 'pytorch_model.bin').read_bytes()},
                 refs={'main': COMMIT})
    monkeypatch.setenv('HF_ENDPOINT', fake_hub.url)
    source = hub_source('org/seg', filename='pytorch_model.bin', fmt='asmlp-mmseg-upernet')
    model, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'ade20k' and status.format == 'asmlp-mmseg-upernet' and same_weights(model, seg)
    assert status.sha256 == sha256(env.tmp / 'pytorch_model.bin')
    # a file the repo does not have: reported, not raised
    _, status = asmlp.hub.load_pretrained(TINY, sources=[hub_source('org/seg', filename='nope.safetensors',
                                                                    fmt='asmlp-mmseg-upernet')])
    assert status.kind == 'none' and 'not on the Hub' in status.problems[0]


def test_prefilled_hf_cache_is_found_offline(env, monkeypatch):
    saved = trained_tiny()
    write_native(env.tmp / 'converted', saved)
    repo_dir = env.tmp / 'hf' / f'models--me--{TINY}'
    (repo_dir / 'refs').mkdir(parents=True)
    (repo_dir / 'refs' / 'main').write_text(COMMIT)
    snapshot = repo_dir / 'snapshots' / COMMIT
    snapshot.mkdir(parents=True)
    for name, data in native_files(env.tmp / 'converted').items():
        (snapshot / name).write_bytes(data)
    monkeypatch.setenv('ASMLP_HUB_NAMESPACE', 'me')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'ade20k' and same_weights(model, saved) and status.source == f'me/{TINY}@main'
    # download=False also reads the cache
    _, status = asmlp.hub.load_pretrained(TINY, download=False)
    assert status.kind == 'ade20k'


# ----------------------------------------------------------------------------------------------- URLs

def test_url_download_is_checked_cached_and_converted(env, online, fake_hub):
    seg = official_seg_file(env.tmp / 'seg-src.pth')
    data = (env.tmp / 'seg-src.pth').read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    fake_hub.plain[f'tiny_seg-{digest[:8]}.pth'] = data
    name = f'tiny_seg-{digest[:8]}.pth'
    source = WeightSource(type='url', format='asmlp-mmseg-upernet', kind='ade20k', url=f'{fake_hub.url}/files/{name}',
                          filename=name, sha256_prefix=digest[:8])
    model, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'ade20k' and status.source == source.url and status.sha256 == digest
    assert same_weights(model, seg) and (env.tmp / 'cache' / 'downloads' / name).is_file()
    fake_hub.close()  # later calls use the download cache
    _, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'ade20k'


def test_url_download_with_the_wrong_sha256_is_refused(env, online, fake_hub):
    fake_hub.plain['x-00000000.pth'] = b'PK\x03\x04 starts like a checkpoint, but is not the file'
    source = WeightSource(type='url', format='mmseg-setr', kind='ade20k', url=f'{fake_hub.url}/files/x-00000000.pth',
                          filename='x-00000000.pth', sha256_prefix='00000000')
    _, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'none' and 'sha256' in status.message
    assert not (env.tmp / 'cache' / 'downloads' / 'x-00000000.pth').exists()
    # a file dropped in weights/ under the official name is checked the same way
    official_seg_file(env.weights / 'x-00000000.pth')
    _, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'none' and 'not the file it is named after' in status.message


def test_url_needs_no_network_when_offline(env, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    probes = count_probes(monkeypatch)
    source = WeightSource(type='url', format='mmseg-setr', kind='ade20k', url='https://example.invalid/a.pth',
                          filename='a.pth')
    _, status = asmlp.hub.load_pretrained(TINY, sources=[source])
    assert status.kind == 'none' and probes == [] and 'offline' in status.problems[0]


# ----------------------------------------------------------------------------------------------- faults are fast

def count_probes(monkeypatch) -> list:
    probes = []
    real = net._probe

    def counting(*args, **kwargs):
        probes.append(args[:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(net, '_probe', counting)
    return probes


def test_negative_cache_expires(env, monkeypatch):
    probes = count_probes(monkeypatch)
    url = f'http://127.0.0.1:{closed_port()}'
    first = net.check(url)
    assert not first.ok and 'refused' in first.reason and not first.cached
    assert net.check(url).cached and len(probes) == 1
    monkeypatch.setenv('ASMLP_NET_TTL', '0.05')
    net.reset()
    net.check(url)
    time.sleep(0.1)
    assert not net.check(url).cached and len(probes) == 3


def test_a_hanging_dns_resolver_is_cut_at_the_probe_deadline(env, monkeypatch):
    def slow_getaddrinfo(*args, **kwargs):
        time.sleep(3)
        raise socket.gaierror(-2, 'Name or service not known')

    monkeypatch.setattr(socket, 'getaddrinfo', slow_getaddrinfo)
    monkeypatch.setenv('ASMLP_NET_TIMEOUT', '0.5')
    start = time.perf_counter()
    result = net.check('https://huggingface.co')
    assert not result.ok and 'did not answer within 0.5 s' in result.reason
    assert time.perf_counter() - start < 1.5


NETWORK_MODELS = ['upernet_swin_tiny', 'upernet_swin_small', 'upernet_swin_base', 'upernet_swin_base_w12_in22k',
                  'upernet_swin_large_w12_in22k', 'setr_naive_vit_large', 'setr_pup_vit_large', 'setr_mla_vit_large',
                  'upernet_asmlp_tiny']


def _moved(source: WeightSource, origin: str) -> WeightSource:
    if source.type not in ('url', 'sharepoint'):
        return source
    path = urlsplit(source.url).path
    return dataclasses.replace(source, url=origin + path)


@pytest.mark.parametrize('fault', ['refused', 'silent', 'dns'])
def test_unreachable_hub_and_urls_fail_fast_without_hf_hub_offline(env, online, monkeypatch, fault):
    """Every zoo model with network sources, Hub endpoint and official URLs made unreachable; HF_HUB_OFFLINE unset.

    Models are built on the meta device here: the timings are those of resolution (the untrained model's build
    time is the model's, not the network's)."""
    servers = []
    if fault == 'refused':
        hub, files = f'http://127.0.0.1:{closed_port()}', f'http://127.0.0.1:{closed_port()}'
    elif fault == 'silent':
        servers = [SilentServer(), SilentServer()]
        hub, files = servers[0].url, servers[1].url
    else:
        hub, files = 'http://hub.nonexistent.invalid', 'http://files.nonexistent.invalid'
    monkeypatch.setenv('HF_ENDPOINT', hub)
    monkeypatch.setenv('ASMLP_HUB_NAMESPACE', 'someone')  # the namespace is tried too

    build_seconds = []
    real_build = zoo.build_segmenter

    def meta_build(name):
        start = time.perf_counter()
        with torch.device('meta'):
            model = real_build(name)
        build_seconds.append(time.perf_counter() - start)
        return model

    monkeypatch.setattr(zoo, 'build_segmenter', meta_build)
    probes = count_probes(monkeypatch)
    timings = {}
    # first calls start from an empty reachability cache ("cold"), except where a silent server would make that
    # cost a probe timeout per model: there the other models' first calls reuse the cache like an app would
    cold = set(NETWORK_MODELS) if fault != 'silent' else {'upernet_swin_tiny', 'setr_pup_vit_large',
                                                           'upernet_asmlp_tiny'}
    try:
        for name in NETWORK_MODELS:
            sources = [_moved(s, files) for s in weight_sources(name)]
            if name in cold:
                net.reset()
            for call in (1, 2):
                before = len(probes)
                build_seconds.clear()
                start = time.perf_counter()
                _, status = asmlp.hub.load_pretrained(name, sources=sources)
                seconds = time.perf_counter() - start
                timings[name, call] = seconds
                timings[name, call, 'net'] = seconds - sum(build_seconds)  # without the (meta) model build
                assert status.kind == 'none', (name, status)
                assert seconds < 5, (fault, name, call, seconds)
                if call == 2:
                    assert len(probes) == before, 'the second call must not probe again (negative cache)'
                elif name in cold:
                    assert 1 <= len(probes) - before <= 2  # the Hub endpoint and/or the file host, once each
                reason = {'refused': 'refused', 'silent': 'did not answer', 'dns': 'cannot resolve'}[fault]
                assert all(reason in p for p in status.problems), status.problems
    finally:
        for server in servers:
            server.close()
    print(f'\nfault={fault}: load_pretrained seconds, first call (* = empty reachability cache) / second call; '
          f'in brackets without the meta-device model build')
    for name in NETWORK_MODELS:
        first, second = (f'{timings[name, c]:6.3f} ({timings[name, c, "net"]:6.3f})' for c in (1, 2))
        print(f'  {name:<30} {first}{"*" if name in cold else " "} {second}')
    if fault == 'silent':  # both origins probed in parallel: one probe timeout, then nothing
        for name in ('upernet_swin_tiny', 'setr_pup_vit_large'):
            # (the second call's network part: the meta-device build alone takes 0.2-0.6 s on a loaded machine)
            assert 1.5 < timings[name, 1] < 4 and timings[name, 2, 'net'] < timings[name, 1, 'net'] / 4


def test_silent_hub_end_to_end_with_the_real_model_build(env, online, monkeypatch):
    server = SilentServer()
    probes = count_probes(monkeypatch)
    builds = []
    real_build = zoo.build_segmenter

    def timed_build(name):
        start = time.perf_counter()
        model = real_build(name)
        builds.append(time.perf_counter() - start)
        return model

    monkeypatch.setattr(zoo, 'build_segmenter', timed_build)
    try:
        monkeypatch.setenv('HF_ENDPOINT', server.url)
        sources = [s for s in weight_sources('upernet_swin_tiny') if s.type == 'hub']
        start = time.perf_counter()
        model, status = asmlp.hub.load_pretrained('upernet_swin_tiny', sources=sources)
        first = time.perf_counter() - start
        start = time.perf_counter()
        asmlp.hub.load_pretrained('upernet_swin_tiny', sources=sources)
        second = time.perf_counter() - start
    finally:
        server.close()
    print(f'\nupernet_swin_tiny, silent Hub, real CPU build: first {first:.3f} s (build {builds[0]:.3f}), '
          f'second {second:.3f} s (build {builds[1]:.3f})')
    assert status.kind == 'none' and sum(p.numel() for p in model.parameters()) > 50e6
    assert len(probes) == 1  # one probe, then the negative cache
    assert first - builds[0] < net.probe_timeout() + 1 and second - builds[1] < 0.5


def test_hf_hub_offline_is_honoured_without_any_probe(env, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_ENDPOINT', 'http://hub.nonexistent.invalid')
    monkeypatch.setenv('ASMLP_HUB_NAMESPACE', 'someone')
    probes = count_probes(monkeypatch)
    monkeypatch.setattr(zoo, 'build_segmenter', lambda name: torch.nn.Linear(1, 1))  # the untrained build
    _, status = asmlp.hub.load_pretrained('upernet_swin_tiny')
    assert status.kind == 'none' and probes == []
    assert all('offline' in p for p in status.problems)


# ----------------------------------------------------------------------------------------------- pin

@pytest.fixture
def answering_endpoint(fake_hub, monkeypatch):
    monkeypatch.setenv('HF_ENDPOINT', fake_hub.url)  # answers the probe; the API itself is intercepted
    return fake_hub.url


def fake_refs(calls):
    shas = {'main': '1' * 40, 'refs/pr/1': '2' * 40}

    def list_repo_refs(self, repo_id, *, repo_type=None, include_pull_requests=False, token=None):
        calls.append((self.endpoint, repo_id, include_pull_requests))
        if repo_id == 'openmmlab/upernet-swin-large':
            raise huggingface_hub.errors.RepositoryNotFoundError('404 for test')
        sha = {k: v.replace('1', str(len(calls) % 10)) for k, v in shas.items()}  # a different commit per repo
        return GitRefs(branches=[GitRefInfo('main', 'refs/heads/main', sha['main'])], converts=[], tags=[],
                       pull_requests=[GitRefInfo('refs/pr/1', 'refs/pr/1', sha['refs/pr/1'])]
                       if include_pull_requests else None)
    return list_repo_refs


def test_pin_writes_commit_shas_into_the_zoo(env, online, answering_endpoint, monkeypatch, tmp_path, capsys):
    zoo_copy = tmp_path / 'zoo.json'
    original = default_zoo_path().read_text()
    zoo_copy.write_text(original)
    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, 'list_repo_refs', fake_refs(calls))
    parser = argparse.ArgumentParser()
    asmlp.hub.register_cli(parser.add_subparsers(dest='command'))
    args = parser.parse_args(['pin', '--zoo', str(zoo_copy), '--models', 'upernet_swin_tiny', 'upernet_swin_small',
                              'upernet_swin_large_w12_in22k', 'setr_pup_vit_large'])
    assert args.func(args) == 1  # swin-large's repo "does not exist": reported, the others still pinned
    out = capsys.readouterr().out
    assert 'FAILED' in out and 'openmmlab/upernet-swin-large' in out
    assert {c[1] for c in calls} == {'openmmlab/upernet-swin-tiny', 'openmmlab/upernet-swin-small',
                                     'openmmlab/upernet-swin-large'}  # one call per repo
    assert all(c[0] == answering_endpoint and c[2] for c in calls)
    pinned = json.loads(zoo_copy.read_text())
    tiny_pr, tiny_main, _ = pinned['upernet_swin_tiny']['weights']
    assert tiny_pr['revision'] == 'refs/pr/1' and COMMIT_RE.fullmatch(tiny_pr['commit'])
    assert tiny_main['commit'] != tiny_pr['commit'] and COMMIT_RE.fullmatch(tiny_main['commit'])
    assert all(s['commit'] is None for s in pinned['upernet_swin_large_w12_in22k']['weights'])
    tiny_pr = copy.deepcopy(tiny_pr)
    # nothing else changed: same entries, same order, same layout
    for entry in pinned.values():
        for s in entry['weights']:
            if s['type'] == 'hub':
                s['commit'] = None
    assert json.dumps(pinned, indent=1, ensure_ascii=False) == original
    # a pinned source resolves by its commit and says so
    source = WeightSource.from_json(tiny_pr)
    assert source.pinned and source.hub_revision == tiny_pr['commit']
    assert source.pin_text == f'pinned {tiny_pr["commit"][:12]} (ref refs/pr/1)'
    lines = list_pins(zoo_copy, ['upernet_swin_tiny'])
    assert 'pinned' in lines[0] and 'unpinned' not in lines[0] and 'download' in lines[2]


def test_pin_dry_run_and_offline(env, online, answering_endpoint, monkeypatch, tmp_path):
    zoo_copy = tmp_path / 'zoo.json'
    zoo_copy.write_text(default_zoo_path().read_text())
    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, 'list_repo_refs', fake_refs(calls))
    results = pin_zoo(zoo_copy, models=['upernet_swin_small'], dry_run=True)
    assert [r.changed for r in results] == [True, True] and zoo_copy.read_text() == default_zoo_path().read_text()
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(asmlp.hub.pin.PinError, match='HF_HUB_OFFLINE'):
        pin_zoo(zoo_copy)
