"""Segmenter: mmseg preprocessing, whole / slide inference, predict(), argument checks (tiny models, CPU)."""
import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import asmlp  # noqa: F401
from asmlp.models.heads import FCNHead, UPerHead
from asmlp.models.heads import SETRUPHead
from asmlp.models.label_maps import blended_argmax, resized_argmax
from asmlp.models.lowres_conv import direct_convolutions
from asmlp.models.segmenter import InferenceConfig, Segmenter
from asmlp.preprocess import ADE20K_MEAN, preprocess, rescale_size


def tiny_upernet(num_classes=5, **inference):
    backbone = timm.create_model('asmlp_tiny', features_only=True, embed_dim=8, depths=(1, 1, 1, 1))
    head = UPerHead((8, 16, 32, 64), channels=8, num_classes=num_classes)
    aux = FCNHead(32, channels=8, num_classes=num_classes)
    return Segmenter(backbone, head, aux, inference=InferenceConfig(**inference)).eval()


class PixelHead(nn.Module):
    """A 1x1 conv on the image itself: translation-equivariant, so every crop sees the same per-pixel logits."""
    num_classes = 4

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, feats):
        return self.conv(feats[0])


@pytest.mark.parametrize('hw,expected', [
    ((480, 640), (512, 683)),  # a typical ADE20K val image (mmseg's (2048, 512) keep-ratio resize of 480x640: 512x683)
    ((100, 1000), (205, 2048)),  # long side capped at 2048
    ((512, 512), (512, 512)),
    ((1024, 768), (683, 512)),
])
def test_keep_ratio_resize_into_2048x512(hw, expected):
    assert rescale_size(*hw) == expected
    image = np.random.randint(0, 256, (*hw, 3), dtype=np.uint8)
    assert preprocess(image).shape == (1, 3, *expected)


def test_normalisation_uses_ade20k_mean_and_std():
    image = np.broadcast_to(np.array(ADE20K_MEAN).round().astype(np.uint8), (4, 4, 3)).copy()
    x = preprocess(image, scale=None)
    assert x.abs().max() < 0.02  # the mean colour maps to ~0 in every channel


def test_whole_inference_logits_at_input_size():
    model = tiny_upernet()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 70, 45))
    assert logits.shape == (2, 5, 70, 45)


def test_slide_counts_and_averages_crops(monkeypatch):
    # mmseg ``EncoderDecoder.slide_inference`` at 512x2048, crop 512, stride 341: 1 x 6 crops; 512x683: 2
    model = Segmenter(nn.Module(), PixelHead(), inference=InferenceConfig('slide', (512, 512), (341, 341)))
    model.backbone.forward = lambda x: [x]
    whole = Segmenter(model.backbone, model.decode_head).eval()
    calls = []
    original = model.encode_decode
    monkeypatch.setattr(model, 'encode_decode', lambda x: calls.append(tuple(x.shape[-2:])) or original(x))
    for size, crops in (((512, 2048), 6), ((512, 683), 2), ((300, 200), 1), ((700, 700), 4)):
        calls.clear()
        img = torch.randn(1, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(model(img), whole(img))  # equal logits in every crop: the average is exact
        assert len(calls) == crops
        assert all(c == (min(512, size[0]), min(512, size[1])) for c in calls)


def test_predict_returns_a_label_map_at_the_image_size():
    model = tiny_upernet(num_classes=7)
    image = np.random.randint(0, 256, (37, 53, 3), dtype=np.uint8)
    labels = model.predict(image, scale=(128, 64))
    assert labels.shape == (37, 53) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 7


@pytest.mark.parametrize('bad,match', [
    (np.zeros((8, 8), np.uint8), 'HxWx3'), (np.zeros((8, 8, 4), np.uint8), 'HxWx3'),
    (np.zeros((8, 8, 3), np.float32), 'uint8'), (np.zeros((0, 8, 3), np.uint8), '>= 1'), ('image.png', 'numpy'),
])
def test_predict_refuses_bad_images(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_upernet().predict(bad)


@pytest.mark.parametrize('bad,match', [
    (torch.randn(8, 8), 'NCHW'), (torch.randn(1, 1, 8, 8), 'input channels'), (torch.randn(1, 4, 8, 8), '3'),
])
def test_forward_refuses_bad_tensors(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_upernet()(bad)


@pytest.mark.parametrize('kwargs', [dict(mode='sliding'), dict(mode='slide', crop_size=(0, 512)), dict(short_side=16),
                                    dict(short_side=512.0)])
def test_bad_inference_config(kwargs):
    with pytest.raises(ValueError):
        InferenceConfig(**kwargs)


@pytest.mark.parametrize('size', [(37, 50), (7, 9), (3, 40), (64, 5)])  # up, same, down/up mixes
@pytest.mark.parametrize('channels_last', [False, True])
def test_resized_argmax_equals_resize_then_argmax(size, channels_last):
    g = torch.Generator().manual_seed(sum(size))
    logits = torch.randn(2, 11, 7, 9, generator=g, dtype=torch.float64)
    if channels_last:
        logits = logits.contiguous(memory_format=torch.channels_last)
    expected = F.interpolate(logits, size=size, mode='bilinear', align_corners=False).argmax(1)
    for band_bytes in (1, 1000, 1 << 20):  # one row per band, a few rows, everything in one band
        assert torch.equal(resized_argmax(logits, size, band_bytes=band_bytes), expected)


def test_resized_argmax_widens_low_precision_logits():
    logits = torch.randn(1, 150, 16, 22).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    got = resized_argmax(logits, (64, 86))
    expected = F.interpolate(logits.float(), size=(64, 86), mode='bilinear', align_corners=False).argmax(1)
    assert got.dtype == torch.int64 and (got == expected).float().mean() > 0.999  # float32 rounding order only


@pytest.mark.parametrize('scale', [(128, 64), None])
def test_predict_resizes_like_mmseg(scale):
    """'whole': head logits to the network input's size, then to the image's (mmseg EncoderDecoder + postprocess)."""
    model = tiny_upernet(num_classes=7).double()
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    x = preprocess(image, scale).double()
    with torch.no_grad():
        logits = model(x)  # already at the input's size
        expected = F.interpolate(logits, size=(37, 53), mode='bilinear', align_corners=False).argmax(1)[0]
    assert np.array_equal(model.predict(image, scale=scale), expected.numpy())


def test_resized_argmax_blends_in_float32_under_autocast():
    logits = torch.randn(1, 150, 16, 22).contiguous(memory_format=torch.channels_last)
    expected = F.interpolate(logits, size=(64, 86), mode='bilinear', align_corners=False).argmax(1)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = resized_argmax(logits, (64, 86))
    assert (got == expected).float().mean() > 0.9999  # bf16 blending would flip ~1% of the pixels


def test_blended_argmax_equals_sum_then_argmax():
    """Overlapping pieces of different sizes, each resized to its box; any band height."""
    g = torch.Generator().manual_seed(3)
    boxes = [(0, 20, 0, 24), (0, 20, 13, 37), (9, 29, 5, 37), (19, 29, 0, 10)]  # cover a 29 x 37 canvas
    pieces = [(torch.randn(2, 6, h, w, generator=g, dtype=torch.float64), box)
              for (h, w), box in zip([(5, 6), (20, 24), (7, 3), (10, 10)], boxes)]
    total = torch.zeros(2, 6, 29, 37, dtype=torch.float64)
    for logits, (y1, y2, x1, x2) in pieces:
        total[:, :, y1:y2, x1:x2] += F.interpolate(logits, size=(y2 - y1, x2 - x1), mode='bilinear',
                                                   align_corners=False)
    for band_bytes in (1, 2000, 1 << 22):
        assert torch.equal(blended_argmax(pieces, (29, 37), band_bytes=band_bytes), total.argmax(1))
    with pytest.raises(ValueError, match='does not fit'):
        blended_argmax([(pieces[0][0], (0, 30, 0, 37))], (29, 37))


def tiny_setr(num_convs, up_scale, **inference):
    backbone = timm.create_model('asmlp_tiny', features_only=True, embed_dim=8, depths=(1, 1, 1, 1))
    head = SETRUPHead(64, 16, num_convs=num_convs, up_scale=up_scale, kernel_size=3, num_classes=7, in_index=3)
    return Segmenter(backbone, head, inference=InferenceConfig(**inference)).double().eval()


@pytest.mark.parametrize('mode', ['slide', 'whole'])
@pytest.mark.parametrize('num_convs,up_scale', [(5, 2), (2, 4)])  # logits at the crop's size / at half of it
def test_predict_fuses_crops_like_slide_inference(mode, num_convs, up_scale):
    """predict() blends the crops' head logits before their last resize; the reference runs mmseg's
    slide_inference with every convolution literal, then the argmax."""
    torch.manual_seed(0)
    model = tiny_setr(num_convs, up_scale, mode=mode, crop_size=(64, 64), stride=(43, 43))
    image = np.random.default_rng(1).integers(0, 256, (64, 101, 3), dtype=np.uint8)  # 2 crops, 21 columns shared
    assert len(model.crop_boxes(64, 101)) == (2 if mode == 'slide' else 1)
    x = preprocess(image, scale=None).double()
    with torch.no_grad(), direct_convolutions():
        expected = model(x).argmax(1)[0].numpy()
    assert np.array_equal(model.predict(image, scale=None), expected)
