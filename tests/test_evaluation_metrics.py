"""The mIoU metric against a literal numpy re-statement of mmseg 0.11's ``intersect_and_union`` /
``mean_iou`` (``mmseg/core/evaluation/metrics.py``; ``np.float`` written as float64) and ``custom.py``'s summary
(nanmean x 100, two decimals)."""
import numpy as np
import pytest

from asmlp.evaluation.dataset import reduce_zero_label
from asmlp.evaluation.metrics import Totals, intersect_and_union, summarize


def mmseg_intersect_and_union(pred_label, label, num_classes, ignore_index, reduce_zero_label=False):
    label = label.copy()
    if reduce_zero_label:
        label[label == 0] = 255
        label = label - 1
        label[label == 254] = 255
    mask = (label != ignore_index)
    pred_label = pred_label[mask]
    label = label[mask]
    intersect = pred_label[pred_label == label]
    area_intersect, _ = np.histogram(intersect, bins=np.arange(num_classes + 1))
    area_pred_label, _ = np.histogram(pred_label, bins=np.arange(num_classes + 1))
    area_label, _ = np.histogram(label, bins=np.arange(num_classes + 1))
    area_union = area_pred_label + area_label - area_intersect
    return area_intersect, area_union, area_pred_label, area_label


def mmseg_mean_iou(results, gt_seg_maps, num_classes, ignore_index, reduce_zero_label):
    total_i = np.zeros((num_classes,), dtype=np.float64)
    total_u = np.zeros((num_classes,), dtype=np.float64)
    total_p = np.zeros((num_classes,), dtype=np.float64)
    total_l = np.zeros((num_classes,), dtype=np.float64)
    for i in range(len(results)):
        a_i, a_u, a_p, a_l = mmseg_intersect_and_union(results[i], gt_seg_maps[i], num_classes, ignore_index,
                                                       reduce_zero_label)
        total_i += a_i
        total_u += a_u
        total_p += a_p
        total_l += a_l
    with np.errstate(divide='ignore', invalid='ignore'):
        all_acc = total_i.sum() / total_l.sum()
        acc = total_i / total_l
        iou = total_i / total_u
    return all_acc, acc, iou


def scenes(rng, n, num_classes, shape=(23, 31)):
    """ADE20K-encoded annotations (0 = other, 1..C, a few 255) and predictions that are right ~60% of the time;
    classes >= C // 2 never occur in the labels and only some are predicted (NaN and IoU-0 classes)."""
    labels, preds = [], []
    for _ in range(n):
        png = rng.integers(0, num_classes // 2 + 1, size=shape).astype(np.uint8)
        png[rng.random(shape) < 0.05] = 255
        truth = png.astype(np.int64) - 1
        pred = np.where(rng.random(shape) < 0.6, truth, rng.integers(0, num_classes // 2 + 3, size=shape))
        pred = np.clip(pred, 0, num_classes - 1)
        labels.append(png)
        preds.append(pred)
    return preds, labels


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_per_image_areas_equal_mmseg(seed):
    rng = np.random.default_rng(seed)
    preds, pngs = scenes(rng, 4, 150)
    for pred, png in zip(preds, pngs):
        ours = intersect_and_union(pred, reduce_zero_label(png))
        theirs = mmseg_intersect_and_union(pred, png, 150, 255, reduce_zero_label=True)
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours, np.stack(theirs))


@pytest.mark.parametrize('seed', [0, 1])
def test_dataset_summary_equals_mmseg_with_nan_classes_and_ignored_pixels(seed):
    rng = np.random.default_rng(seed)
    preds, pngs = scenes(rng, 6, 150)
    totals = Totals()
    for pred, png in zip(preds, pngs):
        totals.add(intersect_and_union(pred, reduce_zero_label(png)))
    all_acc, acc, iou = mmseg_mean_iou(preds, pngs, 150, 255, True)
    assert np.isnan(iou).sum() > 50 and (iou == 0).any()  # the case is covered: NaN classes and IoU-0 classes
    s = totals.summary()
    assert totals.images == 6
    assert s['mIoU'] == np.round(np.nanmean(iou) * 100, 2)
    assert s['mAcc'] == np.round(np.nanmean(acc) * 100, 2)
    assert s['aAcc'] == np.round(all_acc * 100, 2)
    assert s['classes_scored'] == int((~np.isnan(iou)).sum())
    for c in range(150):
        got = s['per_class'][str(c)]['IoU']
        assert (got is None) if np.isnan(iou[c]) else got == round(float(iou[c]) * 100, 2)


def test_ignored_pixels_never_count():
    png = np.array([[0, 255, 1], [2, 2, 255]], dtype=np.uint8)  # 'other', ignore, class 0, class 1 twice
    pred = np.array([[5, 7, 0], [1, 0, 9]])
    areas = intersect_and_union(pred, reduce_zero_label(png))
    intersect, union, p, label = areas
    assert label.sum() == 3 and p.sum() == 3  # only the three scored pixels
    assert intersect[0] == 1 and intersect[1] == 1 and intersect.sum() == 2
    s = summarize(areas)
    assert s['aAcc'] == round(2 / 3 * 100, 2)
    assert s['classes_scored'] == 2 and s['mIoU'] == round((1 / 2 + 1 / 2) / 2 * 100, 2)


def test_perfect_prediction_is_100_over_the_classes_present():
    png = np.array([[1, 1, 3], [3, 0, 150]], dtype=np.uint8)
    label = reduce_zero_label(png)
    s = summarize(intersect_and_union(np.where(label == 255, 0, label), label))
    assert s['mIoU'] == s['mAcc'] == s['aAcc'] == 100.0 and s['classes_scored'] == 3


def test_nothing_scored_gives_none():
    s = summarize(intersect_and_union(np.zeros((2, 2), int), np.full((2, 2), 255)))
    assert s['mIoU'] is None and s['aAcc'] is None


def test_sums_are_int64_beyond_float32():
    t = Totals()
    big = np.zeros((4, 150), dtype=np.int64)
    big[:, 0] = 2 ** 24 + 1
    t.add(big).add(big)
    assert t.areas[0, 0] == 2 * (2 ** 24 + 1) and t.areas.dtype == np.int64


def test_bad_values_are_errors():
    with pytest.raises(ValueError, match='label values'):
        intersect_and_union(np.zeros((1, 2), int), np.array([[0, 150]]))
    with pytest.raises(ValueError, match='prediction values'):
        intersect_and_union(np.array([[150, 0]]), np.array([[0, 1]]))
    with pytest.raises(ValueError, match='sizes differ'):
        intersect_and_union(np.zeros((1, 2), int), np.zeros((2, 1), int))
