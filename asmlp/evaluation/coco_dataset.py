"""COCO val2017 as mmdet 2.11's ``CocoDataset`` reads it in test mode (open-mmlab/mmdetection
``mmdet/datasets/coco.py``): ``val2017/<file_name>`` and ``annotations/instances_val2017.json``; every image of the
annotation file (test mode filters none), in ``COCO.getImgIds()`` order (the file's order); images decoded with
OpenCV as mmcv's ``LoadImageFromFile`` (then RGB, the detectors' input). A detector's contiguous label ``k`` is the
category :attr:`CocoFolder.cat_ids` ``[k]`` (the annotation file's sorted category ids, COCO's 80 with gaps in 1..90).

Layout problems and an annotation file that is not COCO instances are a :class:`CocoDataError` saying what is wrong;
a missing, undecodable or wrongly sized image is a :class:`~asmlp.evaluation.dataset.BadSample` naming the file.
The real data: :data:`VAL2017_URL` and :data:`ANNOTATIONS_URL` (cocodataset.org), unzipped into one folder.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import os
from numbers import Real
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .dataset import BadSample, read_image

__all__ = ['VAL2017_URL', 'ANNOTATIONS_URL', 'VAL2017_IMAGES', 'IMAGE_DIR', 'ANNOTATION_FILE', 'CocoDataError',
           'CocoFolder', 'coco_categories', 'quiet_coco', 'validate_instances']

VAL2017_URL = 'http://images.cocodataset.org/zips/val2017.zip'  # about 0.8 GB, 5,000 images
ANNOTATIONS_URL = 'http://images.cocodataset.org/annotations/annotations_trainval2017.zip'  # about 0.25 GB
VAL2017_IMAGES = 5000
IMAGE_DIR = 'val2017'
ANNOTATION_FILE = 'annotations/instances_val2017.json'


class CocoDataError(ValueError):
    """The folder is not in the COCO layout, or its annotation file is not a COCO instances file."""


@functools.lru_cache(maxsize=1)
def coco_categories() -> tuple[dict, ...]:
    """COCO's 80 categories (``id``, ``name``) in label order, i.e. by id (:func:`asmlp.detectors.coco_classes`)."""
    from ..detectors import coco_classes
    return tuple({'id': c['category_id'], 'name': c['name']} for c in coco_classes())


def quiet_coco(dataset: dict):
    """A ``pycocotools.coco.COCO`` over an already loaded (and validated) dataset dict, without its prints."""
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
    return coco


def _fail(path: Path, what: str) -> CocoDataError:
    return CocoDataError(f'{path}: {what} (not a COCO instances annotation file)')


def _check_entries(path: Path, dataset: dict, key: str, fields: dict[str, tuple[type, ...]]) -> list[dict]:
    entries = dataset.get(key)
    if not isinstance(entries, list):
        raise _fail(path, f'"{key}" is missing or not a list')
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _fail(path, f'{key}[{k}] is not an object')
        for field, types in fields.items():
            value = entry.get(field)
            if not isinstance(value, types) or isinstance(value, bool):
                raise _fail(path, f'{key}[{k}] (id {entry.get("id")!r}) has no valid "{field}"')
    ids = [entry['id'] for entry in entries]
    if len(set(ids)) != len(ids):
        raise _fail(path, f'{key} ids are not unique')
    return entries


def validate_instances(dataset: Any, path: Path) -> None:
    """Raise :class:`CocoDataError` unless ``dataset`` (the parsed annotation file at ``path``) is a COCO instances
    file with COCO's 80 categories: images with ``id``, ``file_name``, ``width``, ``height``; annotations with
    ``id``, ``image_id`` and ``category_id`` that exist, ``bbox`` [x, y, w, h], ``area``, ``iscrowd`` 0/1 and a
    polygon or RLE ``segmentation``."""
    if not isinstance(dataset, dict):
        raise _fail(path, f'the top level is a {type(dataset).__name__}, not an object')
    images = _check_entries(path, dataset, 'images', {'id': (int,), 'file_name': (str,), 'width': (int,),
                                                      'height': (int,)})
    categories = _check_entries(path, dataset, 'categories', {'id': (int,), 'name': (str,)})
    annotations = _check_entries(path, dataset, 'annotations', {
        'id': (int,), 'image_id': (int,), 'category_id': (int,), 'bbox': (list,), 'area': (Real,),
        'iscrowd': (int,), 'segmentation': (list, dict)})
    expected = {c['id']: c['name'] for c in coco_categories()}
    found = {c['id']: c['name'] for c in categories}
    if found != expected:
        wrong = sorted(set(found.items()) ^ set(expected.items()))
        shown = ', '.join(f'{i} {n!r}' for i, n in wrong[:4]) + (' ...' if len(wrong) > 4 else '')
        raise CocoDataError(f'{path}: its {len(found)} categories are not COCO\'s 80 (ids 1..90 with gaps; differ: '
                            f'{shown}); the detectors predict COCO\'s classes')
    image_ids = {image['id'] for image in images}
    for k, ann in enumerate(annotations):
        where = f'annotations[{k}] (id {ann["id"]})'
        if ann['image_id'] not in image_ids:
            raise _fail(path, f'{where} refers to image {ann["image_id"]}, which "images" does not list')
        if ann['category_id'] not in expected:
            raise _fail(path, f'{where} has category {ann["category_id"]}, which "categories" does not list')
        if len(ann['bbox']) != 4 or not all(isinstance(v, Real) for v in ann['bbox']):
            raise _fail(path, f'{where} has a "bbox" that is not [x, y, w, h]')
        if ann['iscrowd'] not in (0, 1):
            raise _fail(path, f'{where} has "iscrowd" {ann["iscrowd"]} (0 or 1)')
        segm = ann['segmentation']
        if isinstance(segm, dict) and not ('counts' in segm and 'size' in segm):
            raise _fail(path, f'{where} has an RLE "segmentation" without "counts" and "size"')


def _resolve_root(root: Path) -> Path:
    if not (root / ANNOTATION_FILE).exists() and (root / 'coco' / ANNOTATION_FILE).exists():
        return root / 'coco'  # mmdet's data/coco/ one level down
    return root


class CocoFolder:
    """The images of ``root`` (holding ``val2017/`` and ``annotations/instances_val2017.json``, or a folder with
    them under ``coco/``) in the annotation file's order. ``coco``: the ground truth as ``pycocotools.coco.COCO``;
    ``img_ids`` (that order), ``cat_ids`` (sorted: label k is ``cat_ids[k]``); ``notes``: what is off without being
    an error (fewer images than val2017's 5,000)."""

    def __init__(self, root: os.PathLike | str):
        given = Path(root)
        if not given.is_dir():
            raise CocoDataError(f'{given} is not a folder; expected COCO val2017 (val2017/ from {VAL2017_URL} and '
                                f'{ANNOTATION_FILE} from {ANNOTATIONS_URL}, unzipped into one folder)')
        self.root = _resolve_root(given)
        self.image_dir = self.root / IMAGE_DIR
        self.annotation_path = self.root / ANNOTATION_FILE
        missing = [str(p) for p in (self.image_dir, self.annotation_path) if not p.exists()]
        if missing:
            raise CocoDataError(f'{given} is not in the COCO layout: missing {" and ".join(missing)} (expected '
                                f'{IMAGE_DIR}/*.jpg and {ANNOTATION_FILE}; the data: {VAL2017_URL}, {ANNOTATIONS_URL})')
        try:
            with open(self.annotation_path, 'rb') as f:
                dataset = json.load(f)
        except json.JSONDecodeError as e:
            raise _fail(self.annotation_path, f'not JSON ({e.msg} at line {e.lineno} column {e.colno})') from None
        except UnicodeDecodeError:
            raise _fail(self.annotation_path, 'not JSON text') from None
        except OSError as e:
            raise CocoDataError(f'{self.annotation_path}: cannot be read ({e.strerror or type(e).__name__})') from None
        validate_instances(dataset, self.annotation_path)
        self.coco = quiet_coco(dataset)
        self.img_ids: list[int] = list(self.coco.getImgIds())
        if not self.img_ids:
            raise CocoDataError(f'{self.annotation_path} lists no images')
        self.cat_ids: list[int] = sorted(self.coco.getCatIds())
        self.notes: list[str] = []
        if len(self.img_ids) != VAL2017_IMAGES:
            self.notes.append(f'{len(self.img_ids)} images in {self.annotation_path}; COCO val2017 has '
                              f'{VAL2017_IMAGES}: numbers on another set are not the papers\'')

    def __len__(self) -> int:
        return len(self.img_ids)

    def info(self, index: int) -> dict:
        """The ``images`` entry of image ``index`` (``id``, ``file_name``, ``width``, ``height``, ...)."""
        return self.coco.imgs[self.img_ids[index]]

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.info(index)['file_name']

    def missing_images(self, indices: Optional[list[int]] = None) -> list[Path]:
        """The image files of ``indices`` (default: all) that are not in ``val2017/``."""
        indices = range(len(self)) if indices is None else indices
        return [path for path in map(self.image_path, indices) if not path.is_file()]

    def load(self, index: int) -> np.ndarray:
        """Image ``index`` as HxWx3 uint8 RGB (OpenCV's decoding, as mmcv), or :class:`BadSample` when it is
        missing, cannot be decoded, or its size is not the annotation file's ``width`` x ``height``."""
        info, path = self.info(index), self.image_path(index)
        image = read_image(info['file_name'], path)
        height, width = image.shape[:2]
        if (width, height) != (info['width'], info['height']):
            raise BadSample(info['file_name'], path, f'image is {width}x{height} but {ANNOTATION_FILE} says '
                                                     f'{info["width"]}x{info["height"]}')
        return image
