"""asmlp.models.lowres_conv and the heads' inference paths that use it.

Reference: the literal computation, ``F.conv2d(F.interpolate(x, size, mode='bilinear'), w, padding=k // 2)`` (and
the heads run inside ``direct_convolutions()``), in float64 where the two must agree to rounding.
"""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import asmlp.models.heads as heads_module
from asmlp.metrics import count_gmacs
from asmlp.models.heads import SETRMLAHead, SETRUPHead, UPerHead
from asmlp.models.lowres_conv import (conv_of_resized, direct_convolutions, interpolation_matrix, lowres_enabled,
                                      use_lowres)
from asmlp.zoo import build_segmenter
from test_heads import randomize_, rand_maps


def literal(maps, weights, size, align_corners=False):
    return sum(F.conv2d(F.interpolate(x, size=size, mode='bilinear', align_corners=align_corners), w,
                        padding=w.shape[-1] // 2) for x, w in zip(maps, weights))


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('in_size,out_size', [((7, 9), (13, 17)), ((5, 3), (5, 3)), ((9, 12), (4, 5)),
                                              ((1, 1), (3, 2)), ((4, 6), (1, 1))])
def test_interpolation_matrix_is_f_interpolate(in_size, out_size, align_corners):
    x = torch.randn(2, 3, *in_size, dtype=torch.float64)
    rows = interpolation_matrix(in_size[0], out_size[0], align_corners)
    cols = interpolation_matrix(in_size[1], out_size[1], align_corners)
    separable = torch.einsum('Yi,ncij,Xj->ncYX', rows, x, cols)
    torch.testing.assert_close(separable, F.interpolate(x, out_size, mode='bilinear', align_corners=align_corners),
                               atol=1e-13, rtol=0)


@pytest.mark.parametrize('kernel', [1, 3, 5])
@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('size', [(20, 27), (9, 6), (3, 2)])  # upsampling, not a multiple, and downsampling
def test_conv_of_resized_equals_the_literal_computation(kernel, align_corners, size):
    shapes = [(2, 4, 10, 14), (2, 6, 5, 7), (2, 3, 3, 4)]
    maps = rand_maps(shapes, seed=kernel)
    g = torch.Generator().manual_seed(7)
    weights = [torch.randn(5, s[1], kernel, kernel, generator=g, dtype=torch.float64) for s in shapes]
    got = conv_of_resized(maps, weights, size, align_corners)
    expected = literal(maps, weights, size, align_corners)
    assert got.shape == expected.shape == (2, 5, *size) and expected.abs().max() > 1
    torch.testing.assert_close(got, expected, atol=1e-11, rtol=1e-11)


def test_conv_of_resized_any_memory_format_and_autocast_dtype():
    maps = [m.contiguous(memory_format=torch.channels_last) for m in rand_maps([(1, 8, 6, 9), (1, 8, 3, 5)])]
    weights = [torch.randn(4, 8, 3, 3, dtype=torch.float64) for _ in maps]
    torch.testing.assert_close(conv_of_resized(maps, weights, (12, 17)), literal(maps, weights, (12, 17)))
    maps32, weights32 = [m.float() for m in maps], [w.float() for w in weights]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = conv_of_resized(maps32, weights32, (12, 17))
    assert got.dtype == torch.bfloat16
    expected = literal(maps32, weights32, (12, 17))
    assert ((got.float() - expected).norm() / expected.norm()) < 2e-2  # bf16 rounding, nothing more


def test_conv_of_resized_refuses_mismatched_weights():
    maps = rand_maps([(1, 4, 3, 3)])
    with pytest.raises(ValueError, match='as many weights'):
        conv_of_resized(maps, [], (6, 6))
    with pytest.raises(ValueError, match='does not fit'):
        conv_of_resized(maps, [torch.randn(2, 5, 3, 3, dtype=torch.float64)], (6, 6))
    with pytest.raises(ValueError, match='odd'):
        conv_of_resized(maps, [torch.randn(2, 4, 2, 2, dtype=torch.float64)], (6, 6))


def test_use_lowres_only_when_it_halves_the_macs_and_is_enabled():
    coarse = [torch.empty(1, 512, 64, 86, device='meta'), torch.empty(1, 512, 32, 43, device='meta')]
    assert use_lowres(coarse, 512, 3, (128, 171))  # UperNet-T's bottleneck at 512x683
    assert not use_lowres([torch.empty(1, 256, 128, 128, device='meta')], 256, 3, (256, 256))  # SETR-PUP's last
    assert not use_lowres([torch.empty(1, 2, 8, 8, device='meta')], 2, 3, (16, 16))  # few channels: direct is cheaper
    with direct_convolutions():
        assert not lowres_enabled() and not use_lowres(coarse, 512, 3, (128, 171))
    assert lowres_enabled()


@pytest.fixture
def lowres_calls(monkeypatch):
    """Counts the heads' calls of conv_of_resized (so a test cannot pass on the direct path alone)."""
    calls = []
    original = heads_module.conv_of_resized
    monkeypatch.setattr(heads_module, 'conv_of_resized', lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def test_uperhead_lowres_bottleneck_equals_direct(lowres_calls):
    channels = (32, 64, 96, 128)
    head = randomize_(UPerHead(channels, channels=48, num_classes=5))
    feats = rand_maps([(2, c, *s) for c, s in zip(channels, ((24, 31), (12, 16), (6, 8), (3, 4)))])
    with torch.no_grad():
        got = head(feats)
        assert len(lowres_calls) == 1
        with direct_convolutions():
            expected = head(feats)
    assert len(lowres_calls) == 1 and expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    head.train()  # training computes literally (and dropout is active, so compare call counts only)
    head(feats)
    assert len(lowres_calls) == 1


def test_setr_pup_lowres_convs_and_classifier_order_equal_direct(lowres_calls):
    head = randomize_(SETRUPHead(64, 64, num_convs=4, up_scale=2, kernel_size=3, num_classes=5, in_index=0))
    feats = rand_maps([(1, 64, 6, 5)])
    with torch.no_grad():
        got = head(feats)
        with direct_convolutions():
            expected = head(feats)
    assert lowres_calls and got.shape == (1, 5, 96, 80)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


def test_setr_mla_classifier_before_upsampling_equals_direct():
    head = randomize_(SETRMLAHead((8,) * 4, channels=16, mla_channels=4, num_classes=5))
    feats = rand_maps([(2, 8, 5, 7)] * 4)
    with torch.no_grad():
        got = head(feats)
        with direct_convolutions():
            expected = head(feats)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


def test_flop_counts_follow_the_papers_while_inference_does_less():
    """count_gmacs counts the architecture (UperNet-AS-MLP-T: 937 GMACs at 512x2048 in AS-MLP Table 6, asserted in
    test_zoo); the inference path at 512x683 runs at most 60% of those MACs."""
    with torch.device('meta'):
        model = build_segmenter('upernet_asmlp_tiny').eval()
    counted = count_gmacs(model, (1, 3, 512, 683))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.empty(1, 3, 512, 683, device='meta'))
    executed = counter.get_total_flops() / 2e9
    assert 250 < counted < 350 and executed < 0.6 * counted
