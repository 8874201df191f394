"""Instances without Gradio: the detect format (COCO RLE decoded by pycocotools gives back the masks; boxes
[x, y, w, h]; COCO category ids and names), the drawing (mask blend, box outline), the engine's ``detect`` step with
the nano demo detectors, the Instances presets, and ``predict --task instances``.

The demo detectors are used by name. Until their trained weights are in weights/demo/ the resolver gives them
untrained, and an untrained Mask R-CNN detects nothing (its classifier scores every class near 1/81, under mmdet's
``score_thr`` 0.05): :func:`detecting_loader` then raises one class's logit (weight x10, bias log 80) so that the
real pipeline (RPN, RoI heads, NMS, mask paste) returns detections with spread scores.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_util

from asmlp.detectors import coco_classes
from asmlp.evaluation.detections import above, detections_data
from asmlp.models.detection import Instances
from asmlp.viz_instances import draw_instances, instance_colors

EXAMPLE = Path(__file__).resolve().parent.parent / 'assets' / 'examples' / 'generated_0.png'
DEMO_DETECTORS = ['mask_rcnn_asmlp_nano', 'mask_rcnn_swin_nano']


def detecting_loader(name: str, load=None):
    """The resolver's detector ``name`` (``load``: default the engine's loader); untrained (no demo weights yet),
    with class 1's logit raised."""
    import torch

    from asmlp.engine.cache import load_detector
    model, status = (load or load_detector)(name)
    if status.kind != 'demo':
        with torch.no_grad():
            fc_cls = model.roi_head.bbox_head.fc_cls
            fc_cls.weight[1] *= 10
            fc_cls.bias[1] = math.log(80)
    return model, status


def handmade(height=40, width=60) -> Instances:
    masks = np.zeros((3, height, width), bool)
    masks[0, 5:30, 10:30] = True
    masks[1, 20:38, 2:9] = True
    masks[2, 0:4, 50:60] = True
    return Instances(boxes=[[10, 5, 30, 30], [2, 20, 9, 38], [50.5, 0, 59.5, 3.5]], scores=[0.4, 0.9, 0.2],
                     labels=[3, 0, 79], masks=masks)


def test_the_detect_format_decodes_with_pycocotools_to_the_kept_masks():
    instances = handmade()
    entries = detections_data(instances, 0.3)
    assert [e['score'] for e in entries] == [0.9, 0.4]  # at or above the threshold, best first
    classes = coco_classes()
    expected = [(1, instances.masks[1], [2, 20, 7, 18]), (0, instances.masks[0], [10, 5, 20, 25])]
    for entry, (index, mask, xywh) in zip(entries, expected):
        label = int(instances.labels[index])
        assert entry['label'] == label and entry['category'] == classes[label]['name']
        assert entry['category_id'] == classes[label]['category_id']
        assert entry['bbox'] == pytest.approx(xywh)  # COCO: x1, y1, x2 - x1, y2 - y1
        assert isinstance(entry['segmentation']['counts'], str)
        rle = {'size': entry['segmentation']['size'], 'counts': entry['segmentation']['counts'].encode()}
        np.testing.assert_array_equal(mask_util.decode(rle).astype(bool), mask)
    assert detections_data(instances, 0.95) == []
    last = detections_data(instances, 0.0)[-1]
    assert last['category'] == 'toothbrush' and last['category_id'] == 90  # label 79: COCO's last id


def test_drawing_blends_each_mask_in_its_colour_and_leaves_the_rest():
    image = np.full((40, 60, 3), 100, np.uint8)
    kept = above(handmade(), 0.3)
    drawn = draw_instances(image, kept.boxes, kept.masks, ['person 0.90', 'car 0.40'], opacity=0.5)
    colors = instance_colors(2).astype(float)
    assert len({tuple(c) for c in colors}) == 2
    # inside each mask, away from the box outlines and captions: 0.5 image + 0.5 colour (colour 0: the best)
    np.testing.assert_allclose(drawn[30, 5], np.round(100 * 0.5 + colors[0] * 0.5), atol=1)
    np.testing.assert_allclose(drawn[25, 20], np.round(100 * 0.5 + colors[1] * 0.5), atol=1)
    # the second box's outline is drawn in its colour; far from every instance nothing changed
    assert (drawn[30, 20] == colors[1]).all()
    assert (drawn[30:40, 40:60] == 100).all()
    assert (image == 100).all()  # the input is not drawn on


@pytest.fixture(scope='module')
def engine():
    from asmlp.engine import Engine
    with Engine(detector_loader=detecting_loader) as engine:
        yield engine


def test_the_engine_detects_with_the_demo_detectors(engine):
    from asmlp.engine import Detection
    from asmlp.image_io import load_image
    image, _ = load_image(str(EXAMPLE))
    results = engine.detect(image, DEMO_DETECTORS, 'cpu', 'fp32')
    assert [r.name for r in results] == DEMO_DETECTORS and all(isinstance(r, Detection) for r in results)
    for r in results:
        inst = r.instances
        assert len(inst) > 0 and inst.masks.shape[1:] == image.shape[:2]
        assert (inst.boxes[:, [0, 2]] >= 0).all() and (inst.boxes[:, [0, 2]] <= image.shape[1]).all()
        assert (inst.boxes[:, [1, 3]] >= 0).all() and (inst.boxes[:, [1, 3]] <= image.shape[0]).all()
        assert r.status.kind in ('demo', 'none') and r.seconds > 0 and r.device == 'cpu'
        assert r.input_size == (120, 120)  # mmdet keep-ratio resize of 256x256 into the nano img_scale (160, 120)
    assert engine.is_cached(DEMO_DETECTORS[0], 'cpu')
    with pytest.raises(ValueError, match='unknown detector'):
        engine.detect(image, ['upernet_asmlp_nano'])


def test_instance_presets_default_to_the_demo_pair_offline():
    from asmlp.detectors import list_detectors
    from asmlp.presets import default_instance_preset, detector_choices, instance_preset, instance_presets
    assert [p['id'] for p in instance_presets()] == ['tiny', 'cascade', 'demo']
    assert instance_preset('tiny')['models'] == ['mask_rcnn_asmlp_tiny', 'mask_rcnn_swin_tiny']
    assert instance_preset('demo')['models'] == DEMO_DETECTORS
    known = set(list_detectors(include_demo=True))
    assert all(set(p['models']) <= known for p in instance_presets())
    assert default_instance_preset() == 'demo'  # no COCO weights here (tests run offline)
    labels = dict((n, label) for label, n in detector_choices())
    assert set(labels) == known and labels['mask_rcnn_swin_tiny'].endswith('COCO, downloaded on request')


def test_predict_task_instances_writes_the_json_and_the_overlay(tmp_path, monkeypatch):
    import asmlp.engine.cache as cache
    from asmlp.evaluation.cli import register_cli
    from PIL import Image
    monkeypatch.setattr(cache, 'load_detector', functools.partial(detecting_loader, load=cache.load_detector))
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    args = parser.parse_args(['predict', str(EXAMPLE), '--models', DEMO_DETECTORS[0], '--out', str(tmp_path),
                              '--task', 'instances', '--device', 'cpu', '--score-threshold', '0.05'])
    assert args.func(args) == 0
    folder = tmp_path / DEMO_DETECTORS[0]
    record = json.loads((folder / 'generated_0.json').read_text())
    overlay = np.asarray(Image.open(folder / 'generated_0_overlay.png'))
    image = np.asarray(Image.open(EXAMPLE).convert('RGB'))
    assert record['model'] == DEMO_DETECTORS[0] and record['image_size'] == [256, 256]
    assert record['detections'] and overlay.shape == image.shape
    covered = np.zeros(image.shape[:2], bool)
    for entry in record['detections']:
        x, y, w, h = entry['bbox']
        assert 0 <= x and 0 <= y and x + w <= 256 and y + h <= 256 and entry['score'] >= 0.05
        rle = dict(entry['segmentation'], counts=entry['segmentation']['counts'].encode())
        covered |= mask_util.decode(rle).astype(bool)
    assert (overlay[covered] != image[covered]).any()  # the masks are drawn
    parser_args = parser.parse_args(['predict', str(EXAMPLE), '--models', 'upernet_asmlp_nano', '--out',
                                     str(tmp_path), '--task', 'instances'])
    assert parser_args.func(parser_args) == 2  # a segmenter is not a COCO detector: a one-line error

