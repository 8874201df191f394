"""The scene generator (asmlp.synthetic): seeded, real ADE20K ids, the context pairs in most scenes, and an
independent check that the pairs really are ambiguous pixel by pixel (speed is a benchmark: BENCHMARKS.md)."""
import numpy as np
import pytest

from asmlp.ade20k import CLASSES
from asmlp.synthetic import (CONTEXT_PAIRS, SCENE_CLASSES, example_seed, generate_batch, generate_scene,
                             heldout_seeds, train_seed)

N_CHECK = 64  # held-out scenes used for the statistics below


@pytest.fixture(scope='module')
def heldout():
    return generate_batch(heldout_seeds(N_CHECK), 128)


@pytest.fixture(scope='module')
def train_set():
    return generate_batch([train_seed(123, i) for i in range(160)], 128)


def test_same_seed_same_scene_other_seed_other_scene():
    a, b = generate_scene((1, 5)), generate_scene((1, 5))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    c = generate_scene((1, 6))
    assert not np.array_equal(a.image, c.image)
    assert np.array_equal(generate_scene(7).image, generate_scene(7).image)  # plain ints work too
    images, labels = generate_batch([(1, 5), (1, 6)])
    assert np.array_equal(images[0], a.image) and np.array_equal(labels[1], c.labels)


def test_seed_spaces_are_disjoint():
    assert train_seed(0, 3) != heldout_seeds(4)[3] != example_seed(3)
    assert heldout_seeds(3, start=2) == [(1, 2), (1, 3), (1, 4)]


def test_shapes_and_dtypes():
    scene = generate_scene((1, 0), (96, 160))
    assert scene.image.shape == (96, 160, 3) and scene.image.dtype == np.uint8
    assert scene.labels.shape == (96, 160) and scene.labels.dtype == np.uint8
    with pytest.raises(ValueError, match='at least 16'):
        generate_scene(0, 8)
    with pytest.raises(ValueError, match='no seeds'):
        generate_batch([])


def test_class_ids_are_ade20k_ones():
    assert len(SCENE_CLASSES) >= 7
    for name, index in SCENE_CLASSES.items():
        assert CLASSES[index] == name
    assert {'sky': 2, 'building': 1, 'tree': 4, 'grass': 9, 'road': 6, 'water': 21, 'mountain': 16}.items() \
        <= SCENE_CLASSES.items()
    for a, b in CONTEXT_PAIRS:
        assert a in SCENE_CLASSES and b in SCENE_CLASSES


def test_labels_use_only_scene_classes(heldout):
    _, labels = heldout
    assert set(np.unique(labels)) <= set(SCENE_CLASSES.values())


def test_every_class_and_both_pairs_occur_often(heldout):
    _, labels = heldout
    present = {name: np.array([(lab == i).any() for lab in labels]) for name, i in SCENE_CLASSES.items()}
    for name, where in present.items():
        assert where.mean() >= 0.3, f'{name} in only {where.mean():.0%} of the scenes'
    for a, b in CONTEXT_PAIRS:
        both = (present[a] & present[b]).mean()
        assert both >= 0.55, f'{a} and {b} together in only {both:.0%} of the scenes'
        share = np.isin(labels, [SCENE_CLASSES[a], SCENE_CLASSES[b]]).mean()
        assert share >= 0.15, f'{a} + {b} cover only {share:.0%} of the pixels'


def test_layout_puts_the_pairs_apart_and_the_horizon_moves(heldout):
    _, labels = heldout
    sky, water = SCENE_CLASSES['sky'], SCENE_CLASSES['water']
    building, road = SCENE_CLASSES['building'], SCENE_CLASSES['road']
    horizons = []
    for lab in labels:
        rows = np.arange(lab.shape[0])[:, None]
        if (lab == water).any():  # column by column, water lies below all sky
            lowest_sky = np.where(lab == sky, rows, -1).max(0)
            highest_water = np.where(lab == water, rows, 10 ** 6).min(0)
            assert (highest_water > lowest_sky).all()
        if (lab == building).any() and (lab == road).any():  # buildings rise above the road's far end
            assert np.nonzero(lab == building)[0].min() < np.nonzero(lab == road)[0].min()
        horizons.append(np.nonzero((lab == sky).any(1))[0].max() / lab.shape[0])
    # the horizon (lowest sky row) moves over a large part of the image: a pixel's row does not say which side
    assert np.percentile(horizons, 90) - np.percentile(horizons, 10) >= 0.2


def _colour_classifier(images, labels, bins=16):
    """The best per-pixel colour-only classifier (up to binning): the majority class of each RGB histogram cell."""
    ids = np.array(sorted(SCENE_CLASSES.values()))
    lookup = np.zeros(256, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    cells = _cells(images, bins)
    counts = np.zeros((bins ** 3, len(ids)))
    np.add.at(counts, (cells.ravel(), lookup[labels.ravel()]), 1)
    table = ids[counts.argmax(1)]
    return lambda imgs: table[_cells(imgs, bins)]


def _cells(images, bins):
    q = images.astype(np.int64) * bins // 256
    return (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]


def _iou(pred, labels):
    out = {}
    for name, i in SCENE_CLASSES.items():
        p, t = pred == i, labels == i
        out[name] = np.count_nonzero(p & t) / max(np.count_nonzero(p | t), 1)
    return out


def test_colour_alone_cannot_tell_the_pairs_apart(train_set, heldout):
    """A per-pixel colour classifier (fitted on training scenes, the optimum for colour alone) does well on the
    other classes and clearly worse on the context pairs."""
    classify = _colour_classifier(*train_set)
    images, labels = heldout
    iou = _iou(classify(images), labels)
    paired = [name for pair in CONTEXT_PAIRS for name in pair]
    others = [name for name in SCENE_CLASSES if name not in paired]
    print('colour-only IoU:', {k: round(float(v), 3) for k, v in iou.items()})
    assert np.mean([iou[k] for k in others]) >= 0.75
    assert np.mean([iou[k] for k in paired]) <= 0.45
    assert np.mean([iou[k] for k in others]) - np.mean([iou[k] for k in paired]) >= 0.4
    for a, b in CONTEXT_PAIRS:  # within each pair at least one class is mostly lost to the other
        assert min(iou[a], iou[b]) <= 0.3
