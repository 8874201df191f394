"""The app's presets and model list (asmlp/presets.py): the default preset follows the weights on disk and in the
caches (no network), and every model's weight state is known before it loads."""
from __future__ import annotations

import pytest

from asmlp import presets
from asmlp.hub import weight_sources
from asmlp.hub.sources import DOWNLOAD_TYPES
from asmlp.paths import REPO_ROOT


@pytest.fixture
def empty(monkeypatch, tmp_path):
    """Empty weights/ (with the shipped demo folders), download and Hugging Face caches; no namespace."""
    import shutil
    weights = tmp_path / 'weights'
    shutil.copytree(REPO_ROOT / 'weights' / 'demo', weights / 'demo')
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(weights))
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf'))
    monkeypatch.delenv('ASMLP_HUB_NAMESPACE', raising=False)
    return weights


def official_file(name: str, kind: str) -> str:
    (source,) = [s for s in weight_sources(name) if s.kind == kind and s.type in DOWNLOAD_TYPES][:1]
    return source.filename


def test_presets_are_the_papers_pairs_and_the_demo():
    assert [p['id'] for p in presets.presets()] == ['base', 'tiny', 'demo']
    assert presets.preset('base')['models'] == ['upernet_asmlp_base', 'upernet_swin_base', 'setr_pup_vit_large']
    assert presets.preset('tiny')['models'] == ['upernet_asmlp_tiny', 'upernet_swin_tiny', 'setr_pup_vit_small']
    # labelled honestly: the Tiny AS-MLP has no segmentation weights, SETR-PUP-S is untrained
    assert 'untrained head' in presets.preset('tiny')['description']
    assert 'untrained' in presets.preset('tiny')['description'].split('SETR-PUP ViT-S')[-1]
    with pytest.raises(ValueError, match='unknown preset'):
        presets.preset('huge')


def test_default_preset_follows_the_files_on_disk(empty, tmp_path, monkeypatch):
    assert presets.default_preset() == 'demo'  # nothing but the shipped demo weights
    # the Tiny pair's files: AS-MLP-T's ImageNet file in weights/, Swin-T's official file in the download cache
    (empty / official_file('upernet_asmlp_tiny', 'imagenet-backbone')).write_bytes(b'placeholder')
    downloads = tmp_path / 'cache' / 'downloads'
    downloads.mkdir(parents=True)
    (downloads / official_file('upernet_swin_tiny', 'ade20k')).write_bytes(b'placeholder')
    assert presets.default_preset() == 'tiny'
    # the base pair's official files dropped in weights/: Base is the default
    for name in presets.preset('base')['models']:
        (empty / official_file(name, 'ade20k')).write_bytes(b'placeholder')
    assert presets.default_preset() == 'base'
    # one of them missing: not Base
    (empty / official_file('setr_pup_vit_large', 'ade20k')).unlink()
    assert presets.default_preset() == 'tiny'


def test_model_list_is_grouped_and_says_what_each_has(empty):
    choices = presets.grouped_choices()
    names = [name for _, name in choices]
    assert sorted(names) == sorted(presets.list_models())
    families = [presets.model_entry(n)['family'] for n in names]
    assert families == sorted(families, key=['AS-MLP', 'Swin', 'SETR'].index)  # grouped by family
    asmlp_models = [n for n in names if presets.model_entry(n)['family'] == 'AS-MLP']
    assert asmlp_models == ['upernet_asmlp_nano', 'upernet_asmlp_tiny', 'upernet_asmlp_small', 'upernet_asmlp_base']
    label = dict((n, text) for text, n in choices)
    assert label['upernet_asmlp_base'] == 'AS-MLP-B · ADE20K, downloaded on request'
    assert label['upernet_asmlp_tiny'] == 'AS-MLP-T · ImageNet backbone on request, head untrained'
    assert label['upernet_asmlp_nano'].endswith(' · demo weights')
    assert label['setr_pup_vit_small'] == 'SETR-PUP (ViT-S/16, light CPU variant) · untrained'
    assert label['upernet_swin_base_w12_in22k'].startswith('Swin-B (window 12, ImageNet-22K 384) · ')
    assert len(set(label.values())) == len(label)  # every entry tells its model apart
    tiny_state = 'ImageNet backbone only, downloadable on request; head untrained'
    assert presets.weight_state('upernet_asmlp_tiny') == tiny_state
    (empty / official_file('upernet_asmlp_base', 'ade20k')).write_bytes(b'placeholder')
    assert presets.weight_state('upernet_asmlp_base') == 'ADE20K weights here'
    assert presets.grouped_choices()[3] == ('AS-MLP-B · ADE20K here', 'upernet_asmlp_base')
