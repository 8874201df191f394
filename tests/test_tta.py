"""MS+flip test-time inference against a literal per-view re-statement of mmseg 0.x ``aug_test``
(``MultiScaleFlipAug`` scales, ``Resize(keep_ratio)`` = mmcv ``imrescale``, ``RandomFlip``, ``Normalize``,
``EncoderDecoder.whole_inference`` / ``slide_inference`` / ``inference`` / ``aug_test``), on nano models."""
import dataclasses

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asmlp.models.tta import MS_RATIOS, aug_scales, cost_factor, ms_flip_probabilities, segment
from asmlp.synthetic import generate_scene
from asmlp.zoo import build_segmenter

MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def mmcv_imrescale(img, scale):
    h, w = img.shape[:2]
    max_long_edge, max_short_edge = max(scale), min(scale)
    scale_factor = min(max_long_edge / max(h, w), max_short_edge / min(h, w))
    new_size = int(w * float(scale_factor) + 0.5), int(h * float(scale_factor) + 0.5)
    return cv2.resize(img, new_size, interpolation=cv2.INTER_LINEAR)


def mmseg_slide_inference(model, img, crop_size, stride, num_classes):
    h_stride, w_stride = stride
    h_crop, w_crop = crop_size
    batch_size, _, h_img, w_img = img.size()
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    preds = img.new_zeros((batch_size, num_classes, h_img, w_img))
    count_mat = img.new_zeros((batch_size, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1 = h_idx * h_stride
            x1 = w_idx * w_stride
            y2 = min(y1 + h_crop, h_img)
            x2 = min(x1 + w_crop, w_img)
            y1 = max(y2 - h_crop, 0)
            x1 = max(x2 - w_crop, 0)
            crop_img = img[:, :, y1:y2, x1:x2]
            crop_seg_logit = model.encode_decode(crop_img)
            preds += F.pad(crop_seg_logit, (int(x1), int(preds.shape[3] - x2), int(y1), int(preds.shape[2] - y2)))
            count_mat[:, :, y1:y2, x1:x2] += 1
    return preds / count_mat


def mmseg_aug_test(model, image, img_scale, ratios):
    """tools/test.py --aug-test: img_ratios and flip=True; aug_test averages the views' softmax."""
    h, w = img_scale
    scales = [(int(h * ratio), int(w * ratio)) for ratio in ratios]
    ori_shape = image.shape[:2]
    seg_logit = None
    n = 0
    for scale in scales:
        for flip in (False, True):
            img = mmcv_imrescale(image, scale)
            if flip:
                img = np.flip(img, axis=1)
            img = (img.astype(np.float32) - MEAN) / STD
            x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
            cfg = model.inference
            if cfg.mode == 'slide':
                logit = mmseg_slide_inference(model, x, cfg.crop_size, cfg.stride, model.num_classes)
            else:
                logit = model.encode_decode(x)
            logit = F.interpolate(logit, size=ori_shape, mode='bilinear', align_corners=False)
            output = F.softmax(logit, dim=1)
            if flip:
                output = output.flip(dims=(3,))
            seg_logit = output if seg_logit is None else seg_logit + output
            n += 1
    seg_logit /= n
    return seg_logit, seg_logit.argmax(dim=1)[0].numpy()


@pytest.fixture(autouse=True)
def one_thread():
    """Small models, many small ops: one thread (two can be 10x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def image():
    return generate_scene((9, 0), (64, 80)).image


@pytest.mark.parametrize('name,mode', [('upernet_asmlp_nano', 'whole'), ('setr_pup_vit_nano', 'slide')])
def test_ms_flip_equals_mmseg_aug_test(name, mode, image):
    torch.manual_seed(0)
    model = build_segmenter(name).eval()
    if mode == 'slide':  # crops smaller than the larger views: the window slides inside each view
        model.inference = dataclasses.replace(model.inference, mode='slide', crop_size=(64, 64), stride=(48, 48))
    short = 64  # views of 32x40 (smaller than the window) .. 112x140 (6 crops)
    with torch.inference_mode():
        theirs, labels = mmseg_aug_test(model, image, (4 * short, short), MS_RATIOS)
        ours = ms_flip_probabilities(model, image, aug_scales(short))
    torch.testing.assert_close(ours, theirs, atol=2e-6, rtol=0)
    agree = (segment(model, image, 'ms-flip', short_side=short) == labels).mean()
    assert agree > 0.999  # labels: argmax of the same sums (ties of float noise aside)


def test_scales_and_cost():
    assert aug_scales(512) == [(1024, 256), (1536, 384), (2048, 512), (2560, 640), (3072, 768), (3584, 896)]
    assert aug_scales(128)[0] == (256, 64)
    assert cost_factor('ms-flip') == pytest.approx(17.375) and cost_factor('none') == 1.0
    with pytest.raises(ValueError, match='test-time augmentation'):
        cost_factor('tta')


def test_single_scale_is_predict(image):
    torch.manual_seed(0)
    model = build_segmenter('upernet_swin_nano').eval()
    np.testing.assert_array_equal(segment(model, image, 'none'), model.predict(image, scale=(512, 128)))
