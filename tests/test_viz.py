"""Masks, overlays, legends and disagreement maps, against the ADE20K palette of mmseg."""
import numpy as np
import pytest

from asmlp import viz
from asmlp.ade20k import CLASSES, PALETTE


def test_palette_and_classes_are_mmsegs():
    # spot checks from mmseg's ADE20KDataset (mmseg/datasets/ade.py PALETTE), incl. the duplicated grey of
    # road/skyscraper
    assert (len(CLASSES), PALETTE.shape) == (150, (150, 3))
    assert CLASSES[2] == 'sky' and tuple(PALETTE[2]) == (6, 230, 230)
    assert CLASSES[12] == 'person' and tuple(PALETTE[12]) == (150, 5, 61)
    assert CLASSES[149] == 'flag' and tuple(PALETTE[149]) == (92, 0, 255)
    assert tuple(PALETTE[6]) == tuple(PALETTE[48]) == (140, 140, 140)
    assert CLASSES[7] == 'bed'  # mmseg's "bed " without the trailing space


def test_colorize_and_overlay():
    labels = np.array([[2, 4], [4, 12]])
    mask = viz.colorize(labels)
    assert mask.dtype == np.uint8 and mask.shape == (2, 2, 3)
    assert tuple(mask[0, 0]) == (6, 230, 230) and tuple(mask[1, 1]) == (150, 5, 61)
    image = np.full((2, 2, 3), 100, np.uint8)
    assert np.array_equal(viz.overlay(image, labels, 0.0), image)
    assert np.array_equal(viz.overlay(image, labels, 1.0), mask)
    half = viz.overlay(image, labels, 0.5).astype(int)
    assert np.abs(half - (image.astype(int) + mask) / 2).max() <= 1
    with pytest.raises(ValueError, match='opacity'):
        viz.overlay(image, labels, 1.5)


def test_legend_sorted_by_area():
    labels = np.array([[4, 4, 4, 2], [4, 2, 12, 2]])
    rows = viz.legend(labels)
    assert [r['name'] for r in rows] == ['tree', 'sky', 'person']
    assert [round(r['share'], 3) for r in rows] == [0.5, 0.375, 0.125]
    assert rows[0]['color'] == '#04c803'


def test_disagreement():
    a = np.array([[1, 1], [2, 2]])
    b = np.array([[1, 3], [2, 2]])
    c = np.array([[1, 4], [5, 2]])
    view, share = viz.disagreement([a, a])
    assert share == 0 and (view == 40).all()
    view, share = viz.disagreement([a, b, c])
    assert share == 0.5
    assert tuple(view[0, 1]) == (220, 30, 60)  # three labels meet
    assert tuple(view[1, 0]) == (255, 176, 0)  # two labels meet
    with pytest.raises(ValueError):
        viz.disagreement([a])


@pytest.mark.parametrize('bad', [np.zeros((2, 2, 3), np.int64), np.full((2, 2), 150), np.zeros((2, 2), np.float32)])
def test_bad_label_maps(bad):
    with pytest.raises(ValueError):
        viz.colorize(bad)
