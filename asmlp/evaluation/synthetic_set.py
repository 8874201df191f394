"""Generated scenes (:mod:`asmlp.synthetic`) written as an ADE20K folder: ``images/validation/<name>.jpg`` and
``annotations/validation/<name>.png`` in the real encoding (class index + 1, 0 = "other"), so the evaluation runs
offline, in tests and for newcomers.

``heldout=True`` writes the held-out scenes ``heldout_seeds(count)`` (default :data:`~asmlp.synthetic.HELDOUT_SCENES`)
at the demo size: exactly those behind each demo model's recorded ``heldout.miou``. Otherwise scene ``i`` has the seed
:func:`dataset_seed` ``(4, seed, i)``, disjoint from training ``(0, ...)``, held-out ``(1, ...)``, examples ``(2,
...)`` and speed runs ``(3, ...)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from PIL import Image

from ..synthetic import HELDOUT_SCENES, HELDOUT_SIZE, generate_scene, heldout_seeds
from .dataset import encode_labels

__all__ = ['JPEG_QUALITY', 'dataset_seed', 'write_synthetic_ade20k']

JPEG_QUALITY = 95  # with 4:4:4 chroma: the pixel noise of the scenes survives, colours are not blurred


def dataset_seed(seed: int, index: int) -> tuple[int, int, int]:
    """The seed of scene ``index`` of a generated set seeded ``seed``."""
    return (4, int(seed), int(index))


def write_synthetic_ade20k(out: os.PathLike | str, count: Optional[int] = None, seed: int = 0,
                           heldout: bool = False, size: int = 128) -> list[str]:
    """Write ``count`` scenes into ``out`` in the ADEChallengeData2016 layout; returns their names (sorted).
    Existing files of the same names are replaced; nothing else in ``out`` is touched."""
    if heldout:
        count = HELDOUT_SCENES if count is None else count
        if size != HELDOUT_SIZE:
            raise ValueError(f'the held-out scenes are {HELDOUT_SIZE}x{HELDOUT_SIZE}; --size does not apply')
        seeds = heldout_seeds(count)
        names = [f'heldout_{i:05d}' for i in range(count)]
    else:
        count = 16 if count is None else count
        seeds = [dataset_seed(seed, i) for i in range(count)]
        names = [f'scene_{seed}_{i:05d}' for i in range(count)]
    if count < 1:
        raise ValueError(f'count must be >= 1, got {count}')
    root = Path(out)
    images, annotations = root / 'images' / 'validation', root / 'annotations' / 'validation'
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for name, scene_seed in zip(names, seeds):
        scene = generate_scene(scene_seed, size)
        Image.fromarray(scene.image).save(images / f'{name}.jpg', quality=JPEG_QUALITY, subsampling=0)
        Image.fromarray(encode_labels(scene.labels)).save(annotations / f'{name}.png')
    return names
