"""The zoo: names, construction, and the papers' parameter / FLOP numbers reproduced by counting (meta device)."""
import json
import subprocess
import sys

import pytest

import asmlp
from asmlp.zoo import model_entry

REQUIRED = {
    'upernet_asmlp_tiny', 'upernet_asmlp_small', 'upernet_asmlp_base', 'upernet_swin_tiny', 'upernet_swin_small',
    'upernet_swin_base', 'upernet_swin_base_w12_in22k', 'upernet_swin_large_w12_in22k', 'setr_naive_vit_large',
    'setr_pup_vit_large', 'setr_mla_vit_large', 'setr_pup_vit_base', 'setr_pup_vit_small',
}
# totals with the auxiliary FCN head, computed from the official AS-MLP code (svip-lab/AS-MLP-Semantic-Segmentation)
ASMLP_PARAMS_M = {'upernet_asmlp_tiny': 59.94, 'upernet_asmlp_small': 81.25, 'upernet_asmlp_base': 121.26}
# published GMACs at 512x2048 (AS-MLP paper Table 6; Swin seg README)
PAPER_GMACS = {'upernet_asmlp_tiny': 937, 'upernet_asmlp_small': 1024, 'upernet_asmlp_base': 1166,
               'upernet_swin_tiny': 945, 'upernet_swin_small': 1038, 'upernet_swin_base': 1188}


@pytest.fixture(scope='module')
def info_rows():
    out = subprocess.run([sys.executable, '-m', 'asmlp', 'info', '--json'], capture_output=True, text=True,
                         check=True, timeout=300)
    rows = json.loads(out.stdout)  # stdout holds only the JSON list
    assert isinstance(rows, list)
    return {r['name']: r for r in rows}


def test_list_models():
    names = asmlp.list_models()
    assert names == sorted(names) and REQUIRED <= set(names)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match='unknown model .*upernet_asmlp_tiny'):
        asmlp.create_segmenter('upernet_asmlp_huge')


def test_one_create_segmenter_with_and_without_weights(tmp_path, monkeypatch):
    """asmlp.create_segmenter is asmlp.hub.create_segmenter (the zoo only builds: zoo.build_segmenter);
    ``pretrained=True`` gives load_pretrained's model (here the shipped demo weights), in eval mode."""
    import asmlp.hub
    from asmlp import zoo
    assert asmlp.create_segmenter is asmlp.hub.create_segmenter and not hasattr(zoo, 'create_segmenter')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path))
    model = asmlp.create_segmenter('upernet_asmlp_nano', pretrained=True)
    reference, status = asmlp.hub.load_pretrained('upernet_asmlp_nano', download=False)
    assert status.kind == 'demo' and not model.training
    assert all(a.equal(b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert asmlp.create_segmenter('upernet_asmlp_nano', num_classes=7).decode_head.conv_seg.out_channels == 7
    with pytest.raises(ValueError, match='150 ADE20K classes'):
        asmlp.create_segmenter('upernet_asmlp_nano', num_classes=7, pretrained=True)


def test_info_json_fields(info_rows):
    assert set(info_rows) == set(asmlp.list_models())
    for row in info_rows.values():
        assert isinstance(row['params'], int) and isinstance(row['params_no_aux'], int)
        assert isinstance(row['gmacs'], float) and row['gmacs'] > 0
        assert row['paper_params'] is None or isinstance(row['paper_params'], int)
        assert row['paper_gmacs'] is None or isinstance(row['paper_gmacs'], (int, float))
        assert row['params_no_aux'] <= row['params']


@pytest.mark.parametrize('name', sorted(ASMLP_PARAMS_M))
def test_asmlp_upernet_params_match_the_official_code(info_rows, name):
    assert abs(info_rows[name]['params'] / 1e6 - ASMLP_PARAMS_M[name]) <= 0.005
    assert info_rows[name]['paper_params'] == round(ASMLP_PARAMS_M[name]) * 1_000_000


@pytest.mark.parametrize('name', sorted(PAPER_GMACS))
def test_gmacs_at_512x2048_match_the_papers(info_rows, name):
    assert info_rows[name]['paper_gmacs'] == PAPER_GMACS[name]
    assert abs(info_rows[name]['gmacs'] / PAPER_GMACS[name] - 1) <= 0.01


def test_swin_upernet_params_match_the_papers(info_rows):
    # Swin seg README: 60M / 81M / 121M; HF/mmseg Swin-T UperNet = 59.94 M with aux
    # (https://huggingface.co/openmmlab/upernet-swin-tiny)
    assert abs(info_rows['upernet_swin_tiny']['params'] / 1e6 - 59.94) <= 0.01
    for name, published in (('upernet_swin_small', 81), ('upernet_swin_base', 121)):
        assert round(info_rows[name]['params'] / 1e6) == published


def test_setr_params(info_rows):
    # mmseg SETR configs counted: PUP 308.32 M without aux heads, 317.29 M with them; Naive 304.45; MLA 309.42
    assert abs(info_rows['setr_pup_vit_large']['params_no_aux'] / 1e6 - 308.3) <= 0.1
    assert abs(info_rows['setr_pup_vit_large']['params'] / 1e6 - 317.3) <= 0.1
    assert abs(info_rows['setr_naive_vit_large']['params_no_aux'] / 1e6 - 304.45) <= 0.01
    assert abs(info_rows['setr_mla_vit_large']['params_no_aux'] / 1e6 - 309.42) <= 0.01
    # the sliding window at 512x2048 runs 1 x 6 crops of 512: six times one crop's 425.9 GMACs (+ the conv stem)
    assert abs(info_rows['setr_pup_vit_large']['gmacs'] / 6 / 425.9 - 1) <= 0.01


def test_every_entry_cites_its_numbers():
    for name in asmlp.list_models():
        published = model_entry(name)['published']
        assert published['source']
        if any(published[k] is not None for k in ('params', 'gmacs', 'miou_ss', 'miou_ms')):
            assert 'README' in published['source'] or 'paper' in published['source'] or '.yml' in published['source']


def test_info_refuses_bad_sizes():
    out = subprocess.run([sys.executable, '-m', 'asmlp', 'info', '--size', '0', '512'], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and 'sizes must be >= 1' in out.stderr
