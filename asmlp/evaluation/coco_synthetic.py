"""Generated scenes with countable objects, written as a COCO val2017 folder (``python -m asmlp synth-coco``), so the
COCO evaluation runs offline, in tests and for newcomers.

Each scene is a generated landscape (:func:`asmlp.synthetic.generate_scene`) with 1..``max_objects`` flat objects
pasted on it that never touch one another: each a polygon (rectangle, ellipse, triangle, diamond, hexagon, star,
rotated) whose shape and colour follow its category, so a detector could learn them. Categories are COCO's 80 with
their ids (1..90 with gaps); sizes range over COCO's small / medium / large areas (below 32², up to 96², above).
Annotations are COCO instances: ``segmentation`` the polygon ([x1, y1, x2, y2, ...], two decimals), ``area`` the
pixel count of that polygon as pycocotools rasterizes it (the painted pixels are exactly those), ``bbox`` the
polygon's [x, y, w, h], ``iscrowd`` 0. Image ids are distinct random numbers, listed in generation order, and file
names are COCO's ``<id:012d>.jpg``.

Scene ``i`` of a set seeded ``seed`` has the seed :func:`dataset_seed` ``(5, seed, i)``, disjoint from the seed spaces
of :mod:`asmlp.synthetic` (0..4).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..synthetic import generate_scene
from .coco_dataset import ANNOTATION_FILE, IMAGE_DIR, coco_categories

__all__ = ['SHAPES', 'DEFAULT_SIZE', 'CocoScene', 'dataset_seed', 'category_style', 'generate_coco_scene',
           'write_synthetic_coco']

SHAPES = ('rectangle', 'ellipse', 'triangle', 'diamond', 'hexagon', 'star')
DEFAULT_SIZE = (120, 160)  # height, width
JPEG_QUALITY = 95
_MIN_AREA = 12  # pixels
_GAP = 2.0  # pixels between the boxes of two objects


@dataclass(frozen=True)
class CocoScene:
    """``image``: HxWx3 uint8 RGB; ``annotations``: COCO instance dicts without ``id`` / ``image_id``."""
    image: np.ndarray
    annotations: list[dict]


def dataset_seed(seed: int, index: int) -> tuple[int, int, int]:
    """The seed of scene ``index`` of a generated COCO set seeded ``seed``."""
    return (5, int(seed), int(index))


def category_style(category_id: int) -> tuple[str, np.ndarray]:
    """The shape and RGB colour (float32) of a category's objects."""
    rng = np.random.default_rng((5, 1 << 20, int(category_id)))
    return SHAPES[int(category_id) % len(SHAPES)], rng.uniform(20, 235, size=3).astype(np.float32)


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices (K, 2) of ``shape`` inside [-1, 1]²."""
    if shape == 'rectangle':
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if shape == 'diamond':
        return np.array([[0, -1], [1, 0], [0, 1], [-1, 0]], dtype=np.float64)
    if shape == 'triangle':
        return np.array([[0, -1], [1, 1], [-1, 1]], dtype=np.float64)
    t = np.linspace(0, 2 * np.pi, {'ellipse': 24, 'hexagon': 6, 'star': 10}[shape], endpoint=False)
    r = np.where(np.arange(len(t)) % 2, 0.45, 1.0) if shape == 'star' else np.ones_like(t)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _paint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> None:
    """Fill ``mask`` with ``colour``, lit from one side, a darker rim and a little noise."""
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return
    light = rng.uniform(-1, 1, size=2)
    span = max(np.ptp(rows), np.ptp(cols), 1)
    shade = 1.0 + 0.25 * ((rows - rows.mean()) * light[0] + (cols - cols.mean()) * light[1]) / span
    pixels = colour[None, :] * shade[:, None] + rng.normal(0, 4.0, size=(len(rows), 3))
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    pixels[~inner[rows, cols]] *= 0.6
    image[rows, cols] = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def generate_coco_scene(seed: int | Sequence[int], size: Sequence[int] = DEFAULT_SIZE,
                        max_objects: int = 6) -> CocoScene:
    """One scene with its instance annotations at ``size`` (height, width), fixed by ``seed``."""
    from pycocotools import mask as mask_util
    height, width = int(size[0]), int(size[1])
    key = tuple(seed) if isinstance(seed, (tuple, list)) else (int(seed),)
    image = generate_scene((*key, 0), (height, width)).image.copy()
    rng = np.random.default_rng((*key, 1))
    categories = coco_categories()
    roomy = [c for c in categories if category_style(c['id'])[0] in ('rectangle', 'ellipse', 'hexagon')]
    wanted = int(rng.integers(1, max_objects + 1))
    big = rng.random() < 0.5
    boxes: list[tuple[float, float, float, float]] = []
    annotations = []
    for _ in range(40 * wanted):
        if len(annotations) == wanted:
            break
        first_big = big and not annotations  # one object of COCO's large size (area above 96²) in some scenes
        pool = roomy if first_big else categories
        category = pool[int(rng.integers(len(pool)))]
        shape, colour = category_style(category['id'])
        if first_big:
            half = rng.uniform(0.4, 0.48, size=2) * [width, height]
            angle = rng.uniform(-0.08, 0.08)
        else:
            side = math.exp(rng.uniform(math.log(6.0), math.log(0.85 * min(height, width))))
            aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
            half = np.array([side * math.sqrt(aspect) / 2, side / math.sqrt(aspect) / 2])
            angle = rng.uniform(0, np.pi) if shape != 'rectangle' or rng.random() < 0.3 else 0.0
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points = _unit_polygon(shape) * half @ rotation.T
        low, high = points.min(axis=0), points.max(axis=0)
        extent = high - low
        if extent[0] > width - 2 or extent[1] > height - 2:
            continue
        centre = rng.uniform([1 - low[0], 1 - low[1]], [width - 1 - high[0], height - 1 - high[1]])
        points = np.round(points + centre, 2)
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        if any(x0 - _GAP < bx1 and bx0 < x1 + _GAP and y0 - _GAP < by1 and by0 < y1 + _GAP
               for bx0, by0, bx1, by1 in boxes):
            continue  # objects never touch: every instance is whole and countable
        polygon = [float(v) for v in points.reshape(-1)]
        rle = mask_util.merge(mask_util.frPyObjects([polygon], height, width))
        area = int(mask_util.area(rle))
        if area < _MIN_AREA:
            continue
        _paint(image, mask_util.decode(rle).astype(bool), colour, rng)
        boxes.append((x0, y0, x1, y1))
        annotations.append({'category_id': category['id'], 'segmentation': [polygon], 'area': float(area),
                            'bbox': [float(x0), float(y0), round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                            'iscrowd': 0})
    return CocoScene(image=image, annotations=annotations)


def write_synthetic_coco(out: os.PathLike | str, count: int = 8, seed: int = 0,
                         size: Sequence[int] = DEFAULT_SIZE) -> dict:
    """Write ``count`` scenes into ``out`` as ``val2017/<id:012d>.jpg`` and
    ``annotations/instances_val2017.json`` (replaced; other files are not touched); returns the annotation dict."""
    if count < 1:
        raise ValueError(f'count must be >= 1, got {count}')
    height, width = int(size[0]), int(size[1])
    if height < 32 or width < 32:
        raise ValueError(f'scenes are at least 32x32, got {height}x{width}')
    root = Path(out)
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    (root / ANNOTATION_FILE).parent.mkdir(parents=True, exist_ok=True)
    ids = np.random.default_rng((5, int(seed))).choice(np.arange(1, 1_000_000), size=count, replace=False)
    images, annotations = [], []
    for index, image_id in enumerate(int(i) for i in ids):
        scene = generate_coco_scene(dataset_seed(seed, index), (height, width))
        file_name = f'{image_id:012d}.jpg'
        Image.fromarray(scene.image).save(root / IMAGE_DIR / file_name, quality=JPEG_QUALITY, subsampling=0)
        images.append({'id': image_id, 'file_name': file_name, 'width': width, 'height': height})
        for ann in scene.annotations:
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id, **ann})
    dataset = {'info': {'description': f'asmlp synth-coco: {count} generated scenes, seed {seed}', 'version': '1'},
               'licenses': [], 'images': images, 'annotations': annotations,
               'categories': [dict(c) for c in coco_categories()]}
    path = root / ANNOTATION_FILE
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(dataset))
    os.replace(tmp, path)
    return dataset
