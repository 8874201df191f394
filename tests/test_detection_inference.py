"""The detectors' inference pieces against independent re-statements of mmdet 2.11 (github.com/open-mmlab/mmdetection
v2.11.0, as vendored by svip-lab/AS-MLP-Object-Detection) written literally here in numpy / plain torch, and against
torchvision's RoIAlign and NMS; then whole Mask R-CNN / Cascade Mask R-CNN tests of small models with fixed weights
against the same re-statements chained by hand."""
import math

import cv2
import numpy as np
import pytest
import torch
import torchvision

from asmlp.detectors import architecture_entry, build_detector, detector_entry
from asmlp.models.detection import Instances, preprocess_image
from asmlp.models.detection.anchors import AnchorGenerator
from asmlp.models.detection.bbox_coder import DeltaXYWHBBoxCoder, delta2bbox
from asmlp.models.detection.bbox_heads import RCNNTestConfig
from asmlp.models.detection.postprocess import do_paste_mask, multiclass_nms, paste_masks
from asmlp.models.detection.roi_extractor import SingleRoIExtractor
from asmlp.models.detection.rpn_head import RPNTestConfig, select_proposals

MAX_RATIO = abs(math.log(16 / 1000))


# ------------------------------------------------------------------------ literal re-statements of mmdet 2.11

def ref_anchors(stride, feat_h, feat_w, ratios=(0.5, 1.0, 2.0), scale=8):
    """AnchorGenerator: base size = stride, h = base * scale * sqrt(r), w = base * scale / sqrt(r), centred on
    (x * stride, y * stride), rows in (y, x, ratio) order, no rounding."""
    rows = []
    for y in range(feat_h):
        for x in range(feat_w):
            for r in ratios:
                w, h = stride * scale / math.sqrt(r), stride * scale * math.sqrt(r)
                cx, cy = x * stride, y * stride
                rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(rows)


def ref_decode(rois, deltas, stds, max_hw):
    """delta2bbox: deltas * stds; |dw|, |dh| <= log(1000/16); centre/size without +1; clip to [0, W] x [0, H]."""
    rois, deltas = np.asarray(rois, np.float64), np.asarray(deltas, np.float64)
    out = np.empty_like(deltas)
    for k in range(deltas.shape[1] // 4):
        dx, dy, dw, dh = (deltas[:, 4 * k + i] * stds[i] for i in range(4))
        dw, dh = np.clip(dw, -MAX_RATIO, MAX_RATIO), np.clip(dh, -MAX_RATIO, MAX_RATIO)
        pw, ph = rois[:, 2] - rois[:, 0], rois[:, 3] - rois[:, 1]
        px, py = (rois[:, 0] + rois[:, 2]) / 2, (rois[:, 1] + rois[:, 3]) / 2
        gw, gh, gx, gy = pw * np.exp(dw), ph * np.exp(dh), px + pw * dx, py + ph * dy
        out[:, 4 * k:4 * k + 4] = np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], 1)
    if max_hw is not None:
        out[:, 0::2] = np.clip(out[:, 0::2], 0, max_hw[1])
        out[:, 1::2] = np.clip(out[:, 1::2], 0, max_hw[0])
    return out


def ref_iou(box, boxes):
    """mmcv nms IoU with offset 0: area = (x2 - x1) * (y2 - y1)."""
    xx1, yy1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    xx2, yy2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    with np.errstate(invalid='ignore'):  # two empty boxes: 0 / 0, never above the threshold
        return inter / ((box[2] - box[0]) * (box[3] - box[1]) + areas - inter)


def ref_nms(boxes, scores, thr):
    """Greedy NMS by decreasing score; a box is suppressed by a kept one when IoU > thr. Kept indices in order."""
    boxes, scores = np.asarray(boxes, np.float64), np.asarray(scores, np.float64)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for i in np.argsort(-scores, kind='stable'):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= ref_iou(boxes[i], boxes) > thr
    return np.array(keep, dtype=np.int64)


def ref_batched_nms(boxes, scores, groups, thr):
    """NMS within each group, then all kept by decreasing score."""
    kept = []
    for g in np.unique(groups):
        idx = np.nonzero(groups == g)[0]
        kept.extend(idx[ref_nms(boxes[idx], scores[idx], thr)])
    kept = np.array(kept, dtype=np.int64)
    return kept[np.argsort(-np.asarray(scores)[kept], kind='stable')]


def ref_proposals(level_scores, level_deltas, level_anchors, img_hw, nms_pre, max_per_img, thr=0.7):
    """RPNHead._get_bboxes: per level the top nms_pre by score, decode (stds 1), clip, NMS per level, top max."""
    scores, boxes, levels = [], [], []
    for lvl, (s, d, a) in enumerate(zip(level_scores, level_deltas, level_anchors)):
        if len(s) > nms_pre:
            top = np.argsort(-s, kind='stable')[:nms_pre]
            s, d, a = s[top], d[top], a[top]
        scores.append(s)
        boxes.append(ref_decode(a, d, (1, 1, 1, 1), img_hw))
        levels.append(np.full(len(s), lvl))
    scores, boxes, levels = np.concatenate(scores), np.concatenate(boxes), np.concatenate(levels)
    keep = ref_batched_nms(boxes, scores, levels, thr)[:max_per_img]
    return boxes[keep], scores[keep]


def ref_multiclass_nms(boxes, scores, score_thr, thr, max_num):
    """multiclass_nms: background (last) dropped, (box, class) candidates with score > thr in row-major order,
    NMS per class, top max_num by score."""
    n, num_classes = scores.shape[0], scores.shape[1] - 1
    cand_boxes = boxes.reshape(n, num_classes, 4).reshape(-1, 4)
    cand_scores = scores[:, :-1].reshape(-1)
    cand_labels = np.tile(np.arange(num_classes), n)
    valid = np.nonzero(cand_scores > score_thr)[0]
    cand_boxes, cand_scores, cand_labels = cand_boxes[valid], cand_scores[valid], cand_labels[valid]
    keep = ref_batched_nms(cand_boxes, cand_scores, cand_labels, thr)[:max_num]
    return cand_boxes[keep], cand_scores[keep], cand_labels[keep]


def ref_level(box, finest_scale=56):
    """SingleRoIExtractor.map_roi_levels: floor(log2(sqrt(w * h) / 56 + 1e-6)) clamped to [0, 3]."""
    scale = math.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    return int(min(max(math.floor(math.log2(scale / finest_scale + 1e-6)), 0), 3))


def ref_bilinear(feat, y, x):
    """mmcv / Detectron2 RoIAlign bilinear sample of a (C, H, W) map (0 outside [-1, H] x [-1, W])."""
    _, height, width = feat.shape
    if y < -1 or y > height or x < -1 or x > width:
        return np.zeros(feat.shape[0])
    y, x = max(y, 0.), max(x, 0.)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * feat[:, y_low, x_low] + hy * lx * feat[:, y_low, x_high]
            + ly * hx * feat[:, y_high, x_low] + ly * lx * feat[:, y_high, x_high])


def ref_roi_align(feat, box, spatial_scale, out):
    """mmcv RoIAlign(aligned=True, sampling_ratio=0, avg): box shifted by -0.5 px, adaptive ceil(bin) samples."""
    x1, y1, x2, y2 = (c * spatial_scale - 0.5 for c in box)
    roi_w, roi_h = x2 - x1, y2 - y1
    bin_w, bin_h = roi_w / out, roi_h / out
    grid_w, grid_h = math.ceil(roi_w / out), math.ceil(roi_h / out)
    count = max(grid_w * grid_h, 1)
    res = np.zeros((feat.shape[0], out, out))
    for ph in range(out):
        for pw in range(out):
            acc = np.zeros(feat.shape[0])
            for iy in range(grid_h):
                yy = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                for ix in range(grid_w):
                    xx = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    acc += ref_bilinear(feat, yy, xx)
            res[:, ph, pw] = acc / count
    return res


def ref_paste(prob, box, img_h, img_w):
    """_do_paste_mask over the whole image: pixel centre (j + 0.5) -> (c - x0) / (x1 - x0) * 2 - 1 -> grid_sample
    (bilinear, zeros, align_corners=False) of the m x m map, i.e. mask coordinate (u + 1) * m / 2 - 0.5."""
    m = prob.shape[0]
    x0, y0, x1, y1 = box
    out = np.zeros((img_h, img_w))
    padded = np.zeros((m + 2, m + 2))
    padded[1:-1, 1:-1] = prob
    for i in range(img_h):
        v = ((i + 0.5 - y0) / (y1 - y0) * 2 - 1 + 1) * m / 2 - 0.5
        for j in range(img_w):
            u = ((j + 0.5 - x0) / (x1 - x0) * 2 - 1 + 1) * m / 2 - 0.5
            if not (-1 < u < m and -1 < v < m):
                continue
            fu, fv = math.floor(u), math.floor(v)
            au, av = u - fu, v - fv
            out[i, j] = ((1 - av) * ((1 - au) * padded[fv + 1, fu + 1] + au * padded[fv + 1, fu + 2])
                         + av * ((1 - au) * padded[fv + 2, fu + 1] + au * padded[fv + 2, fu + 2]))
    return out


def ref_resized_size(height, width, scale=(1333, 800)):
    """mmcv.rescale_size: factor min(long cap / long side, short cap / short side), int(x * factor + 0.5)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


# ------------------------------------------------------------------------ the pieces

def test_anchors_are_mmdets_unrounded_fixed_stride_grid():
    gen = AnchorGenerator()
    # stride 4, ratio 0.5 / 1 / 2: w = 32 / sqrt(r), h = 32 * sqrt(r); torchvision rounds these to (-23, -11, 23, 11)
    np.testing.assert_allclose(gen.base_anchors[0].numpy(), [[-22.627417, -11.313708, 22.627417, 11.313708],
                                                             [-16., -16., 16., 16.],
                                                             [-11.313708, -22.627417, 11.313708, 22.627417]],
                               rtol=1e-6)
    tv = torchvision.models.detection.anchor_utils.AnchorGenerator(((32,),), ((0.5, 1.0, 2.0),))
    assert tv.cell_anchors[0][0].tolist() == [-23., -11., 23., 11.]  # the difference this project avoids
    sizes = [(5, 7), (3, 4), (2, 2), (1, 1), (1, 1)]  # a P6 of one cell keeps stride 64 (torchvision: padded // 1)
    for anchors, stride, (h, w) in zip(gen.grid_anchors(sizes), (4, 8, 16, 32, 64), sizes):
        np.testing.assert_allclose(anchors.numpy(), ref_anchors(stride, h, w), rtol=1e-6, atol=1e-4)


def test_delta_decoding_clamps_both_ways_and_clips_to_the_image():
    rng = np.random.default_rng(0)
    rois = np.sort(rng.uniform(0, 300, (200, 4)).reshape(200, 2, 2), axis=1).transpose(0, 2, 1).reshape(200, 4)
    deltas = rng.normal(0, 2, (200, 8)).astype(np.float32)
    deltas[:5, 2], deltas[5:10, 3], deltas[10:15, 2] = 50, -50, -9  # beyond log(1000/16) both ways
    stds = (0.1, 0.1, 0.2, 0.2)
    got = delta2bbox(torch.tensor(rois, dtype=torch.float32), torch.tensor(deltas), stds=stds, max_shape=(240, 320))
    np.testing.assert_allclose(got.numpy(), ref_decode(rois, deltas, stds, (240, 320)), rtol=1e-5, atol=2e-3)
    huge = delta2bbox(torch.tensor([[10., 10., 20., 20.]]), torch.tensor([[0., 0., 99., -99.]]))
    np.testing.assert_allclose(huge.numpy(), ref_decode([[10, 10, 20, 20]], [[0, 0, 99, -99]], (1, 1, 1, 1), None),
                               rtol=1e-5)


def test_proposal_selection_per_level_topk_nms_within_levels():
    rng = np.random.default_rng(1)
    gen = AnchorGenerator()
    sizes = [(12, 16), (6, 8), (3, 4), (2, 2), (1, 1)]
    anchors = [a.numpy() for a in gen.grid_anchors(sizes)]
    scores = [rng.uniform(0, 1, len(a)).astype(np.float32) for a in anchors]
    deltas = [rng.normal(0, 0.3, (len(a), 4)).astype(np.float32) for a in anchors]
    cfg = RPNTestConfig(nms_pre=100, max_per_img=120, iou_threshold=0.7)  # small: both cuts bite (141 after NMS)
    boxes, kept_scores = select_proposals([torch.tensor(s) for s in scores], [torch.tensor(d) for d in deltas],
                                          [torch.tensor(a) for a in anchors], (45, 61), DeltaXYWHBBoxCoder(), cfg)
    ref_boxes, ref_scores = ref_proposals(scores, deltas, anchors, (45, 61), 100, 120)
    assert len(boxes) == len(ref_boxes) == 120
    np.testing.assert_allclose(kept_scores.numpy(), ref_scores, rtol=0, atol=0)
    np.testing.assert_allclose(boxes.numpy(), ref_boxes, atol=1e-4)


def test_roi_align_per_level_is_mmcvs_aligned_adaptive_roialign():
    rng = np.random.default_rng(2)
    strides = (4, 8, 16, 32)
    feats = [torch.tensor(rng.normal(size=(1, 3, 64 // s * 4, 96 // s * 4)), dtype=torch.float32) for s in strides]
    boxes = [[3.3, 5.1, 20.7, 30.2], [10, 12, 130, 140], [0, 0, 150, 130], [-4, 30, 250, 250], [40, 40, 40.5, 41],
             [20, 10, 530, 480]]
    rois = torch.tensor([[0., *b] for b in boxes])
    extractor = SingleRoIExtractor(7, strides)
    got = extractor(feats, rois)
    for k, box in enumerate(boxes):
        level = ref_level(box)
        want = ref_roi_align(feats[level][0].double().numpy(), box, 1 / strides[level], 7)
        np.testing.assert_allclose(got[k].numpy(), want, rtol=1e-4, atol=1e-5)
        peer = torchvision.ops.roi_align(feats[level], rois[k:k + 1], 7, 1 / strides[level], 0, True)
        torch.testing.assert_close(got[k], peer[0])
    assert [ref_level(b) for b in boxes] == [0, 1, 1, 2, 0, 3]  # every level used


def test_multiclass_nms_is_per_class_greedy_nms_over_scores_above_threshold():
    rng = np.random.default_rng(3)
    n, classes = 150, 6
    centres = rng.uniform(0, 200, (n, 1, 2))
    half = rng.uniform(5, 40, (n, classes, 2))
    boxes = np.concatenate([centres - half, centres + half], axis=2).reshape(n, classes * 4).astype(np.float32)
    logits = rng.normal(0, 2, (n, classes + 1))
    scores = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    dets, labels, _ = multiclass_nms(torch.tensor(boxes), torch.tensor(scores), 0.05, 0.5, 100)
    ref_b, ref_s, ref_l = ref_multiclass_nms(boxes, scores, 0.05, 0.5, 100)
    assert len(dets) == 100
    np.testing.assert_array_equal(labels.numpy(), ref_l)
    np.testing.assert_allclose(dets[:, 4].numpy(), ref_s, rtol=0, atol=0)
    np.testing.assert_allclose(dets[:, :4].numpy(), ref_b, rtol=0, atol=0)
    # torchvision's NMS run class by class keeps the same detections
    peer = []
    for c in range(classes):
        s, b = torch.tensor(scores[:, c]), torch.tensor(boxes[:, 4 * c:4 * c + 4])
        keep = torch.nonzero(s > 0.05).squeeze(1)
        peer += [(float(s[i]), c) for i in keep[torchvision.ops.nms(b[keep], s[keep], 0.5)]]
    peer = sorted(peer, reverse=True)[:100]
    assert sorted(zip(dets[:, 4].tolist(), labels.tolist()), reverse=True) == peer


def test_multiclass_nms_score_threshold_is_strict_and_empty_is_fine():
    boxes = torch.tensor([[0., 0., 10., 10.]])
    scores = torch.tensor([[0.05, 0.9, 0.05]])  # class 0 exactly at the threshold: dropped (> 0.05)
    dets, labels, _ = multiclass_nms(boxes, scores, 0.05, 0.5, 100)
    assert labels.tolist() == [1] and dets.shape == (1, 5)
    dets, labels, _ = multiclass_nms(boxes, torch.tensor([[0.01, 0.01, 0.98]]), 0.05, 0.5, 100)
    assert dets.shape == (0, 5) and labels.shape == (0,)


def test_mask_paste_is_mmdets_grid_sample_and_cpu_crop_equals_full_image():
    rng = np.random.default_rng(4)
    probs = rng.uniform(0, 1, (4, 1, 28, 28)).astype(np.float32)
    boxes = np.array([[5.2, 7.9, 40.3, 33.1], [0, 0, 63, 47], [30.5, 2.25, 31.5, 45.0], [-10, 20, 80, 90]],
                     np.float32)
    got = paste_masks(torch.tensor(probs), torch.tensor(boxes), 48, 64)
    full, _ = do_paste_mask(torch.tensor(probs), torch.tensor(boxes), 48, 64, skip_empty=False)
    for k in range(4):
        want = ref_paste(probs[k, 0].astype(np.float64), boxes[k].astype(np.float64), 48, 64)
        np.testing.assert_allclose(full[k].numpy(), want, atol=1e-5)
        decided = np.abs(want - 0.5) > 1e-5
        np.testing.assert_array_equal(got[k].numpy()[decided], (want >= 0.5)[decided])
        np.testing.assert_array_equal(got[k].numpy(), full[k].numpy() >= 0.5)  # crop paste == whole-image paste


@pytest.mark.parametrize('shape', [(480, 640), (427, 640), (640, 427), (375, 500), (1, 1), (333, 1999)])
def test_test_pipeline_resize_rounding_normalise_pad(shape):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    img, meta = preprocess_image(image)
    new_h, new_w = ref_resized_size(*shape)
    assert meta.ori_shape == shape and meta.img_shape == (new_h, new_w)
    assert img.shape == (1, 3, math.ceil(new_h / 32) * 32, math.ceil(new_w / 32) * 32) == (1, 3, *meta.pad_shape)
    np.testing.assert_array_equal(meta.scale_factor, np.float32([new_w / shape[1], new_h / shape[0]] * 2))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    want = (resized - np.float32([123.675, 116.28, 103.53])) / np.float32([58.395, 57.12, 57.375])
    np.testing.assert_allclose(img[0, :, :new_h, :new_w].permute(1, 2, 0).numpy(), want, atol=2e-5)
    assert not img[0, :, new_h:].any() and not img[0, :, :, new_w:].any()  # zero padding after normalising


def test_resize_rounds_half_up_where_torchvision_floors():
    assert ref_resized_size(480, 640) == (800, 1067)  # 1066.67: mmcv rounds, torchvision's floor gives 1066
    assert preprocess_image(np.zeros((480, 640, 3), np.uint8))[1].img_shape == (800, 1067)


# ------------------------------------------------------------------------ small whole detectors

def as_list(spec):
    return spec if isinstance(spec, list) else [spec]


def nano_detector(name, width=32, fc=64, seed=0):
    """The zoo architecture of ``name`` at small sizes (backbone C=8, one block a stage; FPN 32; fc 64), with
    seeded weights whose class biases make some foreground classes score above 0.05."""
    entry, arch = detector_entry(name), architecture_entry(name)
    kwargs = entry['backbone']['kwargs']
    kwargs.update(embed_dim=8, depths=[1, 1, 1, 1])
    if entry['backbone']['type'] == 'swin':
        kwargs.update(num_heads=[1, 1, 2, 2], window_size=4)
    entry['neck_in_channels'] = [8, 16, 32, 64]
    arch['img_scale'] = [160, 128]  # the test pipeline into 160x128 instead of 1333x800
    arch['neck']['kwargs']['out_channels'] = width
    arch['rpn_head']['kwargs'].update(in_channels=width, feat_channels=width)
    for spec in as_list(arch['roi_head']['bbox_head']):
        spec['kwargs'].update(in_channels=width, fc_out_channels=fc)
        if 'conv_out_channels' in spec['kwargs']:
            spec['kwargs']['conv_out_channels'] = width
    for spec in as_list(arch['roi_head']['mask_head']):
        spec['kwargs'].update(in_channels=width, conv_out_channels=width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_detector(entry, arch).eval()
        heads = model.roi_head.bbox_head
        for head in heads if isinstance(heads, torch.nn.ModuleList) else [heads]:
            with torch.no_grad():
                head.fc_cls.bias.copy_(torch.linspace(3, -3, 81))
                head.fc_cls.bias[-1] = 0
                head.fc_reg.weight.mul_(3)
                for conv in head.shared_convs:  # BN with running statistics that are not the identity
                    conv.bn.running_mean.uniform_(-0.1, 0.1)
                    conv.bn.running_var.uniform_(0.5, 2)
    return model


def ref_stage_boxes(rois, bbox_pred, stds, img_hw):
    return torch.tensor(ref_decode(rois[:, 1:].numpy(), bbox_pred.numpy(), stds, img_hw), dtype=torch.float32)


def ref_second_stage(model, feats, proposals, meta, cascade):
    """mmdet 2.11 simple_test of the RoI head chained from the literal pieces above (box and mask heads' layers
    run as modules)."""
    strides = (4, 8, 16, 32)

    def pool(rois, out):
        res = torch.zeros(len(rois), feats[0].shape[1], out, out)
        for k, roi in enumerate(rois):
            level = ref_level(roi[1:].tolist())
            res[k] = torchvision.ops.roi_align(feats[level], roi[None], out, 1 / strides[level], 0, True)[0]
        return res

    rois = torch.cat([torch.zeros(len(proposals), 1), proposals[:, :4]], 1)
    stds = [(0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067)]
    if cascade:
        logits = []
        for i, head in enumerate(model.roi_head.bbox_head):
            cls_score, bbox_pred = head(pool(rois, 7))
            logits.append(cls_score)
            if i < 2:
                label = cls_score[:, :-1].argmax(1)
                picked = torch.stack([bbox_pred[k, 4 * c:4 * c + 4] for k, c in enumerate(label.tolist())])
                rois = torch.cat([rois[:, :1], ref_stage_boxes(rois, picked, stds[i], meta.img_shape)], 1)
        cls_score, last_stds = (logits[0] + logits[1] + logits[2]) / 3.0, stds[2]
    else:
        cls_score, bbox_pred = model.roi_head.bbox_head(pool(rois, 7))
        padding = rois[:, 4] == 0
        cls_score[padding], bbox_pred[padding] = 0, 0
        last_stds = stds[0]
    scores = torch.softmax(cls_score, -1).numpy()
    boxes = ref_decode(rois[:, 1:].numpy(), bbox_pred.numpy(), last_stds, meta.img_shape)
    boxes = boxes / np.tile(meta.scale_factor.astype(np.float64), boxes.shape[1] // 4)
    det_boxes, det_scores, det_labels = ref_multiclass_nms(boxes, scores, 0.05, 0.5, 100)
    mask_boxes = torch.tensor(det_boxes * meta.scale_factor, dtype=torch.float32)
    mask_feats = pool(torch.cat([torch.zeros(len(mask_boxes), 1), mask_boxes], 1), 14)
    heads = list(model.roi_head.mask_head) if cascade else [model.roi_head.mask_head]
    probs = sum(torch.sigmoid(h(mask_feats)) for h in heads).numpy() / len(heads)
    height, width = meta.ori_shape
    masks = np.stack([ref_paste(probs[k, det_labels[k]], mask_boxes[k].numpy() / meta.scale_factor, height, width)
                      for k in range(len(det_labels))])
    return det_boxes, det_scores, det_labels, masks


@pytest.mark.parametrize('name', ['mask_rcnn_asmlp_tiny', 'cascade_mask_rcnn_swin_tiny'])
def test_small_detector_equals_the_chained_restatement(name):
    model = nano_detector(name)
    image = np.random.default_rng(6).integers(0, 256, (45, 58, 3), dtype=np.uint8)
    got = model.predict(image)
    assert isinstance(got, Instances) and got.masks.shape[1:] == (45, 58)
    img, meta = preprocess_image(image, model.img_scale)
    with torch.no_grad():
        feats = model.extract_feat(img)
        # the RPN restated: the head's convs as modules, anchors / selection literal
        cls_scores, bbox_preds = model.rpn_head(feats)
        scores = [torch.sigmoid(c[0].permute(1, 2, 0).reshape(-1)).numpy() for c in cls_scores]
        deltas = [b[0].permute(1, 2, 0).reshape(-1, 4).numpy() for b in bbox_preds]
        anchors = [ref_anchors(s, *c.shape[-2:]) for s, c in zip((4, 8, 16, 32, 64), cls_scores)]
        proposals, proposal_scores = ref_proposals(scores, deltas, anchors, meta.img_shape, 1000, 1000)
        mine, mine_scores = model.rpn_head.get_proposals(feats, meta.img_shape)
        np.testing.assert_array_equal(mine_scores.numpy(), proposal_scores)
        ties = lambda b, s: np.lexsort((*np.round(b, 2).T[::-1], -s))  # noqa: E731  (equal scores: any order)
        np.testing.assert_allclose(mine.numpy()[ties(mine.numpy(), mine_scores.numpy())],
                                   proposals[ties(proposals, proposal_scores)], atol=1e-3)
        boxes, det_scores, labels, masks = ref_second_stage(model, feats, mine, meta, 'cascade' in name)
    assert 5 < len(got) <= 100
    np.testing.assert_array_equal(got.labels, labels)
    np.testing.assert_allclose(got.scores, det_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.boxes, boxes, atol=1e-3)
    decided = np.abs(masks - 0.5) > 1e-4
    np.testing.assert_array_equal(got.masks[decided], (masks >= 0.5)[decided])
    assert got.masks.any()


def test_mask_rcnn_zeroes_rois_whose_y2_is_zero_as_mmdet_2_11():
    model = nano_detector('mask_rcnn_asmlp_tiny')
    img, meta = preprocess_image(np.zeros((64, 64, 3), np.uint8), model.img_scale)
    with torch.no_grad():
        feats = model.extract_feat(img)
        top = model.roi_head.simple_test(feats, torch.tensor([[10., 0., 300., 0.]]), meta)
        inside = model.roi_head.simple_test(feats, torch.tensor([[10., 0., 300., 1.]]), meta)
    assert len(top[0]) == 0  # logits zeroed: every class scores 1/81 < 0.05
    assert len(inside[0]) > 0


def test_cascade_scores_are_the_softmax_of_the_mean_stage_logits():
    model = nano_detector('cascade_mask_rcnn_asmlp_tiny')
    with torch.no_grad():
        for i, head in enumerate(model.roi_head.bbox_head):  # stages disagree: only the mean decides
            head.fc_cls.bias.zero_()
            head.fc_cls.bias[i] = 9.
            head.fc_cls.weight.zero_()
        img, meta = preprocess_image(np.zeros((64, 64, 3), np.uint8), model.img_scale)
        feats = model.extract_feat(img)
        dets, labels, masks = model.roi_head.simple_test(feats, torch.tensor([[4., 4., 40., 40.]]), meta)
    mean = torch.zeros(81)
    mean[:3] = 3.
    want = torch.softmax(mean, 0)[:3]
    assert sorted(labels.tolist()) == [0, 1, 2]
    torch.testing.assert_close(dets[:, 4].sort().values, want.sort().values)
    assert masks.shape == (3, 64, 64)


def test_predict_refuses_bad_images_with_one_line():
    model = nano_detector('mask_rcnn_asmlp_tiny')
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((0, 8, 3), np.uint8)):
        with pytest.raises(ValueError) as info:
            model.predict(bad)
        assert '\n' not in str(info.value)


def test_instances_checks_its_fields():
    empty = Instances.empty(4, 5)
    assert len(empty) == 0 and empty.image_size == (4, 5) and empty.masks.dtype == bool
    with pytest.raises(ValueError, match='disagree'):
        Instances(np.zeros((2, 4)), np.zeros(1), np.zeros(2), np.zeros((2, 3, 3)))
    one = Instances([[1, 2, 3, 4]], [0.5], [3], np.ones((1, 2, 2)))
    assert one.boxes.dtype == np.float32 and one.labels.dtype == np.int64 and one.masks.dtype == bool


def test_rcnn_test_config_defaults_are_the_configs():
    assert RCNNTestConfig() == RCNNTestConfig(score_thr=0.05, iou_threshold=0.5, max_per_img=100, mask_thr_binary=0.5)
    assert RPNTestConfig() == RPNTestConfig(nms_pre=1000, max_per_img=1000, iou_threshold=0.7, min_bbox_size=0)
