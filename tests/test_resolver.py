"""The weights resolver's parts: finding files apart from loading them (asmlp.hub.locate), one resolver for every
kind of model (asmlp.hub.kinds / resolve: a third kind plugs in), what is on disk (weights_on_disk), and the
``download`` command's fixes (every source, a failed best file, the same URL twice).

Models are test_hub's tiny AS-MLP UperNet; servers are loopback ones (test_hub's FakeHub); nothing touches the
real network.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

import asmlp
from asmlp.hub import kinds, records
from asmlp.hub.locate import Plan, Search
from asmlp.hub.resolve import resolve
from asmlp.hub.sources import WeightSource, weight_sources
import test_hub
from test_hub import (COMMIT, TINY, native_files, official_imagenet_file, official_seg_file, same_weights, trained_tiny,
                      write_native)

REPO = Path(__file__).resolve().parent.parent
env, online, fake_hub = test_hub.env, test_hub.online, test_hub.fake_hub  # test_hub's fixtures, by their names


def run_cli(argv: list[str]) -> int:
    from asmlp.__main__ import build_parser
    args = build_parser().parse_args(argv)
    return args.func(args)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ finding

def test_search_yields_every_file_in_the_resolvers_order_without_loading(env):
    """weights/<name>/, the official files dropped in weights/ (ADE20K before ImageNet), weights/demo/<name>/; a file
    that would not load (garbage bytes) is still found: finding reads no tensor, imports no torch."""
    write_native(env.weights / TINY, trained_tiny(), kind='imagenet-backbone')
    (env.weights / 'tiny_seg.pth').write_bytes(b'PK\x03\x04 not a checkpoint')
    official_imagenet_file(env.weights / 'tiny_imagenet.pth')
    write_native(env.weights / 'demo' / TINY, trained_tiny(), kind='demo')
    write_native(env.tmp / 'other', trained_tiny(), name='upernet_asmlp_tiny')  # a folder of another model
    code = f'''
import json, sys
from asmlp import zoo
from asmlp.hub.locate import Search
from asmlp.hub.sources import WeightSource
entry = json.loads(sys.argv[1])
zoo._table = lambda: {{**zoo._table.__wrapped__(), {TINY!r}: entry}}
search = Search({TINY!r}, [WeightSource.from_json(s) for s in entry['weights']], download=False)
found = [(str(f.path), f.display, f.kind, f.format, f.config is not None) for f in search]
print(json.dumps({{'found': found, 'problems': [p.text for p in search.problems], 'torch': 'torch' in sys.modules}}))
'''
    out = subprocess.run([sys.executable, '-c', code, json.dumps(env.table[TINY])], capture_output=True, text=True,
                         check=True, timeout=120, env=dict(os.environ))
    result = json.loads(out.stdout)
    assert not result['torch']  # nothing was loaded
    assert [(Path(p).relative_to(env.weights).as_posix(), kind, fmt, native)
            for p, _, kind, fmt, native in result['found']] == [
        (f'{TINY}/model.safetensors', 'imagenet-backbone', 'native', True),
        ('tiny_seg.pth', 'ade20k', 'asmlp-mmseg-upernet', False),
        ('tiny_imagenet.pth', 'imagenet-backbone', 'asmlp-imagenet', False),
        (f'demo/{TINY}/model.safetensors', 'demo', 'native', True)]
    assert result['found'][0][1].endswith(f'{TINY}/') and result['problems'] == []
    # the resolver tries them in that order: the garbage ADE20K file fails, the next one loads
    (env.weights / TINY / 'config.json').unlink()
    (env.weights / TINY / 'model.safetensors').unlink()
    model, status = asmlp.hub.load_pretrained(TINY)
    assert status.kind == 'imagenet-backbone' and status.source.endswith('tiny_imagenet.pth')
    assert [p for p in status.problems if 'tiny_seg.pth' in p]


def test_problems_are_collected_as_records(env, monkeypatch):
    """Unreachable (offline) and unusable (a config.json of another model) problems, in the order met."""
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('ASMLP_HUB_NAMESPACE', 'me')
    write_native(env.weights / TINY, trained_tiny(), name='upernet_asmlp_tiny')
    url = WeightSource(type='url', format='asmlp-mmseg-upernet', kind='ade20k', url='https://example.invalid/s.pth',
                       filename='s.pth')
    search = Search(TINY, [url])
    assert list(search) == []
    (folder, namespace, download) = search.problems
    assert folder.unusable and "'upernet_asmlp_tiny'" in folder.text and folder.kind == 'ade20k'
    assert not namespace.unusable and f'me/{TINY}' in namespace.text and 'offline' in namespace.text
    assert not download.unusable and not download.by_hand and 'offline' in download.text


# ------------------------------------------------------------------------------------------------ a third kind

class Toy(torch.nn.Module):
    """A stand-in for a third kind of model (the COCO detectors): one linear layer."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(4, 2)


def load_toy(name, located, options):
    model = Toy()
    model.load_state_dict(safetensors.torch.load_file(str(located.path)), strict=True)
    return kinds.Loaded(model, 'coco', located.format)


@pytest.fixture
def toy_kind(env):
    source = WeightSource(type='manual', format='native', kind='coco', filename='toy_det.safetensors',
                          page='https://example.invalid/toy')
    kind = kinds.register_kind(kinds.ModelKind(
        name='toy-detector', names=lambda: ['toy_det'], check=lambda name: None, sources=lambda name: [source],
        load=load_toy, build=lambda name, options: Toy(), untrained='no weights — untrained, boxes are meaningless',
        plan=Plan(passes=(('coco',),), folder=False, namespace=False, demo=False), rank=('coco',)))
    yield kind, source
    kinds.unregister_kind(kind.name)


def test_a_third_kind_of_model_uses_the_same_resolver(env, toy_kind):
    kind, source = toy_kind
    first = resolve('toy-detector', 'toy_det')
    again = resolve(kind, 'toy_det')
    assert first.status.kind == 'none' and first.status.message == (
        'no weights — untrained, boxes are meaningless (download toy_det.safetensors by hand from '
        f'https://example.invalid/toy into {env.weights}/)')
    assert torch.equal(first.model.head.weight, again.model.head.weight)  # the untrained model is seeded
    assert asmlp.hub.weights_on_disk('toy_det') is None
    trained = Toy()
    path = env.weights / 'toy_det.safetensors'
    safetensors.torch.save_file(trained.state_dict(), str(path))
    got = resolve(kind, 'toy_det')
    assert (got.status.kind, got.status.sha256, got.status.format) == ('coco', sha256(path), 'native')
    assert got.status.message == f'COCO weights: {path}' and not got.model.training
    assert torch.equal(got.model.head.weight, trained.head.weight)
    assert asmlp.hub.weights_on_disk('toy_det') == 'coco'
    # the zoo's sha256 is checked for every kind, before the loader runs
    pinned = dataclasses.replace(source, sha256='0' * 64)
    got = resolve(kind, 'toy_det', sources=[pinned])
    assert got.status.kind == 'none' and "is not the zoo's 000000000000" in got.status.message
    # a file the loader refuses: named, the untrained model instead
    safetensors.torch.save_file({'head.weight': torch.zeros(3, 4)}, str(path))
    got = resolve(kind, 'toy_det')
    assert got.status.kind == 'none' and got.problems[0].unusable
    assert f'unusable weights: {path}: Error(s) in loading state_dict for Toy' in got.status.message


# ------------------------------------------------------------------------------------------------ on disk

def test_weights_on_disk_says_the_kind_for_segmenters_and_classifiers(env, monkeypatch):
    from test_classifiers import fill_hf_cache
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    assert asmlp.hub.weights_on_disk(TINY) is None and asmlp.hub.weights_on_disk('deit_small') is None
    official_imagenet_file(env.weights / 'tiny_imagenet.pth')
    assert asmlp.hub.weights_on_disk(TINY) == 'imagenet-backbone'
    write_native(env.weights / 'demo' / TINY, trained_tiny(), kind='demo')
    assert asmlp.hub.weights_on_disk(TINY) == 'demo'  # the app prefers demo weights to a random head
    official_seg_file(env.weights / 'tiny_seg.pth')
    assert asmlp.hub.weights_on_disk(TINY) == asmlp.hub.available_kind(TINY) == 'ade20k'
    fill_hf_cache(env.tmp / 'hf', 'timm/deit_small_patch16_224.fb_in1k', {'x': torch.zeros(1)})
    assert asmlp.hub.weights_on_disk('deit_small') == 'imagenet'
    assert asmlp.classifiers.weights_on_disk is asmlp.hub.weights_on_disk
    with pytest.raises(ValueError, match="unknown model 'resnet50'"):
        asmlp.hub.weights_on_disk('resnet50')


# ------------------------------------------------------------------------------------------------ threads

def test_two_threads_load_one_downloaded_file_at_once(env):
    """The first strict load of a downloaded file records it, once; a broken download is deleted, once."""
    url = WeightSource(type='url', format='asmlp-mmseg-upernet', kind='ade20k', url='https://example.invalid/s.pth',
                       filename='tiny_seg.pth')
    downloads = env.tmp / 'cache' / 'downloads'
    downloads.mkdir(parents=True)
    seg = official_seg_file(downloads / 'tiny_seg.pth')
    for expect in ('ade20k', 'none'):
        results, errors = [], []

        def load():
            try:
                results.append(asmlp.hub.load_pretrained(TINY, sources=[url]))
            except Exception as error:  # noqa: BLE001  (reported by the assertion below)
                errors.append(error)

        threads = [threading.Thread(target=load, name=f'asmlp-test-load-{i}') for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == [] and [s.kind for _, s in results] == [expect, expect]
        if expect == 'ade20k':
            assert all(same_weights(model, seg) for model, _ in results)
            assert records.read_record(downloads / 'tiny_seg.pth')['sha256'] == sha256(downloads / 'tiny_seg.pth')
            (downloads / 'tiny_seg.pth').write_bytes(b'PK\x03\x04 broken')  # now a download that does not load
        else:  # the thread that got to the file first deleted it; the other one failed on it or found none
            assert any(f'deleted {downloads / "tiny_seg.pth"}' in s.message for _, s in results)
            assert not (downloads / 'tiny_seg.pth').exists()
            assert not records.record_path(downloads / 'tiny_seg.pth').exists()


# ------------------------------------------------------------------------------------------------ download

def test_download_every_source_fetches_each_source_from_where_it_says(env, online, fake_hub, monkeypatch, capsys):
    """weights/<name>/ and the namespace repo hold weights too; --every-source still fetches the URL it lists."""
    write_native(env.weights / TINY, trained_tiny(seed=1))
    write_native(env.tmp / 'mine', trained_tiny(seed=3))
    fake_hub.add(f'me/{TINY}', COMMIT, native_files(env.tmp / 'mine'), refs={'main': COMMIT})
    monkeypatch.setenv('HF_ENDPOINT', fake_hub.url)
    monkeypatch.setenv('ASMLP_HUB_NAMESPACE', 'me')
    official_seg_file(env.tmp / 'seg.pth')
    fake_hub.plain['tiny_seg.pth'] = (env.tmp / 'seg.pth').read_bytes()
    env.table[TINY]['weights'] = [{'type': 'url', 'url': f'{fake_hub.url}/files/tiny_seg.pth',
                                   'filename': 'tiny_seg.pth', 'format': 'asmlp-mmseg-upernet', 'kind': 'ade20k'}]
    assert run_cli(['download', TINY, '--every-source']) == 0
    assert ('GET', '/files/tiny_seg.pth') in fake_hub.requests
    assert not [r for r in fake_hub.requests if f'me/{TINY}' in r[1]]  # the namespace does not stand in for it
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(TINY))
    assert 'ade20k' in row and f'ADE20K weights: {fake_hub.url}/files/tiny_seg.pth' in row
    assert (env.tmp / 'cache' / 'downloads' / 'tiny_seg.pth').read_bytes() == fake_hub.plain['tiny_seg.pth']
    # load_pretrained's order is unchanged: weights/<name>/ first
    model, status = asmlp.hub.load_pretrained(TINY, sources=weight_sources(TINY), download=False)
    assert status.source.endswith(f'{TINY}/') and same_weights(model, trained_tiny(seed=1))


def test_download_name_fails_naming_the_ade20k_file_when_only_the_backbone_loaded(env, capsys):
    (env.weights / 'tiny_seg.pth').write_bytes(b'PK\x03\x04 truncated')
    official_imagenet_file(env.weights / 'tiny_imagenet.pth')
    assert run_cli(['download', TINY]) == 1
    captured = capsys.readouterr()
    assert 'imagenet-backbone' in captured.out
    (failed,) = [line.strip() for line in captured.out.splitlines() if 'failed: ' in line]
    assert failed.startswith('failed: ') and 'tiny_seg.pth' in failed
    assert 'did not get their best weights' in captured.err
    official_seg_file(env.weights / 'tiny_seg.pth')
    assert run_cli(['download', TINY]) == 0


def test_download_url_again_same_file_is_fine_another_needs_force(env, online, fake_hub, capsys):
    official_seg_file(env.tmp / 'a.pth', seed=2)
    official_seg_file(env.tmp / 'b.pth', seed=5)
    fake_hub.plain['a.pth'] = (env.tmp / 'a.pth').read_bytes()
    fake_hub.plain['b.pth'] = (env.tmp / 'b.pth').read_bytes()
    config = env.weights / TINY / 'config.json'
    assert run_cli(['download', f'{fake_hub.url}/files/a.pth', '--model', TINY]) == 0
    assert 'wrote ' in capsys.readouterr().out
    assert json.loads(config.read_text())['source_sha256'] == sha256(env.tmp / 'a.pth')
    written = (env.weights / TINY / 'model.safetensors').stat().st_mtime_ns
    # the same file again: exit 0, nothing rewritten, no second transfer
    assert run_cli(['download', f'{fake_hub.url}/files/a.pth', '--model', TINY]) == 0
    assert 'nothing to do' in capsys.readouterr().out
    assert (env.weights / TINY / 'model.safetensors').stat().st_mtime_ns == written
    assert fake_hub.requests.count(('GET', '/files/a.pth')) == 1
    # another file (another sha256): refused without --force, the folder unchanged
    assert run_cli(['download', f'{fake_hub.url}/files/b.pth', '--model', TINY]) == 1
    err = capsys.readouterr().err
    assert '--force' in err and sha256(env.tmp / 'a.pth')[:12] in err and sha256(env.tmp / 'b.pth')[:12] in err
    assert json.loads(config.read_text())['source_sha256'] == sha256(env.tmp / 'a.pth')
    assert run_cli(['download', f'{fake_hub.url}/files/b.pth', '--model', TINY, '--force']) == 0
    assert json.loads(config.read_text())['source_sha256'] == sha256(env.tmp / 'b.pth')


DOWNLOAD_CHILD = '''
import sys
from asmlp.__main__ import main
print('ready', flush=True)
sys.stdin.readline()
print('calling', flush=True)
sys.exit(main(['download', sys.argv[1], '--model', 'upernet_asmlp_nano']))
'''


def test_two_processes_download_one_url_into_one_weights_folder(tmp_path):
    """Both `download URL --model NAME` at once (the server holds the first answer until both are in their call):
    one GET, both exit 0, one converted folder; the second process found the first one's file and folder."""
    from test_fetch_processes import FileServer, child_env
    shipped_file = REPO / 'weights' / 'demo' / 'upernet_asmlp_nano' / 'model.safetensors'
    data = shipped_file.read_bytes()  # a real checkpoint of a small zoo model
    server = FileServer(data, piece=1 << 16)
    server.hold = threading.Event()
    env = {**child_env(), 'ASMLP_WEIGHTS_DIR': str(tmp_path / 'weights'), 'ASMLP_CACHE_DIR': str(tmp_path / 'cache')}
    children = [subprocess.Popen([sys.executable, '-c', DOWNLOAD_CHILD, server.url], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                 cwd=REPO) for _ in range(2)]
    try:
        for child in children:
            assert child.stdout.readline().strip() == 'ready', child.stderr.read()
        for child in children:
            child.stdin.write('go\n')
            child.stdin.flush()
        for child in children:
            assert child.stdout.readline().strip() == 'calling', child.stderr.read()
        assert server.first_piece_sent.wait(60)
        time.sleep(0.5)  # let the other process reach the lock (the assertions hold either way)
        server.hold.set()
        outs = []
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            outs.append(out)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
        server.close()
    assert server.kinds() == ['whole']  # exactly one GET
    assert sorted('nothing to do' in out for out in outs) == [False, True]  # one wrote, the other found it
    config = json.loads((tmp_path / 'weights' / 'upernet_asmlp_nano' / 'config.json').read_text())
    assert config['source_sha256'] == hashlib.sha256(data).hexdigest() and config['kind'] == 'ade20k'
    written = safetensors.torch.load_file(str(tmp_path / 'weights' / 'upernet_asmlp_nano' / 'model.safetensors'))
    shipped = safetensors.torch.load_file(str(shipped_file))
    assert all(torch.equal(written[k], v.float()) for k, v in shipped.items())
