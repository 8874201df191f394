"""The app's engine without the UI: device/precision choices, name validation, the bounded model cache,
segmentation and measurement with tiny models."""
import types

import numpy as np
import pytest
import timm
import torch

import asmlp  # noqa: F401
from asmlp.models.heads import FCNHead, UPerHead
from asmlp.models.segmenter import Segmenter
from asmlp.precision import cpu_bf16_supported
from asmlp.service import Engine, check_model_names, resolve_device, resolve_precision


def tiny_loader(calls):
    def load(name):
        calls.append(name)
        torch.manual_seed(len(calls))
        backbone = timm.create_model('asmlp_tiny', features_only=True, embed_dim=8, depths=(1, 1, 1, 1))
        model = Segmenter(backbone, UPerHead((8, 16, 32, 64), channels=8, num_classes=150), FCNHead(32, 8))
        return model, types.SimpleNamespace(kind='none', message='no weights — untrained, masks are meaningless')
    return load


@pytest.mark.cpu_precision
def test_resolve_device_and_precision():
    assert resolve_device('cpu').type == 'cpu'
    assert resolve_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='no CUDA GPU'):
            resolve_device('gpu')
    cpu = torch.device('cpu')
    assert resolve_precision('auto', cpu) == ('bf16' if cpu_bf16_supported() else 'fp32')
    assert resolve_precision('auto', torch.device('cuda')) == 'fp16'
    assert resolve_precision('fp32', cpu) == 'fp32'
    with pytest.raises(ValueError, match='GPU only'):
        resolve_precision('fp16', cpu)
    with pytest.raises(ValueError):
        resolve_device('tpu')


def test_model_names_are_validated():
    assert check_model_names(['upernet_asmlp_tiny', 'upernet_asmlp_tiny']) == ['upernet_asmlp_tiny']
    for bad in (['../../etc/passwd'], ['upernet_asmlp_tiny', 'weights/x'], []):
        with pytest.raises(ValueError):
            check_model_names(bad)


def test_cache_is_bounded_and_lru():
    calls = []
    engine = Engine(max_models=2, loader=tiny_loader(calls))
    cpu = torch.device('cpu')
    for name in ('upernet_asmlp_tiny', 'upernet_swin_tiny', 'upernet_asmlp_tiny', 'setr_pup_vit_small',
                 'upernet_asmlp_tiny', 'upernet_swin_tiny'):
        engine.get(name, cpu)
    assert calls == ['upernet_asmlp_tiny', 'upernet_swin_tiny', 'setr_pup_vit_small', 'upernet_swin_tiny']
    assert engine.cached() == ['upernet_asmlp_tiny', 'upernet_swin_tiny']


@pytest.fixture
def engine():
    with Engine(loader=tiny_loader([])) as engine:
        yield engine


def test_segment_and_measure(engine):
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    heard = []
    results = engine.segment(image, ['upernet_asmlp_tiny', 'upernet_swin_tiny'], 'cpu', 'fp32', short_side=64,
                             progress=lambda fraction, text: heard.append((fraction, text)))
    assert [r.name for r in results] == ['upernet_asmlp_tiny', 'upernet_swin_tiny']
    assert [f for f, _ in heard] == [0, 0.5] and 'Loading' in heard[0][1] and 'Swin-T' in heard[1][1]
    for r in results:
        assert r.labels.shape == (50, 70) and r.input_size == (64, 90) and r.precision == 'fp32'
        assert abs(sum(c['share'] for c in r.legend) - 1) < 1e-6
    rows = engine.measure(image, ['upernet_asmlp_tiny'], 'cpu', 'fp32', short_side=64, runs=2)
    row, = rows
    assert row.runs == 2 and row.p10_ms <= row.latency_ms <= row.p90_ms
    assert row.input == '64x90' and row.paper_gmacs == 937
    assert 900 < row.gmacs_512x2048 < 1000 and 0 < row.gmacs < row.gmacs_512x2048
    logits_mib = 150 * 64 * 90 * 4 / 2**20  # model(x) returns fp32 logits at the input size
    assert logits_mib <= row.activation_mib < 20 * logits_mib  # the timed forward, not the process's RSS
    assert row.activation_mib_512x2048 > 100 * row.activation_mib  # the real UperNet-T at 512x2048 (meta)
    assert 100 < row.param_mib < 300  # 60 M fp32 parameters, reported apart
    assert len(row.as_dict()) == 18 and row.as_dict()['name'] == 'upernet_asmlp_tiny'  # the table's row
    with pytest.raises(ValueError, match='short side'):
        engine.segment(image, ['upernet_asmlp_tiny'], 'cpu', 'fp32', short_side=5000)


def test_default_short_side_is_the_models_test_size():
    from asmlp.service import default_short_side
    assert default_short_side(['upernet_asmlp_nano', 'setr_pup_vit_nano']) == 128  # trained at 128 px
    assert default_short_side(['upernet_asmlp_nano', 'upernet_swin_tiny']) == 512  # ADE20K models: mmseg's 512
    assert default_short_side([]) == 512
