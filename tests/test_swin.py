"""SwinPyramid vs transformers' SwinBackbone (the model behind openmmlab/upernet-swin-*), the HF key mapping,
parameter counts of the published configs, shapes and input checks.

transformers is a test-only reference here: its ``SwinBackbone`` pads to a window multiple before the cyclic shift
(as mmseg does), so matching it at padded sizes checks ``SwinPyramid``'s pad-then-shift override.
"""
import math

import pytest
import torch
from timm.models.swin_transformer import SwinTransformerBlock

from asmlp.models.swin import SwinPyramid, hf_swin_to_pyramid

transformers = pytest.importorskip('transformers')

STAGES = ['stage1', 'stage2', 'stage3', 'stage4']
SMALL = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))


def _hf_backbone(window: int, seed: int = 0, **cfg) -> 'transformers.SwinBackbone':
    """Small HF SwinBackbone, every parameter random (HF zero-inits bias tables, ones/zeros the LayerNorms)."""
    torch.manual_seed(seed)
    config = transformers.SwinConfig(window_size=window, out_features=STAGES, **{**SMALL, **cfg})
    model = transformers.SwinBackbone(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'relative_position_bias_table' in name:
                p.normal_(std=1.0)  # large, so a wrong index / table layout shows
            elif p.dim() == 1:
                p.add_(torch.randn_like(p), alpha=0.2)
    return model


def _pyramid(window: int, **cfg) -> SwinPyramid:
    return SwinPyramid('swin_tiny_patch4_window7_224', window_size=window, **{**SMALL, **cfg}).eval()


@pytest.fixture(scope='module')
def small_model() -> SwinPyramid:
    return _pyramid(7)


def _max_diffs(a, b):
    assert [t.shape for t in a] == [t.shape for t in b]
    return [(x - y).abs().max().item() for x, y in zip(a, b)]


@pytest.mark.parametrize('window,size', [
    (7, (98, 130)),   # image pad 98x130 -> 100x132; maps 25x33, 13x17 (odd merges), 7x9, 4x5
    (4, (90, 150)),   # 23x38 -> 12x19 -> 6x10 -> 3x5
    (7, (512, 512)),  # ADE20K size: 128/64/32/16, none a multiple of 7
    (12, (512, 512)),
])
def test_matches_hf_backbone_and_stock_timm_does_not(window, size):
    hf = _hf_backbone(window)
    model = _pyramid(window)
    model.load_state_dict(hf_swin_to_pyramid(hf.state_dict()), strict=True)
    x = torch.randn(2 if size[0] < 512 else 1, 3, *size)
    with torch.no_grad():
        ref = hf(x).feature_maps
        out = model(x)
    # the case must exercise window padding (the shift is applied in every odd block, always_partition=True)
    assert any(t.shape[-2] % window or t.shape[-1] % window for t in ref)
    assert max(_max_diffs(ref, out)) <= 1e-4

    # stock timm (shift before pad) on the same weights is measurably different
    for m in model.modules():
        if isinstance(m, SwinTransformerBlock):
            m.__class__ = SwinTransformerBlock
    with torch.no_grad():
        stock = model(x)
    assert max(_max_diffs(ref, stock)) > 1e-2


def test_hub_legacy_layout(tmp_path):
    """The 4.x names of the Hub files, as transformers itself writes them (save_pretrained reverts its renames)."""
    from safetensors.torch import load_file

    hf = _hf_backbone(7, seed=1)
    hf.save_pretrained(tmp_path)
    legacy = {f'backbone.{k}': v for k, v in load_file(tmp_path / 'model.safetensors').items()}
    assert 'backbone.encoder.layers.0.blocks.1.attention.self.query.weight' in legacy
    assert 'backbone.encoder.layers.2.downsample.reduction.weight' in legacy
    assert not any('q_proj' in k for k in legacy)
    # what the Hub checkpoints hold besides: int64 index buffers and the UperNet heads
    for k in [k for k in legacy if k.endswith('relative_position_bias_table')]:
        legacy[k.replace('bias_table', 'index')] = torch.zeros(49, 49, dtype=torch.long)
    legacy['decode_head.classifier.weight'] = torch.zeros(150, 512, 1, 1)
    legacy['auxiliary_head.classifier.bias'] = torch.zeros(150)
    keys_before = set(legacy)

    converted = hf_swin_to_pyramid(legacy)
    assert set(legacy) == keys_before  # pure
    model = _pyramid(7)
    model.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, 100, 68)
    with torch.no_grad():
        assert max(_max_diffs(hf(x).feature_maps, model(x))) <= 1e-4


def test_mapping_details():
    hf = _hf_backbone(7)
    sd = hf.state_dict()
    out = hf_swin_to_pyramid(sd)
    blk = 'swin.encoder.layers.1.blocks.0.attention.'
    torch.testing.assert_close(
        out['layers.1.blocks.0.attn.qkv.weight'],
        torch.cat([sd[blk + 'q_proj.weight'], sd[blk + 'k_proj.weight'], sd[blk + 'v_proj.weight']]))
    # patch merging at the end of HF stage N is timm's start of stage N + 1
    assert out['layers.3.downsample.reduction.weight'] is sd['swin.encoder.layers.2.downsample.reduction.weight']
    assert out['norm0.weight'] is sd['hidden_states_norms.stage1.weight']
    assert not any(k.startswith('layers.0.downsample') or k.startswith('norm.') for k in out)

    with pytest.raises(ValueError, match='not HF Swin backbone keys'):
        hf_swin_to_pyramid({**sd, 'swin.encoder.layers.0.blocks.0.attention.foo.weight': torch.zeros(1)})
    incomplete = {k: v for k, v in sd.items() if 'layers.0.blocks.0.attention.v_proj.bias' not in k}
    with pytest.raises(ValueError, match='expected query, key and value'):
        hf_swin_to_pyramid(incomplete)


# published UperNet-Swin backbones: (timm variant, embed_dim, depths, heads, window)
PUBLISHED = [
    ('swin_tiny_patch4_window7_224', 96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
    ('swin_small_patch4_window7_224', 96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
    ('swin_base_patch4_window7_224', 128, (2, 2, 18, 2), (4, 8, 16, 32), 7),
    ('swin_base_patch4_window12_384', 128, (2, 2, 18, 2), (4, 8, 16, 32), 12),
    ('swin_large_patch4_window12_384', 192, (2, 2, 18, 2), (6, 12, 24, 48), 12),
]


@pytest.mark.parametrize('variant,embed_dim,depths,heads,window', PUBLISHED)
def test_published_configs_params_and_keys(variant, embed_dim, depths, heads, window):
    with torch.device('meta'):
        model = SwinPyramid(variant)
        hf = transformers.SwinBackbone(transformers.SwinConfig(
            embed_dim=embed_dim, depths=depths, num_heads=heads, window_size=window, out_features=STAGES))
    n = sum(p.numel() for p in model.parameters())
    # HF's backbone minus the final `swin.layernorm` it never uses (mmseg's backbone has no such norm)
    n_hf = sum(p.numel() for k, p in hf.named_parameters() if not k.startswith('swin.layernorm'))
    assert n == n_hf
    if variant == 'swin_tiny_patch4_window7_224':
        assert abs(n / 1e6 - 27.52) <= 0.005  # UperNet Swin-T 59.94 M = 27.52 + 31.50 + 0.92 (mmseg / HF)
    converted = hf_swin_to_pyramid(hf.state_dict())
    own = model.state_dict()
    assert converted.keys() == own.keys()
    assert all(converted[k].shape == own[k].shape for k in own)
    assert model.out_channels == [embed_dim * 2 ** i for i in range(4)]
    assert model.feature_info.reduction() == [4, 8, 16, 32]


@pytest.mark.parametrize('size', [(1, 1), (5, 130), (33, 47), (64, 64)])
def test_output_shapes(size, small_model):
    model = small_model
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert [o.shape[1] for o in outs] == model.out_channels == [24, 48, 96, 192]
    for o, stride in zip(outs, model.feature_info.reduction()):
        assert o.shape[-2:] == (math.ceil(size[0] / stride), math.ceil(size[1] / stride))


def test_bad_input_and_args(small_model):
    model = small_model
    with pytest.raises(ValueError, match='NCHW'):
        model(torch.randn(32, 32))
    with pytest.raises(ValueError, match='NCHW'):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match='expected 3 input channels, got 4'):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match='always_partition=True'):
        SwinPyramid(always_partition=False, **SMALL)
    with pytest.raises(ValueError, match='not a timm Swin model'):
        SwinPyramid('resnet18')
