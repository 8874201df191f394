"""``python -m asmlp synth-coco``: generated scenes in the COCO layout, read back with pycocotools."""
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from asmlp.__main__ import main
from asmlp.evaluation.coco_dataset import CocoFolder
from asmlp.evaluation.coco_synthetic import dataset_seed, generate_coco_scene
from asmlp.synthetic import generate_scene

# mmdet 2.x CocoDataset.CLASSES (open-mmlab/mmdetection mmdet/datasets/coco.py), in label order
MMDET_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
    'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant',
    'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard',
    'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli',
    'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'dining table', 'toilet',
    'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')
COCO_ID_GAPS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}  # the ids 1..90 that COCO 2017 does not use


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth') / 'coco'
    assert main(['synth-coco', str(root), '--count', '6', '--seed', '2']) == 0
    return root


def test_output_loads_with_pycocotools_with_cocos_noncontiguous_ids(written):
    coco = COCO(str(written / 'annotations' / 'instances_val2017.json'))
    cats = coco.loadCats(coco.getCatIds())
    assert [c['name'] for c in sorted(cats, key=lambda c: c['id'])] == list(MMDET_CLASSES)
    assert {c['id'] for c in cats} == set(range(1, 91)) - COCO_ID_GAPS
    assert len(coco.getImgIds()) == 6 and len(coco.anns) >= 6
    assert coco.getImgIds() != sorted(coco.getImgIds())  # ids are not indices: file order is not id order
    used = {a['category_id'] for a in coco.anns.values()}
    assert len(used) > 3 and used <= {c['id'] for c in cats}
    for img in coco.loadImgs(coco.getImgIds()):
        with Image.open(written / 'val2017' / img['file_name']) as im:
            assert im.size == (img['width'], img['height']) == (160, 120)
        assert img['file_name'] == f'{img["id"]:012d}.jpg'
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
        masks = np.stack([coco.annToMask(a) for a in anns])
        assert masks.sum(axis=0).max() == 1  # objects never overlap: each is whole and countable
        for ann, mask in zip(anns, masks):
            assert ann['iscrowd'] == 0 and isinstance(ann['segmentation'], list)
            assert ann['area'] == mask.sum() > 0
            xs, ys = ann['segmentation'][0][0::2], ann['segmentation'][0][1::2]
            np.testing.assert_allclose(ann['bbox'], [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                                       atol=0.011)


def test_objects_are_painted_exactly_where_their_masks_are():
    """Outside the annotated masks the scene is the generated landscape, pixel for pixel; inside, the objects."""
    for index in range(4):
        seed = dataset_seed(2, index)
        scene = generate_coco_scene(seed, (120, 160))
        background = generate_scene((*seed, 0), (120, 160)).image
        masks = [mask_util.decode(mask_util.merge(mask_util.frPyObjects(a['segmentation'], 120, 160))).astype(bool)
                 for a in scene.annotations]
        union = np.any(masks, axis=0)
        np.testing.assert_array_equal(scene.image[~union], background[~union])
        for mask in masks:
            changed = np.any(scene.image != background, axis=-1)
            assert changed[mask].mean() > 0.9


def test_the_same_seed_gives_the_same_set(written, tmp_path):
    assert main(['synth-coco', str(tmp_path / 'again'), '--count', '6', '--seed', '2']) == 0
    assert main(['synth-coco', str(tmp_path / 'other'), '--count', '6', '--seed', '3']) == 0
    ann = 'annotations/instances_val2017.json'
    assert (tmp_path / 'again' / ann).read_bytes() == (written / ann).read_bytes()
    assert json.loads((tmp_path / 'other' / ann).read_text())['annotations'] != json.loads((written / ann).read_text())[
        'annotations']


def test_the_reader_keeps_the_file_order_and_sorted_category_ids(written):
    data = CocoFolder(written)
    listed = json.loads((written / 'annotations' / 'instances_val2017.json').read_text())['images']
    assert data.img_ids == [img['id'] for img in listed]
    assert data.cat_ids == sorted(data.cat_ids) and len(data.cat_ids) == 80 and data.cat_ids[-1] == 90
    assert data.load(0).shape == (120, 160, 3) and data.load(0).dtype == np.uint8


def test_a_count_below_one_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['synth-coco', str(tmp_path / 'x'), '--count', '0'])
    assert exit_info.value.code == 2 and 'must be >= 1' in capsys.readouterr().err
