"""ImageNet classifiers (asmlp/classifiers.py, data/imagenet.json): Table 1 by counting, weights through the
resolver."""
import json
import math

import pytest
import safetensors.torch
import timm
import torch

from asmlp import classifiers
from asmlp.classifiers import (classifier_entry, classifier_metrics, classifier_sources, list_classifiers,
                               load_classifier)
from asmlp.zoo import list_models, model_entry
from test_asmlp import official_forward, randomised  # the official AS-MLP forward, restated
from test_checkpoint_io import CfgNode, asmlp_training_checkpoint, throwaway_module

# the table (AS-MLP paper Table 1; Swin Table 1; DeiT Table 1): params (M), GMACs at 224
PUBLISHED = {
    'asmlp_tiny': (28, 4.4), 'asmlp_small': (50, 8.5), 'asmlp_base': (88, 15.2),
    'swin_tiny': (28, 4.5), 'swin_small': (50, 8.7), 'swin_base': (88, 15.4),
    'deit_small': (22, 4.6), 'deit_base': (86, 17.5),
}
TIMM_NAMES = {'swin_tiny': 'swin_tiny_patch4_window7_224.ms_in1k',
              'swin_small': 'swin_small_patch4_window7_224.ms_in1k',
              'swin_base': 'swin_base_patch4_window7_224.ms_in1k', 'deit_small': 'deit_small_patch16_224.fb_in1k',
              'deit_base': 'deit_base_patch16_224.fb_in1k'}
TINY = {  # small architectures of the same timm models, for checkpoints the tests write
    'deit_small': dict(depth=2, embed_dim=64, num_heads=2),
    'swin_tiny': dict(embed_dim=24, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2)),
}


def test_classifiers_are_listed_apart_from_the_segmenters():
    assert list_classifiers() == list(PUBLISHED)
    assert not set(list_classifiers()) & set(list_models())
    assert all(n.startswith(('upernet_', 'setr_')) for n in list_models())
    with pytest.raises(ValueError, match='known classifiers: asmlp_tiny'):
        classifier_entry('resnet50')


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_table1_params_and_gmacs_by_counting(name):
    row = classifier_metrics(name)
    params, gmacs = PUBLISHED[name]
    assert row['params'] / 1e6 == pytest.approx(params, rel=0.02)
    assert row['gmacs'] == pytest.approx(gmacs, rel=0.02)
    assert row['paper_params'] == params * 1e6 and row['paper_gmacs'] == gmacs


def test_asmlp_weights_are_the_zoo_records_not_copies():
    raw = json.dumps(classifier_entry('asmlp_tiny'))
    assert 'sharepoint' not in raw and 'http' not in raw  # referenced, not copied
    for size in ('tiny', 'small', 'base'):
        (source,) = classifier_sources(f'asmlp_{size}')
        zoo = [s for s in model_entry(f'upernet_asmlp_{size}')['weights'] if s['format'] == 'asmlp-imagenet']
        assert len(zoo) == 1 and (source.url, source.filename) == (zoo[0]['url'], zoo[0]['filename'])
        assert source.filename == f'asmlp_{size}_patch4_shift5_224.pth'


@pytest.mark.parametrize('name', sorted(TIMM_NAMES))
def test_timm_sources_are_pinnable_hub_files(name):
    (source,) = classifier_sources(name)
    assert (source.type, source.repo, source.filename) == ('hub', f'timm/{TIMM_NAMES[name]}', 'model.safetensors')
    assert source.revision == 'main' and source.kind == 'imagenet'
    assert classifiers.timm_name(name) == TIMM_NAMES[name]


def fill_hf_cache(cache, repo, state_dict, commit='0123456789abcdef0123456789abcdef01234567'):
    """huggingface_hub's cache layout: models--<org>--<name>/{snapshots/<commit>/model.safetensors, refs/main}."""
    folder = cache / f'models--{repo.replace("/", "--")}'
    snapshot = folder / 'snapshots' / commit
    snapshot.mkdir(parents=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in state_dict.items()}, snapshot / 'model.safetensors')
    (folder / 'refs').mkdir()
    (folder / 'refs' / 'main').write_text(commit)
    return snapshot / 'model.safetensors'


@pytest.mark.parametrize('name', sorted(TINY))
def test_timm_weights_resolve_from_a_prefilled_hf_cache_offline(name, tmp_path, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path))
    torch.manual_seed(1)
    reference = timm.create_model(TIMM_NAMES[name].split('.')[0], **TINY[name]).eval()
    fill_hf_cache(tmp_path, f'timm/{TIMM_NAMES[name]}', reference.state_dict())
    model, status = load_classifier(name, **TINY[name])
    assert status.kind == 'imagenet' and status.pretrained
    assert status.source == f'timm/{TIMM_NAMES[name]}@main' and not status.revision_pinned
    assert 'ImageNet-1K weights' in status.message and 'unpinned' in status.message
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    assert model.pretrained_cfg['crop_pct'] == timm.create_model(TIMM_NAMES[name], pretrained=False,
                                                                 **TINY[name]).pretrained_cfg['crop_pct']


@pytest.mark.parametrize('name', ['deit_small', 'asmlp_tiny'])
def test_no_weights_is_said_clearly(name, tmp_path, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf'))
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(tmp_path / 'weights'))
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path / 'cache'))
    kwargs = TINY.get(name, dict(embed_dim=16, depths=(1, 1, 1, 1)))
    model, status = load_classifier(name, **kwargs)
    assert status.kind == 'none' and not status.pretrained and status.sha256 is None
    assert status.message.startswith('no weights')
    assert status.problems  # why: not in the cache / not downloadable offline
    again, _ = load_classifier(name, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_a_wrong_checkpoint_is_named_and_not_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path))
    other = timm.create_model('deit_small_patch16_224', depth=1, embed_dim=32, num_heads=2)
    fill_hf_cache(tmp_path, 'timm/deit_small_patch16_224.fb_in1k', other.state_dict())
    _, status = load_classifier('deit_small', **TINY['deit_small'])
    assert status.kind == 'none' and 'unusable weights: timm/deit_small_patch16_224.fb_in1k@main' in status.message


def test_official_asmlp_file_in_weights_dir_loads_through_the_resolver(tmp_path, monkeypatch):
    """An official training checkpoint ('model' + optimizer + a yacs config object) read without unpickling code,
    then the official forward."""
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(tmp_path))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    kwargs = dict(embed_dim=16, depths=(1, 2, 2, 1))
    official = randomised(timm.create_model('asmlp_tiny', **kwargs)).state_dict()
    path = tmp_path / 'asmlp_tiny_patch4_shift5_224.pth'
    with throwaway_module('fake_yacs_for_classifier_test.config', CfgNode=CfgNode):
        torch.save(asmlp_training_checkpoint(official), path)
    model, status = load_classifier('asmlp_tiny', **kwargs)
    assert status.kind == 'imagenet' and status.source.endswith('asmlp_tiny_patch4_shift5_224.pth')
    assert status.format == 'asmlp-imagenet' and len(status.sha256) == 64
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _, logits = official_forward(img, official, kwargs['depths'], 5)
        torch.testing.assert_close(model(img), logits, rtol=1e-4, atol=1e-4)
    assert math.isclose(sum(p.numel() for p in model.parameters()),
                        sum(v.numel() for k, v in official.items()))


def test_paper_throughput_ratios_are_the_derived_ones():
    """AS-MLP / Swin at equal size from the two papers' V100 numbers: 1.39 / 1.42 / 1.64 (the issue's figures)."""
    from asmlp.bench.throughput import ratios
    rows = [dict(family=e['family'], size=e['size'], title=e['title'], img_s=1.0,
                 paper_img_s=e['published']['throughput'])
            for e in map(classifier_entry, list_classifiers())]
    assert [(p['pair'], round(p['paper'], 2)) for p in ratios(rows)] == [
        ('AS-MLP-T / Swin-T', 1.39), ('AS-MLP-S / Swin-S', 1.42), ('AS-MLP-B / Swin-B', 1.64)]


def test_info_imagenet_json(capsys, tmp_path, monkeypatch):
    from asmlp.__main__ import main
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path))
    assert main(['info', '--imagenet', '--json', '--models', 'deit_small', 'asmlp_tiny']) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r['name'] for r in rows] == ['deit_small', 'asmlp_tiny']
    assert all(abs(r['params_off']) < 0.02 and abs(r['gmacs_off']) < 0.02 for r in rows)
    assert main(['info', '--imagenet', '--models', 'asmlp_tiny']) == 0  # from the cache now
    out = capsys.readouterr().out
    assert 'All within 2% of the papers' in out and '28.28' in out and '1047.7' in out
    with pytest.raises(ValueError, match='unknown classifier'):
        main(['info', '--imagenet', '--models', 'upernet_swin_tiny'])


def test_pin_pins_the_classifiers_hub_sources(tmp_path, monkeypatch):
    """`python -m asmlp pin --zoo asmlp/data/imagenet.json` writes commits into the classifiers' table, same layout."""
    from huggingface_hub.hf_api import GitRefInfo, GitRefs

    from asmlp.hub import pin
    table_path = tmp_path / 'imagenet.json'
    original = (pin.default_zoo_path().parent / 'imagenet.json').read_text()
    table_path.write_text(original)

    class Api:
        def list_repo_refs(self, repo_id, include_pull_requests=False):
            return GitRefs(branches=[GitRefInfo('main', 'refs/heads/main', f'{len(repo_id) % 10}' * 40)], converts=[],
                           tags=[], pull_requests=[])
    monkeypatch.setattr(pin.fetch, 'offline', lambda: False)
    results = pin.pin_zoo(table_path, api=Api())
    assert sorted(r.repo for r in results) == sorted(f'timm/{n}' for n in TIMM_NAMES.values())
    pinned = json.loads(table_path.read_text())
    assert all(len(pinned[n]['weights'][0]['commit']) == 40 for n in TIMM_NAMES)
    for n in TIMM_NAMES:
        pinned[n]['weights'][0]['commit'] = None
    assert json.dumps(pinned, indent=1, ensure_ascii=False) == original  # nothing else changed


def test_prefetch_finds_the_file_without_loading(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path))
    assert 'not in the Hugging Face cache' in classifiers.prefetch_classifier('deit_small')[0]
    fill_hf_cache(tmp_path, 'timm/deit_small_patch16_224.fb_in1k', {'x': torch.zeros(1)})  # found, not loaded
    assert classifiers.prefetch_classifier('deit_small') == []
    assert classifiers.weights_on_disk('deit_small') and not classifiers.weights_on_disk('swin_tiny')
    import asmlp
    assert asmlp.load_classifier is load_classifier and asmlp.list_classifiers() == list(PUBLISHED)


def test_a_downloaded_official_file_is_recorded_and_a_broken_one_deleted(tmp_path, monkeypatch):
    """The share-link download cache (`python -m asmlp download upernet_asmlp_tiny` puts the file there): the first
    strict load records its sha256 beside it; bytes that are not the checkpoint are deleted and named."""
    from asmlp.hub import records
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(tmp_path / 'weights'))
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path / 'cache'))
    downloads = tmp_path / 'cache' / 'downloads'
    downloads.mkdir(parents=True)
    kwargs = dict(embed_dim=16, depths=(1, 1, 1, 1))
    path = downloads / 'asmlp_tiny_patch4_shift5_224.pth'
    torch.save({'model': timm.create_model('asmlp_tiny', **kwargs).state_dict()}, path)
    _, status = load_classifier('asmlp_tiny', **kwargs)
    assert status.kind == 'imagenet' and 'recorded at its first download' in status.message
    assert records.read_record(path)['sha256'] == status.sha256 and status.source.startswith('https://')
    path.write_bytes(b'PK\x03\x04 not really a checkpoint')
    _, status = load_classifier('asmlp_tiny', **kwargs)
    assert status.kind == 'none' and 'unusable weights' in status.message and 'deleted' in status.message
    assert not path.exists() and not records.record_path(path).exists()


def test_bench_throughput_cli_json(capsys):
    from asmlp.__main__ import main
    assert main(['bench', 'throughput', '--threads', '1', '--batch', '1', '--repeat', '1', '--models', 'deit_small',
                 '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report['rows']
    assert row['title'] == 'DeiT-S' and row['batch'] == 1 and row['img_s'] > 0 and row['paper_img_s'] == 940.4
    assert report['ratios'] == [] and 'cores' in report['machine']
    with pytest.raises(ValueError, match='unknown classifier'):
        main(['bench', 'throughput', '--models', 'upernet_asmlp_tiny'])
