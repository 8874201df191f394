"""``python -m asmlp evaluate-coco`` on generated COCO sets: the ground truth given back scores AP 100, a known
perturbation scores the AP re-stated here by hand from COCO's definition, the saved results are standard COCO
results, torchrun's two processes give the single process's numbers and bytes, a dead rank ends the run with a
message, bad data and untrained detectors get one-line errors (exit code 2).

The detector here gives back the annotations of the image it is shown (found by the image's bytes), optionally
perturbed; run as a script (``python tests/test_coco_evaluate.py MODE ARGS...``) it is the torchrun worker: the
``evaluate-coco`` command with this detector.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as torchrun's worker script
    sys.path.insert(0, str(ROOT))

from asmlp.__main__ import build_parser, main  # noqa: E402
from asmlp.evaluation.coco_cli import run_evaluate_coco  # noqa: E402
from asmlp.evaluation.coco_dataset import CocoFolder  # noqa: E402
from asmlp.evaluation.coco_synthetic import write_synthetic_coco  # noqa: E402
from asmlp.hub.status import WeightStatus  # noqa: E402
from asmlp.models.detection.instances import Instances  # noqa: E402

REC_THRS = np.linspace(0, 1, 101)  # COCO: precision read at recall 0, .01, ..., 1
IOU_THRS = np.linspace(0.5, 0.95, 10)  # COCO: IoU .50:.05:.95
SHIFT = 0.2  # a moved box slides right by 0.2 of its width: IoU = 0.8 / 1.2 = 2/3


def fate(ann_id: int) -> str:
    """What the perturbed detector does with annotation ``ann_id``."""
    return ('exact', 'moved', 'dropped')[ann_id % 3]


def box_iou(a, b) -> float:
    """IoU of two [x, y, w, h] boxes."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def thinned(mask: np.ndarray) -> np.ndarray:
    """``mask`` without its first third of pixels (raster order), nudged off COCO's IoU thresholds."""
    pixels = np.flatnonzero(mask)
    k = round(len(pixels) / 3)
    while np.isclose((len(pixels) - k) / len(pixels), IOU_THRS, atol=1e-6).any():
        k += 1
    out = mask.copy().reshape(-1)
    out[pixels[:k]] = False
    return out.reshape(mask.shape)


class GroundTruthDetector:
    """``predict(image)``: the annotations of that image as Instances; ``mode='perturbed'``: annotations whose
    :func:`fate` is 'exact' scored 0.9, 'moved' ones shifted (box) and thinned (mask) scored 0.2 + IoU / 2, so that
    better detections rank first, 'dropped' ones left out. ``ious[ann_id] = (box IoU, mask IoU)`` of the moved."""

    def __init__(self, root: Path, mode: str = 'exact'):
        data = CocoFolder(root)
        self.by_image, self.ious = {}, {}
        self.cat_ids = data.cat_ids
        for index in range(len(data)):
            image = data.load(index)
            anns = data.coco.loadAnns(data.coco.getAnnIds(imgIds=data.img_ids[index]))
            self.by_image[hashlib.sha256(image.tobytes()).hexdigest()] = self._instances(data, anns, mode,
                                                                                         image.shape[:2])

    def _instances(self, data, anns, mode, size) -> Instances:
        rows = []
        for ann in anns:
            box, mask, score = list(ann['bbox']), data.coco.annToMask(ann).astype(bool), 0.9
            if mode == 'perturbed' and fate(ann['id']) == 'dropped':
                continue
            if mode == 'perturbed' and fate(ann['id']) == 'moved':
                moved_box = [box[0] + SHIFT * box[2], *box[1:]]
                moved_mask = thinned(mask)
                self.ious[ann['id']] = (box_iou(box, moved_box), (moved_mask & mask).sum() / (moved_mask | mask).sum())
                box, mask, score = moved_box, moved_mask, 0.2 + self.ious[ann['id']][1] / 2
            rows.append((score, [box[0], box[1], box[0] + box[2], box[1] + box[3]],
                         self.cat_ids.index(ann['category_id']), mask))
        rows.sort(key=lambda r: -r[0])
        if not rows:
            return Instances.empty(*size)
        return Instances(boxes=np.array([r[1] for r in rows], np.float32), scores=np.array([r[0] for r in rows]),
                         labels=np.array([r[2] for r in rows]), masks=np.stack([r[3] for r in rows]))

    def predict(self, image: np.ndarray) -> Instances:
        return self.by_image[hashlib.sha256(image.tobytes()).hexdigest()]


class NothingDetector:
    def predict(self, image: np.ndarray) -> Instances:
        return Instances.empty(*image.shape[:2])


def one_error(stderr: str) -> str:
    """The one line of ``stderr`` that is not a note, which must be the error."""
    lines = [line for line in stderr.strip().splitlines() if not line.startswith('note: ')]
    assert len(lines) == 1 and lines[0].startswith('error: '), stderr
    return lines[0]


def provider(detector, kind: str = 'coco'):
    status = WeightStatus(model='', kind=kind, source='tests/test_coco_evaluate.py', revision_pinned=True,
                          sha256=None, message='the annotations given back' if kind != 'none' else 'untrained')
    return lambda name: (detector, replace(status, model=name))


def evaluate(argv: list[str], detector, kind: str = 'coco') -> int:
    argv = ['evaluate-coco', *argv]
    return run_evaluate_coco(build_parser(argv).parse_args(argv), provider=provider(detector, kind))


def hand_ap(coco, moved_iou: dict, thresholds=IOU_THRS) -> float:
    """COCO AP (fraction) of the perturbed detector, from the definition: per category and IoU threshold t the
    detections ranked by score are TPs first (exact, then moved ones with IoU >= t) and FPs after, so precision is
    1 up to recall R = TPs / GTs: the interpolated precision (the best precision at recall >= r) is 1 at the recall
    points r <= R and 0 beyond, and 0 everywhere without a TP; AP is the mean over thresholds, recall points and
    the categories that have ground truth."""
    per_category = {}
    for ann in coco.anns.values():
        per_category.setdefault(ann['category_id'], []).append(ann['id'])
    aps = []
    for ids in per_category.values():
        for t in thresholds:
            tps = sum(fate(i) == 'exact' or (fate(i) == 'moved' and moved_iou[i] >= t) for i in ids)
            aps.append(np.count_nonzero(REC_THRS <= tps / len(ids)) / len(REC_THRS) if tps else 0.0)
    return float(np.mean(aps))


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    """5 generated scenes (an odd number: unequal shards), 120x160."""
    root = tmp_path_factory.mktemp('coco') / 'data'
    write_synthetic_coco(root, count=5, seed=3)
    return root


@pytest.fixture(scope='module')
def perturbed(synth, tmp_path_factory):
    """The perturbed detector's single-process report and saved results."""
    out = tmp_path_factory.mktemp('perturbed')
    detector = GroundTruthDetector(synth, 'perturbed')
    assert evaluate(['--data', str(synth), '--models', 'gt_perturbed', '--out', str(out / 'one.json'),
                     '--save-results', str(out / 'results'), '--no-progress'], detector) == 0
    return detector, json.loads((out / 'one.json').read_text()), out / 'results'


def test_ground_truth_given_back_scores_100(synth, tmp_path, capsys):
    out = tmp_path / 'gt.json'
    assert evaluate(['--data', str(synth), '--models', 'gt', '--out', str(out), '--save-results',
                     str(tmp_path / 'res'), '--no-progress'], GroundTruthDetector(synth)) == 0
    table = capsys.readouterr().out
    assert 'gt' in table and 'box' in table and 'mask' in table
    m = json.loads(out.read_text())['models'][0]
    data = CocoFolder(synth)
    areas = [a['area'] for a in data.coco.anns.values()]
    ranges = {'APs': (0, 32 ** 2), 'APm': (32 ** 2, 96 ** 2), 'APl': (96 ** 2, 1e10)}  # COCO's area ranges
    for iou_type in ('bbox', 'segm'):
        for name in ('AP', 'AP50', 'AP75'):  # COCOeval's precision tp / (tp + fp + eps): 100 up to rounding
            assert m[iou_type][name] == pytest.approx(100, abs=1e-9)
        for name, (lo, hi) in ranges.items():
            present = any(lo <= a < hi for a in areas)
            assert m[iou_type][name] == (pytest.approx(100, abs=1e-9) if present else None), (iou_type, name)
    assert m['images'] == 5 and m['detections'] == len(areas)
    # the saved files are standard COCO results: they load, and give back the annotations
    for iou_type in ('bbox', 'segm'):
        results = json.loads((tmp_path / 'res' / f'gt.{iou_type}.json').read_text())
        dt = data.coco.loadRes(results)
        assert len(dt.anns) == len(areas)
    from pycocotools import mask as mask_util
    segm = json.loads((tmp_path / 'res' / 'gt.segm.json').read_text())
    for entry in segm:
        assert isinstance(entry['segmentation']['counts'], str) and len(entry['bbox']) == 4
        gt = [a for a in data.coco.imgToAnns[entry['image_id']] if a['category_id'] == entry['category_id']
              and np.allclose(a['bbox'], entry['bbox'], atol=1e-4)]
        assert len(gt) == 1, entry
        np.testing.assert_array_equal(mask_util.decode(entry['segmentation']), data.coco.annToMask(gt[0]))


def test_a_known_perturbation_scores_the_ap_computed_by_hand(synth, perturbed):
    detector, report, _ = perturbed
    coco = CocoFolder(synth).coco
    assert {fate(i) for i in coco.anns} == {'exact', 'moved', 'dropped'}
    box_iou_of = {i: ious[0] for i, ious in detector.ious.items()}
    mask_iou_of = {i: ious[1] for i, ious in detector.ious.items()}
    assert all(abs(v - 2 / 3) < 1e-4 for v in box_iou_of.values())
    m = report['models'][0]
    for iou_type, ious in (('bbox', box_iou_of), ('segm', mask_iou_of)):
        assert m[iou_type]['AP'] == pytest.approx(100 * hand_ap(coco, ious), abs=1e-9)
        assert m[iou_type]['AP50'] == pytest.approx(100 * hand_ap(coco, ious, [0.5]), abs=1e-9)
        assert m[iou_type]['AP75'] == pytest.approx(100 * hand_ap(coco, ious, [0.75]), abs=1e-9)
    assert 0 < m['bbox']['AP'] < m['bbox']['AP50'] < 100
    assert m['detections'] == sum(fate(i) != 'dropped' for i in coco.anns)


def test_results_files_follow_mmdet(synth, perturbed):
    """bbox = [x1, y1, x2 - x1, y2 - y1] of the float32 box, category_id = sorted ids[label], per image grouped by
    label, segm entries = the bbox entries plus the RLE."""
    detector, _, results = perturbed
    data = CocoFolder(synth)
    bbox = json.loads((results / 'gt_perturbed.bbox.json').read_text())
    segm = json.loads((results / 'gt_perturbed.segm.json').read_text())
    assert [{k: v for k, v in s.items() if k != 'segmentation'} for s in segm] == bbox
    assert [e['image_id'] for e in bbox] == sorted((e['image_id'] for e in bbox), key=data.img_ids.index)
    for img_id in data.img_ids:
        mine = [e for e in bbox if e['image_id'] == img_id]
        cats = [e['category_id'] for e in mine]
        assert cats == sorted(cats)  # label order = sorted category id order
        for e in mine:
            x1, y1, w, h = e['bbox']
            box = np.array([x1, y1, x1 + w, y1 + h], np.float32)
            ann = [a for a in data.coco.imgToAnns[img_id] if a['category_id'] == e['category_id']
                   and abs(a['bbox'][1] - y1) < 1e-4 and abs(a['bbox'][3] - h) < 1e-3]
            assert ann, e
            x = ann[0]['bbox'][0] + (SHIFT * ann[0]['bbox'][2] if fate(ann[0]['id']) == 'moved' else 0)
            np.testing.assert_allclose(box, np.float32([x, ann[0]['bbox'][1], x + ann[0]['bbox'][2],
                                                        ann[0]['bbox'][1] + ann[0]['bbox'][3]]), atol=1e-4)


def test_untrained_detectors_are_refused_unless_allowed(synth, tmp_path, capsys):
    args = ['--data', str(synth), '--models', 'random', '--limit', '2', '--no-progress']
    assert evaluate(args, NothingDetector(), kind='none') == 2
    err = one_error(capsys.readouterr().err)
    assert '--allow-untrained' in err
    out = tmp_path / 'u.json'
    assert evaluate(args + ['--allow-untrained', '--out', str(out)], NothingDetector(), kind='none') == 0
    m = json.loads(out.read_text())['models'][0]
    assert m['weights']['kind'] == 'none' and m['images'] == 2 and m['detections'] == 0
    assert m['bbox']['AP'] is None and 'empty' in m['bbox']['note']  # mmdet: no numbers without detections
    assert m['published']['box_ap'] is None


def test_a_zoo_detector_runs_through_the_loop(synth, tmp_path):
    """A small random detector of the zoo's Mask R-CNN layout (``asmlp.detectors.build_detector``) through the loop:
    its Instances become results that pycocotools loads (random weights: allowed only with --allow-untrained)."""
    import torch

    from asmlp import detectors
    entry = detectors.detector_entry('mask_rcnn_asmlp_tiny')
    entry['backbone']['kwargs'].update(embed_dim=16, depths=[1, 1, 1, 1])
    entry['neck_in_channels'] = [16, 32, 64, 128]
    arch = detectors.architecture_entry('mask_rcnn_asmlp_tiny')
    arch['img_scale'] = [160, 128]
    torch.manual_seed(0)
    model = detectors.build_detector(entry, arch).eval()
    out = tmp_path / 'r.json'
    assert evaluate(['--data', str(synth), '--models', 'tiny_random', '--limit', '1', '--allow-untrained', '--out',
                     str(out), '--save-results', str(tmp_path / 'res'), '--no-progress'], model, kind='none') == 0
    m = json.loads(out.read_text())['models'][0]
    results = json.loads((tmp_path / 'res' / 'tiny_random.bbox.json').read_text())
    assert m['images'] == 1 and m['detections'] == len(results) and m['weights']['kind'] == 'none'
    if results:
        CocoFolder(synth).coco.loadRes(results)


def test_the_published_ap_is_that_of_the_loaded_weights():
    """The official AS-MLP-T Mask R-CNN 1x file: its README's 44.0 / 40.0; other trained weights: Table 5's 3x
    46.0 / 41.5 (arXiv 2107.08391); untrained: none."""
    from asmlp.evaluation.coco_run import published_ap
    status = WeightStatus(model='mask_rcnn_asmlp_tiny', kind='coco', revision_pinned=True, sha256=None, message='',
                          source='weights/mask_rcnn_asmlp_tiny/mask_rcnn_asmlp_tiny_patch4_shift5_mstrain_480-800_'
                                 'adamw_1x_coco.pth')
    assert (published_ap('mask_rcnn_asmlp_tiny', status)['box_ap'],
            published_ap('mask_rcnn_asmlp_tiny', status)['mask_ap']) == (44.0, 40.0)
    other = replace(status, source='/somewhere/else.pth')
    assert (published_ap('mask_rcnn_asmlp_tiny', other)['box_ap'],
            published_ap('mask_rcnn_asmlp_tiny', other)['mask_ap']) == (46.0, 41.5)
    assert published_ap('mask_rcnn_asmlp_tiny', replace(status, kind='none'))['box_ap'] is None


def _copy(synth: Path, tmp_path: Path) -> Path:
    root = tmp_path / 'data'
    shutil.copytree(synth, root)
    return root


def _annotation(root: Path) -> Path:
    return root / 'annotations' / 'instances_val2017.json'


@pytest.mark.parametrize('case,expected', [
    ('missing image', 'missing'),
    ('undecodable image', 'cannot be decoded'),
    ('wrong image size', 'but annotations/instances_val2017.json says'),
    ('not json', 'not JSON'),
    ('a list', 'not a COCO instances annotation file'),
    ('no annotations', '"annotations" is missing'),
    ('other categories', "are not COCO's 80"),
    ('annotation without segmentation', 'no valid "segmentation"'),
    ('no annotation file', 'not in the COCO layout'),
])
def test_bad_data_gets_one_line_and_exit_code_2(case, expected, synth, tmp_path, capsys):
    root = _copy(synth, tmp_path)
    dataset = json.loads(_annotation(root).read_text())
    first = root / 'val2017' / dataset['images'][0]['file_name']
    if case == 'missing image':
        first.unlink()
    elif case == 'undecodable image':
        first.write_bytes(b'not a jpeg')
    elif case == 'wrong image size':
        from PIL import Image
        Image.new('RGB', (50, 40)).save(first)
    elif case == 'not json':
        _annotation(root).write_text('{"images": [')
    elif case == 'a list':
        _annotation(root).write_text('[]')
    elif case == 'no annotation file':
        _annotation(root).unlink()
    else:
        if case == 'no annotations':
            del dataset['annotations']
        elif case == 'other categories':
            dataset['categories'] = [{'id': 1, 'name': 'cat'}, {'id': 2, 'name': 'dog'}]
        else:
            del dataset['annotations'][0]['segmentation']
        _annotation(root).write_text(json.dumps(dataset))
    code = evaluate(['--data', str(root), '--models', 'gt', '--no-progress'], NothingDetector())
    err = one_error(capsys.readouterr().err)
    assert code == 2 and expected in err, err
    if 'image' in case:
        assert first.name in err


def test_the_zoo_path_names_unknown_detectors(synth, capsys):
    assert main(['evaluate-coco', '--data', str(synth), '--models', 'no_such_detector']) == 2
    one_error(capsys.readouterr().err)


def _torchrun(mode: str, args: list[str], env=None, timeout=240):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', __file__, mode,
           *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), **(env or {})})


@pytest.mark.slow
def test_two_torchrun_processes_give_the_single_process_numbers_and_files(synth, perturbed, tmp_path):
    _, one, one_results = perturbed
    out = tmp_path / 'two.json'
    run = _torchrun('perturbed', ['--data', str(synth), '--models', 'gt_perturbed', '--out', str(out),
                                  '--save-results', str(tmp_path / 'results'), '--no-progress'])
    assert run.returncode == 0, run.stderr[-3000:]
    two = json.loads(out.read_text())
    assert two['processes'] == 2 and one['processes'] == 1
    for key in ('bbox', 'segm', 'images', 'detections'):
        assert two['models'][0][key] == one['models'][0][key], key
    for name in ('gt_perturbed.bbox.json', 'gt_perturbed.segm.json'):
        assert (tmp_path / 'results' / name).read_bytes() == (one_results / name).read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize('how,message', [('raise', 'error (rank 1 of 2): injected fault'), ('kill', 'SIGKILL'),
                                         ('hang', 'error (rank 0 of 2)')])
def test_a_dead_rank_ends_the_run_with_a_message(how, message, synth, tmp_path):
    """Rank 1 fails, is killed or hangs after one image: the job ends non-zero saying so (a hung rank: rank 0's
    gather times out after --dist-timeout); subprocess's timeout fails the test if anything waits forever."""
    run = _torchrun('perturbed', ['--data', str(synth), '--models', 'gt_perturbed', '--no-progress',
                                  '--dist-timeout', '10'], env={'ASMLP_EVAL_FAULT': f'1:1:{how}'}, timeout=150)
    assert run.returncode != 0
    assert message in run.stderr, run.stderr[-3000:]


def _worker(argv: list[str]) -> int:
    """torchrun's worker: ``MODE ARGS...`` = ``evaluate-coco ARGS`` with the ground-truth detector in MODE."""
    mode, args = argv[0], ['evaluate-coco', *argv[1:]]
    parsed = build_parser(args).parse_args(args)
    return run_evaluate_coco(parsed, provider=provider(GroundTruthDetector(parsed.data, mode)))


if __name__ == '__main__':
    sys.exit(_worker(sys.argv[1:]))
