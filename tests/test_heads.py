"""Tests for asmlp.models.heads.

References: transformers' UperNet heads (an independent port of the same mmseg heads) for UPerHead / FCNHead, a
functional re-statement (F.layer_norm / conv2d / batch_norm / interpolate) of the SETR heads, and the parameter
counts of the published configs (Swin / AS-MLP segmentation READMEs, mmseg SETR configs).
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import UperNetConfig
from transformers.models.upernet.modeling_upernet import UperNetFCNHead, UperNetHead

from asmlp.models.heads import ConvModule, FCNHead, MLANeck, SETRMLAHead, SETRUPHead, UPerHead

IN_CHANNELS = (8, 16, 32, 64)
# non-square, not exact powers of two (ceil division like a strided backbone), so every resize is exercised
SIZES = ((20, 28), (10, 14), (5, 7), (3, 4))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and non-trivial BN running stats (so eval-mode BN is not the identity), float64, eval mode."""
    g = torch.Generator().manual_seed(seed)
    module.double().eval()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g, dtype=torch.float64) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=torch.float64) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g, dtype=torch.float64) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=torch.float64) + 0.5)
            elif isinstance(m, (nn.Conv2d, nn.LayerNorm)):
                for p in m.parameters(recurse=False):
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * (0.5 if p.ndim == 1 else 0.2))
    return module


def rand_maps(shapes, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64) for s in shapes]


# ---------------------------------------------------------------------------------------------------------------
# UPerHead / FCNHead vs transformers


def hf_to_mmseg(key: str) -> str:
    return key.replace('batch_norm', 'bn').replace('classifier', 'conv_seg')


def load_from_hf(ours: nn.Module, hf: nn.Module) -> None:
    mapped = {hf_to_mmseg(k): v for k, v in hf.state_dict().items()}
    assert set(mapped) == set(ours.state_dict()), 'layouts differ beyond the batch_norm/classifier rename'
    for k, v in ours.state_dict().items():
        assert v.shape == mapped[k].shape, k
    ours.load_state_dict(mapped, strict=True)


def test_uperhead_matches_transformers():
    cfg = UperNetConfig(hidden_size=16, pool_scales=(1, 2, 3, 6), num_labels=5)
    hf = randomize_(UperNetHead(cfg, in_channels=list(IN_CHANNELS)))
    ours = UPerHead(IN_CHANNELS, channels=16, num_classes=5).double().eval()
    load_from_hf(ours, hf)
    assert 'psp_modules.0.1.conv.weight' in ours.state_dict() and 'bottleneck.bn.running_var' in ours.state_dict()
    feats = rand_maps([(2, c, *s) for c, s in zip(IN_CHANNELS, SIZES)])
    with torch.no_grad():
        expected, got = hf(feats), ours(feats)
    assert got.shape == (2, 5, *SIZES[0])
    assert expected.abs().max() > 0.1  # non-degenerate comparison
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize('num_convs,kernel_size,concat_input,channels', [
    (1, 3, False, 16),  # the UperNet aux head (one 3x3 conv)
    (2, 3, True, 16),
    (0, 1, False, 32),  # the SETR-MLA aux head: a bare 1x1 classifier
])
def test_fcnhead_matches_transformers(num_convs, kernel_size, concat_input, channels):
    cfg = UperNetConfig(num_labels=5, auxiliary_in_channels=32, auxiliary_channels=channels,
                        auxiliary_num_convs=num_convs, auxiliary_concat_input=concat_input)
    hf = randomize_(UperNetFCNHead(cfg, in_channels=list(IN_CHANNELS), in_index=2, kernel_size=kernel_size))
    ours = FCNHead(32, channels, num_convs, kernel_size, concat_input, num_classes=5, in_index=2).double().eval()
    load_from_hf(ours, hf)
    feats = rand_maps([(2, c, *s) for c, s in zip(IN_CHANNELS, SIZES)])
    with torch.no_grad():
        expected, got = hf(feats), ours(feats)
    assert got.shape == (2, 5, *SIZES[2])
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-8)


def test_dropout_only_in_train_mode():
    head = UPerHead(IN_CHANNELS, channels=16, num_classes=5, dropout_ratio=0.5)
    assert isinstance(head.dropout, nn.Dropout2d)
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        assert torch.equal(head.eval().cls_seg(x), head.conv_seg(x))
        torch.manual_seed(0)
        assert not torch.allclose(head.train().cls_seg(x), head.conv_seg(x))


# ---------------------------------------------------------------------------------------------------------------
# Parameter counts (meta device: nothing is allocated)


def meta_params(cls, *args, **kwargs) -> int:
    with torch.device('meta'):
        return n_params(cls(*args, **kwargs))


def test_param_counts_upernet():
    # UperNet Swin-T / AS-MLP-T: decode head 31.50 M, aux FCN head 0.92 M (reference notes; 59.94 M total).
    decode = meta_params(UPerHead, (96, 192, 384, 768), 512, (1, 2, 3, 6), 150)
    aux = meta_params(FCNHead, 384, 256)
    assert (decode, aux) == (31_497_366, 923_798)
    assert round(decode / 1e6, 2) == 31.50 and round(aux / 1e6, 2) == 0.92
    # AS-MLP-B / Swin-B (C=128): 33.32 M and 1.22 M
    assert round(meta_params(UPerHead, (128, 256, 512, 1024)) / 1e6, 2) == 33.32
    assert round(meta_params(FCNHead, 512, 256) / 1e6, 2) == 1.22


def test_param_counts_setr():
    # published / computed totals with a 304.15 M ViT-L backbone (mmseg SETR configs)
    naive = meta_params(SETRUPHead, 1024, 256, num_convs=1, up_scale=4, kernel_size=1)
    naive_aux = 3 * meta_params(SETRUPHead, 1024, 256, num_convs=2, kernel_size=1)
    pup = meta_params(SETRUPHead, 1024, 256, num_convs=4, up_scale=2, kernel_size=3)
    pup_aux = 3 * meta_params(SETRUPHead, 1024, 256, num_convs=2, up_scale=4, kernel_size=3)
    mla = meta_params(MLANeck, (1024,) * 4, 256) + meta_params(SETRMLAHead, (256,) * 4, 512, 128)
    mla_aux = 4 * meta_params(FCNHead, 256, 256, num_convs=0, kernel_size=1, in_index=0)
    assert (naive, pup, pup_aux, mla) == (303_254, 4_171_414, 8_972_226, 5_268_630)
    for got, expected in [
        (naive, 304.45 - 304.15), (naive_aux, 305.56 - 304.45),
        (pup, 308.32 - 304.15), (pup_aux, 317.29 - 308.32),
        (mla, 309.42 - 304.15), (mla_aux, 309.57 - 309.42),
    ]:
        assert abs(got / 1e6 - expected) <= 0.01, (got, expected)


# ---------------------------------------------------------------------------------------------------------------
# SETR heads vs a functional re-statement


def ref_conv_bn_relu(x, sd, prefix, padding=0):
    x = F.conv2d(x, sd[prefix + 'conv.weight'], padding=padding)
    x = F.batch_norm(x, sd[prefix + 'bn.running_mean'], sd[prefix + 'bn.running_var'],
                     sd[prefix + 'bn.weight'], sd[prefix + 'bn.bias'], training=False, eps=1e-5)
    return F.relu(x)


def ref_token_ln(x, weight, bias, eps=1e-6):
    n, c, h, w = x.shape
    tokens = x.reshape(n, c, h * w).transpose(1, 2)
    return F.layer_norm(tokens, (c,), weight, bias, eps).transpose(1, 2).reshape(n, c, h, w)


def ref_up(x, scale):
    return F.interpolate(x, size=(x.shape[2] * scale, x.shape[3] * scale), mode='bilinear', align_corners=False)


def ref_setr_up(x, sd, num_convs, up_scale, kernel_size):
    x = ref_token_ln(x, sd['norm.weight'], sd['norm.bias'])
    for i in range(num_convs):
        x = ref_up(ref_conv_bn_relu(x, sd, f'up_convs.{i}.0.', kernel_size // 2), up_scale)
    return F.conv2d(x, sd['conv_seg.weight'], sd['conv_seg.bias'])


@pytest.mark.parametrize('name,num_convs,up_scale,kernel_size', [
    ('naive', 1, 4, 1), ('pup', 4, 2, 3), ('naive_aux', 2, 4, 1), ('pup_aux', 2, 4, 3)])
def test_setr_up_head_matches_functional(name, num_convs, up_scale, kernel_size):
    head = randomize_(SETRUPHead(16, 8, num_convs, up_scale, kernel_size, num_classes=5, in_index=3))
    keys = set(head.state_dict())
    assert {'norm.weight', 'up_convs.0.0.conv.weight', 'up_convs.0.0.bn.running_var', 'conv_seg.bias'} <= keys
    assert not any(k.endswith('conv.bias') for k in keys)
    feats = rand_maps([(2, 16, 4, 4)] * 4)
    with torch.no_grad():
        got = head(feats)
    expected = ref_setr_up(feats[3], head.state_dict(), num_convs, up_scale, kernel_size)
    assert got.shape == (2, 5, 4 * up_scale ** num_convs, 4 * up_scale ** num_convs)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-8)


def ref_mla(feats, neck_sd, head_sd):
    projected = [ref_conv_bn_relu(ref_token_ln(x, neck_sd[f'norm.{i}.weight'], neck_sd[f'norm.{i}.bias']),
                                  neck_sd, f'mla.channel_proj.{i}.') for i, x in enumerate(feats)]
    p2, p3, p4, p5 = projected
    # mmseg MLAModule: sums p5, p5+p4, p5+p4+p3, p5+p4+p3+p2 go to feat_extract 0..3, returned in that order
    sums = [p5, p5 + p4, p5 + p4 + p3, p5 + p4 + p3 + p2]
    neck_out = [ref_conv_bn_relu(m, neck_sd, f'mla.feat_extract.{j}.', 1) for j, m in enumerate(sums)]
    ups = []
    for j, x in enumerate(neck_out):
        x = ref_conv_bn_relu(x, head_sd, f'up_convs.{j}.0.', 1)
        ups.append(ref_up(ref_conv_bn_relu(x, head_sd, f'up_convs.{j}.1.', 1), 4))
    return neck_out, F.conv2d(torch.cat(ups, 1), head_sd['conv_seg.weight'], head_sd['conv_seg.bias'])


def test_setr_mla_matches_functional():
    neck = randomize_(MLANeck((16,) * 4, 8), seed=2)
    head = randomize_(SETRMLAHead((8,) * 4, channels=16, mla_channels=4, num_classes=5), seed=3)
    assert {'norm.0.weight', 'mla.channel_proj.0.conv.weight', 'mla.feat_extract.3.bn.running_mean'} <= set(
        neck.state_dict())
    assert {'up_convs.3.1.conv.weight', 'conv_seg.weight'} <= set(head.state_dict())
    assert head.conv_seg.kernel_size == (1, 1)
    feats = rand_maps([(2, 16, 4, 4)] * 4)
    with torch.no_grad():
        neck_out = neck(feats)
        got = head(neck_out)
    ref_neck, expected = ref_mla(feats, neck.state_dict(), head.state_dict())
    for a, b in zip(neck_out, ref_neck):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    assert got.shape == (2, 5, 16, 16)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-8)


def test_mla_neck_output_order_is_deep_first():
    """mmseg quirk kept for checkpoint compatibility: out[0] depends on the deepest input only."""
    neck = randomize_(MLANeck((16,) * 4, 8))
    feats = rand_maps([(1, 16, 4, 4)] * 4)
    changed = rand_maps([(1, 16, 4, 4)], seed=5) + feats[1:]  # new shallowest map
    with torch.no_grad():
        a, b = neck(feats), neck(changed)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert not torch.allclose(a[3], b[3])


def test_setr_mla_aux_fcn_head_is_a_classifier():
    aux = randomize_(FCNHead(8, 8, num_convs=0, kernel_size=1, concat_input=False, num_classes=5, in_index=1))
    assert set(aux.state_dict()) == {'conv_seg.weight', 'conv_seg.bias'}
    feats = rand_maps([(2, 8, 4, 4)] * 4)
    torch.testing.assert_close(aux(feats), F.conv2d(feats[1], aux.conv_seg.weight, aux.conv_seg.bias))


# ---------------------------------------------------------------------------------------------------------------
# Shapes, attributes, errors


def test_conv_module_layout():
    m = ConvModule(4, 6, 3, padding=1)
    assert list(m.state_dict()) == ['conv.weight', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var',
                                    'bn.num_batches_tracked']
    assert m(torch.randn(1, 4, 5, 7)).min() >= 0


def test_output_shapes_and_num_classes():
    up = UPerHead(IN_CHANNELS, channels=8, num_classes=3).eval()
    feats = [torch.randn(1, c, *s) for c, s in zip(IN_CHANNELS, SIZES)]
    assert up(feats).shape == (1, 3, *SIZES[0]) and up.num_classes == 3
    pup = SETRUPHead(16, 8, num_convs=4, up_scale=2, kernel_size=3, num_classes=3).eval()
    assert pup([torch.randn(1, 16, 3, 5)]).shape == (1, 3, 48, 80)  # stride 16 -> stride 1
    naive = SETRUPHead(16, 8, num_classes=3).eval()
    assert naive([torch.randn(1, 16, 3, 5)]).shape == (1, 3, 12, 20)  # stride 16 -> stride 4
    for head in (FCNHead(8, 4, num_classes=3), SETRMLAHead((4,) * 4, 8, 2, num_classes=3), pup):
        assert head.num_classes == 3


@pytest.mark.parametrize('build', [
    lambda: UPerHead((8, 16), in_index=(0, 1, 2)),
    lambda: UPerHead(64, in_index=3),
    lambda: UPerHead(IN_CHANNELS, pool_scales=(1, 0)),
    lambda: FCNHead(32, 16, num_convs=0),
    lambda: FCNHead((8, 16), in_index=2),
    lambda: FCNHead(32, 16, num_convs=-1),
    lambda: FCNHead(32, 16, dropout_ratio=1.5),
    lambda: SETRUPHead(16, 8, kernel_size=2),
    lambda: SETRUPHead(16, 8, num_convs=0),
    lambda: SETRUPHead(16, 8, in_index=(0, 1)),
    lambda: SETRMLAHead((8,) * 4, channels=30, mla_channels=8),
    lambda: SETRMLAHead((8,) * 3, in_index=(0, 1, 2, 3)),
    lambda: MLANeck((), 8),
    lambda: MLANeck((16,) * 4, 0),
])
def test_bad_arguments_raise(build):
    with pytest.raises(ValueError):
        build()


def test_bad_inputs_raise():
    up = UPerHead(IN_CHANNELS, channels=8, num_classes=3)
    feats = [torch.randn(1, c, *s) for c, s in zip(IN_CHANNELS, SIZES)]
    with pytest.raises(ValueError, match='in_index'):
        up(feats[:3])
    with pytest.raises(ValueError, match=r'features\[1\]'):
        up([feats[0], feats[0], feats[2], feats[3]])
    with pytest.raises(ValueError, match='list of 4 feature maps'):
        MLANeck((16,) * 4, 8)([torch.randn(1, 16, 2, 2)] * 3)
    with pytest.raises(ValueError, match='list of feature maps'):
        SETRUPHead(16, 8)(torch.randn(4, 16, 2, 2))
    with pytest.raises(ValueError, match=r'features\[2\]'):
        FCNHead(32, 16)([torch.randn(1, 32, 2, 2)] * 2 + [torch.randn(1, 31, 2, 2)])
