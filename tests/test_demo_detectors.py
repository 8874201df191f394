"""The demo detectors (Mask R-CNN nano on AS-MLP and Swin, weights/demo/mask_rcnn_*_nano/): their zoo entries and
budget, the training targets against literal re-statements of mmdet 2.11 (github.com/open-mmlab/mmdetection
v2.11.0: ``max_iou_assigner.py``, ``random_sampler.py``, ``delta_xywh_bbox_coder.py``, ``BitmapMasks.crop_and_resize``),
seeded training (deterministic, lowers the loss), and the shipped weights reaching their recorded held-out AP through
``evaluate-coco`` (a random init scores near 0).
"""
import argparse
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors import safe_open

from asmlp.demo.detection_evaluate import demo_status, evaluate_heldout, write_heldout
from asmlp.demo.detection_folder import load_demo_detector, write_detector_folder
from asmlp.demo.detection_recipes import (DEMO_DETECTORS, DETECTION_RECIPES, HELDOUT_SETS, HeldoutSet,
                                          detection_recipe_sha256, train_scene_seed)
from asmlp.demo.detection_targets import (RCNN_ASSIGNER, RPN_ASSIGNER, add_gt_as_proposals, bbox2delta,
                                          mask_targets, max_iou_assign, random_sample)
from asmlp.demo.detection_train import (build_demo_detector, detection_losses, make_batch, make_scene,
                                        train_detector)
from asmlp.detectors import create_detector, detector_entry, list_detectors
from asmlp.evaluation.coco_cli import register_cli as register_coco_cli
from asmlp.evaluation.coco_cli import run_evaluate_coco
from asmlp.models.detection.bbox_coder import delta2bbox
from asmlp.paths import REPO_ROOT
from asmlp.zoo import model_entry

DEMO_DIR = REPO_ROOT / 'weights' / 'demo'
AP_TOLERANCE = 2.0  # points
SMALL = HELDOUT_SETS[0]
RANDOM_IMAGES = 8  # the random init keeps 100 detections per image: fewer images


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these tests run many small ops (per-class NMS, one mask paste per detection), which two
    threads only slow down, badly so on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------- zoo entries and budget

def test_zoo_entries_are_nano_demos_with_mmdet_module_names():
    assert not set(DEMO_DETECTORS) & set(list_detectors())  # Table 5's list stays Table 5's
    assert list_detectors(include_demo=True)[-2:] == list(DEMO_DETECTORS)
    for name, seg in zip(DEMO_DETECTORS, ('upernet_asmlp_nano', 'upernet_swin_nano')):
        entry = detector_entry(name)
        assert entry['demo'] is True and entry['weights'] == [] and 'generated scenes' in entry['title']
        assert entry['backbone'] == model_entry(seg)['backbone']  # the segmentation demos' nano backbones
        with torch.device('meta'):
            model = create_detector(name)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        # mmdet 2.11 names at the nano widths (FPN 64, RPN 64 with 3 anchors, 2 fcs of 256, mask convs of 32)
        assert shapes['neck.lateral_convs.0.conv.weight'] == (64, 24, 1, 1)
        assert shapes['neck.fpn_convs.3.conv.weight'] == (64, 64, 3, 3)
        assert shapes['rpn_head.rpn_cls.weight'] == (3, 64, 1, 1)
        assert shapes['rpn_head.rpn_reg.weight'] == (12, 64, 1, 1)
        assert shapes['roi_head.bbox_head.shared_fcs.0.weight'] == (256, 64 * 7 * 7)
        assert shapes['roi_head.bbox_head.fc_cls.weight'] == (81, 256)
        assert shapes['roi_head.bbox_head.fc_reg.weight'] == (320, 256)
        assert shapes['roi_head.mask_head.convs.0.conv.weight'] == (32, 64, 3, 3)
        assert shapes['roi_head.mask_head.convs.3.conv.weight'] == (32, 32, 3, 3)
        assert shapes['roi_head.mask_head.conv_logits.weight'] == (80, 32, 1, 1)
        params = sum(math.prod(s) for s in shapes.values())
        assert params * 2 <= 8e6, params  # at most ~8 MB in fp16


def test_shipped_folders_fit_the_budget_and_record_their_numbers():
    total = sum(f.stat().st_size for f in DEMO_DIR.rglob('*') if f.is_file())
    assert total <= 30e6, total
    for name in DEMO_DETECTORS:
        folder = DEMO_DIR / name
        assert (folder / 'model.safetensors').stat().st_size <= 8e6
        with safe_open(str(folder / 'model.safetensors'), 'pt') as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {'F16'}
        config = json.loads((folder / 'config.json').read_text())
        recipe = DETECTION_RECIPES[name]
        assert (config['model'], config['kind'], config['task']) == (name, 'demo', 'instances')
        assert config['command'] == f'python -m asmlp train-demo --detectors --model {name} --steps {recipe.steps} ' \
                                    f'--seed 0'
        assert config['training']['steps_done'] == recipe.steps and not config['training']['stopped_early']
        # the weights belong to today's recipe, architecture and scene generator (else: retrain them)
        assert config['source_sha256'] == detection_recipe_sha256(name, recipe, 0)
        assert {k: v['command'] for k, v in config['heldout'].items()} == {h.name: h.command() for h in HELDOUT_SETS}
        small = config['heldout'][SMALL.name]
        assert (config['box_ap'], config['mask_ap']) == (small['bbox']['AP'], small['segm']['AP'])
        card = (folder / 'README.md').read_text()
        assert 'Demo weights, not a published model' in card and config['command'] in card
        assert f'| {small["bbox"]["AP"]:.1f} |' in card and f'| {small["segm"]["AP"]:.1f} |' in card


# ---------------------------------------------------------------- targets against literal re-statements

def literal_iou(a, b):
    """IoU of two x1, y1, x2, y2 boxes in float32, (inter / (area_a + area_b - inter)) as mmdet's bbox_overlaps."""
    a, b = np.float32(a), np.float32(b)
    w = max(np.float32(0), min(a[2], b[2]) - max(a[0], b[0]))
    h = max(np.float32(0), min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def literal_assign(boxes, gts, pos_iou_thr, neg_iou_thr, min_pos_iou):
    """mmdet 2.11 MaxIoUAssigner.assign_wrt_overlaps (match_low_quality, gt_max_assign_all), written as loops."""
    iou = [[literal_iou(g, b) for b in boxes] for g in gts]
    assigned = [-1] * len(boxes)
    for j in range(len(boxes)):
        column = [iou[i][j] for i in range(len(gts))]
        best = max(column)
        if 0 <= best < neg_iou_thr:
            assigned[j] = 0
        if best >= pos_iou_thr:
            assigned[j] = column.index(best) + 1
    for i in range(len(gts)):
        best = max(iou[i])
        if best >= min_pos_iou:
            for j in range(len(boxes)):
                if iou[i][j] == best:
                    assigned[j] = i + 1
    return assigned


def test_max_iou_assign_on_a_hand_made_case():
    gts = torch.tensor([[0., 0., 10., 10.], [40., 40., 50., 50.]])
    boxes = torch.tensor([[0., 0., 10., 10.],     # IoU 1 with gt 0
                          [0., 0., 10., 5.],      # IoU 0.5 with gt 0
                          [20., 20., 30., 30.],   # nothing
                          [40., 40., 50., 45.],   # IoU 0.5 with gt 1
                          [40., 40., 45., 50.]])  # IoU 0.5 with gt 1: ties with the one above
    rpn = max_iou_assign(boxes, gts, torch.tensor([7, 3]), **RPN_ASSIGNER)
    # RPN: 0.5 is between 0.3 and 0.7 (ignored), but gt 1's best IoU (0.5 >= 0.3) takes both tied boxes
    assert rpn.gt_inds.tolist() == [1, -1, 0, 2, 2]
    assert rpn.labels.tolist() == [7, -1, -1, 3, 3]
    assert max_iou_assign(boxes, gts, **RCNN_ASSIGNER).gt_inds.tolist() == [1, 1, 0, 2, 2]
    assert max_iou_assign(boxes, gts[:0], **RPN_ASSIGNER).gt_inds.tolist() == [0] * 5  # no ground truth: negatives


@pytest.mark.parametrize('thresholds', [RPN_ASSIGNER, RCNN_ASSIGNER])
def test_max_iou_assign_equals_the_literal_restatement(thresholds):
    rng = np.random.default_rng(3)
    for _ in range(5):
        xy = rng.uniform(0, 60, size=(40, 2))
        wh = rng.uniform(4, 40, size=(40, 2))
        boxes = np.round(np.concatenate([xy, xy + wh], 1), 1).astype(np.float32)
        gts = boxes[rng.choice(40, 4, replace=False)] + rng.normal(0, 2, size=(4, 4)).astype(np.float32)
        gts[:, 2:] = np.maximum(gts[:, 2:], gts[:, :2] + 1)
        boxes[5] = boxes[6]  # an exact tie
        got = max_iou_assign(torch.from_numpy(boxes), torch.from_numpy(gts), **thresholds).gt_inds.tolist()
        assert got == literal_assign(boxes.tolist(), gts.tolist(), **thresholds)


def test_random_sample_is_mmdets_random_sampler():
    gt_inds = torch.tensor([0, 1, -1, 0, 2, 0, 0, 1, 0, 2, 0, 0, -1, 1, 0, 0])
    assign = max_iou_assign(torch.zeros(0, 4), torch.zeros(0, 4), **RPN_ASSIGNER)
    assign = replace(assign, gt_inds=gt_inds, max_overlaps=torch.zeros(16), labels=torch.full((16,), -1))
    pos, neg = random_sample(assign, num=8, pos_fraction=0.25, generator=torch.Generator().manual_seed(5))
    # literally: int(8 * 0.25) = 2 positives of the 5 by randperm, then 8 - 2 = 6 negatives of the 9, each sorted
    g = torch.Generator().manual_seed(5)
    all_pos = torch.tensor([1, 4, 7, 9, 13])
    all_neg = torch.tensor([0, 3, 5, 6, 8, 10, 11, 14, 15])
    want_pos = all_pos[torch.randperm(5, generator=g)[:2]].sort().values
    want_neg = all_neg[torch.randperm(9, generator=g)[:6]].sort().values
    assert pos.tolist() == want_pos.tolist() and neg.tolist() == want_neg.tolist()
    # fewer candidates than wanted: all of them, and the negatives fill up to num
    pos, neg = random_sample(assign, num=14, pos_fraction=0.5, generator=torch.Generator().manual_seed(5))
    assert pos.tolist() == all_pos.tolist() and neg.tolist() == all_neg.tolist()


def test_add_gt_as_proposals_prepends_the_ground_truths_assigned_to_themselves():
    gts, labels = torch.tensor([[0., 0., 4., 4.], [10., 10., 20., 30.]]), torch.tensor([5, 9])
    boxes = torch.tensor([[0., 0., 4., 4.5], [50., 50., 60., 60.]])
    assign = max_iou_assign(boxes, gts, labels, **RCNN_ASSIGNER)
    merged, merged_assign = add_gt_as_proposals(boxes, gts, labels, assign)
    assert torch.equal(merged, torch.cat([gts, boxes]))
    assert merged_assign.gt_inds.tolist() == [1, 2, 1, 0] and merged_assign.labels.tolist() == [5, 9, 5, -1]
    assert merged_assign.max_overlaps[:2].tolist() == [1.0, 1.0]


def test_bbox2delta_literal_numbers_and_the_inference_decoder_inverts_it():
    proposal, gt = torch.tensor([[0., 0., 10., 20.]]), torch.tensor([[2., 4., 14., 24.]])
    # px, py, pw, ph = 5, 10, 10, 20; gx, gy, gw, gh = 8, 14, 12, 20
    assert torch.allclose(bbox2delta(proposal, gt), torch.tensor([[0.3, 0.2, math.log(1.2), 0.0]]))
    assert torch.allclose(bbox2delta(proposal, gt, stds=(0.1, 0.1, 0.2, 0.2)),
                          torch.tensor([[3.0, 2.0, math.log(1.2) / 0.2, 0.0]]))
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    rois = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 50], 1)
    gts = rois + torch.randn(50, 4, generator=g) * 3
    stds = (0.1, 0.1, 0.2, 0.2)
    assert torch.allclose(delta2bbox(rois, bbox2delta(rois, gts, stds=stds), stds=stds), gts, atol=1e-3)


def test_mask_targets_crop_and_resize_the_ground_truth():
    mask = torch.zeros(1, 60, 100, dtype=torch.uint8)
    mask[0, 10:30, 20:50] = 1  # pixels rows 10..29, columns 20..49: the box [20, 10, 50, 30]
    inds = torch.tensor([0, 0])
    out = mask_targets(mask, torch.tensor([[20., 10., 50., 30.], [20., 10., 80., 30.]]), inds)
    assert out.shape == (2, 28, 28)
    assert out[0].eq(1).all()
    # the second box is twice as wide: the mask fills its left half, bins 0..13 of 28
    assert out[1, :, :14].eq(1).all() and out[1, :, 14:].eq(0).all()


# ---------------------------------------------------------------- training

TINY = replace(DETECTION_RECIPES['mask_rcnn_asmlp_nano'], steps=10, batch_size=2, lr=5e-3, warmup_steps=1,
               rpn_samples=64, rcnn_samples=32, proposal_nms_pre=200, proposal_max=100)


def fixed_losses(model, scenes):
    with torch.no_grad():
        losses = detection_losses(model.train(), make_batch(scenes, model.img_scale), TINY,
                                  torch.Generator().manual_seed(0))
    return {k: float(v) for k, v in losses.items()}


def test_tiny_training_is_deterministic_and_lowers_the_loss():
    name = 'mask_rcnn_asmlp_nano'
    runs = [train_detector(name, recipe=TINY, seed=0, threads=1, progress=False) for _ in range(2)]
    first, second = (r.model.state_dict() for r in runs)
    assert runs[0].steps_done == TINY.steps and all(torch.equal(first[k], second[k]) for k in first)
    scenes = [make_scene(train_scene_seed(0, i), TINY.size) for i in range(4)]
    before = fixed_losses(build_demo_detector(name, 0), scenes)
    after = fixed_losses(runs[0].model, scenes)
    assert sum(after.values()) < 0.8 * sum(before.values()), (before, after)
    # the classifiers learn first (the box losses grow at first: better proposals, more positives to regress)
    for key in ('rpn_cls', 'rcnn_cls'):
        assert after[key] < 0.5 * before[key], (key, before, after)


def test_training_scenes_are_the_synth_coco_generator_outside_the_written_sets():
    scene = make_scene(train_scene_seed(0, 3), (120, 160))
    assert train_scene_seed(0, 3) == (6, 0, 3)  # synth-coco sets are (5, seed, i): never trained on
    assert scene.image.shape == (120, 160, 3) and scene.masks.shape == (len(scene.boxes), 120, 160)
    for box, mask in zip(scene.boxes, scene.masks):  # each mask lies in its box
        rows, cols = np.nonzero(mask)
        assert box[0] - 1 <= cols.min() and cols.max() <= box[2] and box[1] - 1 <= rows.min() and rows.max() <= box[3]


def test_a_written_folder_loads_back(tmp_path):
    name = 'mask_rcnn_swin_nano'
    result = train_detector(name, recipe=replace(TINY, steps=1), threads=1, progress=False)
    heldout = evaluate_heldout(result.model, name, [HeldoutSet(SMALL.name, 2, SMALL.seed)])
    write_detector_folder(result, heldout, tmp_path / name)
    model, status = load_demo_detector(name, root=tmp_path)
    assert status.kind == 'demo' and status.sha256 and name in status.source
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in result.model.state_dict().items())  # fp16-rounded, exact
    with pytest.raises(ValueError, match='no demo weights for mask_rcnn_asmlp_nano .*train-demo --detectors'):
        load_demo_detector('mask_rcnn_asmlp_nano', root=tmp_path)
    with pytest.raises(ValueError, match='unknown demo detector'):
        load_demo_detector('mask_rcnn_asmlp_tiny')


def test_train_demo_refuses_a_segmenter_with_detectors(capsys):
    from asmlp.demo.cli import main
    assert main(['--detectors', '--models', 'upernet_asmlp_nano', 'mask_rcnn_swin_nano']) == 2
    assert 'not upernet_asmlp_nano' in capsys.readouterr().err


# ---------------------------------------------------------------- held-out AP through evaluate-coco

@pytest.fixture(scope='module')
def heldout_set(tmp_path_factory):
    return write_heldout(tmp_path_factory.mktemp('synth-coco'), SMALL)


def evaluate_coco(data, name, out, provider, *extra):
    parser = argparse.ArgumentParser()
    register_coco_cli(parser.add_subparsers())
    args = parser.parse_args(['evaluate-coco', '--data', str(data), '--models', name, '--out', str(out),
                              '--no-progress', '--allow-untrained', *extra])
    assert run_evaluate_coco(args, provider=provider) == 0
    (model,) = json.loads(out.read_text())['models']
    return model


@pytest.mark.parametrize('name', DEMO_DETECTORS)
def test_shipped_detector_reaches_its_recorded_heldout_ap(name, heldout_set, tmp_path):
    recorded = json.loads((DEMO_DIR / name / 'config.json').read_text())['heldout'][SMALL.name]
    report = evaluate_coco(heldout_set, name, tmp_path / 'report.json', load_demo_detector)
    assert report['weights']['kind'] == 'demo' and report['images'] == SMALL.scenes
    for iou_type in ('bbox', 'segm'):
        assert recorded[iou_type]['AP'] >= 20, recorded  # the demo finds the objects
        assert abs(report[iou_type]['AP'] - recorded[iou_type]['AP']) <= AP_TOLERANCE, (iou_type, report[iou_type])


def test_random_init_scores_near_zero(heldout_set, tmp_path):
    name = 'mask_rcnn_asmlp_nano'

    def untrained(n):
        torch.manual_seed(0)
        model = create_detector(n)
        # at mmdet's score threshold 0.05 a random init detects nothing (its class scores are about 1 / 81): keep
        # every detection, so that the AP is measured, not undefined
        model.roi_head.test_cfg = replace(model.roi_head.test_cfg, score_thr=0.0)
        return model, demo_status(n, kind='none')
    report = evaluate_coco(heldout_set, name, tmp_path / 'report.json', untrained, '--limit', str(RANDOM_IMAGES))
    assert report['weights']['kind'] == 'none' and report['detections'] == 100 * RANDOM_IMAGES
    for iou_type in ('bbox', 'segm'):
        assert report[iou_type]['AP'] < 1.0, (iou_type, report[iou_type])
