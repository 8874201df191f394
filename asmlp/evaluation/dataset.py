"""ADE20K validation data as mmseg 0.x reads it (``mmseg/datasets/ade.py``, ``custom.py``): ``images/validation/
*.jpg`` (decoded with OpenCV, as mmcv's ``LoadImageFromFile``, then BGR -> RGB as ``Normalize(to_rgb=True)``) and
``annotations/validation/*.png`` (8-bit class ids 0..150, 0 = "other"; read with Pillow at their original size),
paired by file stem and sorted by name. ``reduce_zero_label`` turns the PNG values into the scored labels: 0 -> 255
(ignored), 1..150 -> 0..149, 255 stays 255.

Every problem with a sample (missing or unreadable image or annotation, sizes that differ, label values 151..254)
is a :class:`BadSample` naming the file; layout problems are a :class:`DataError` saying what is missing.
The real set is the MIT zip ``ADEChallengeData2016.zip`` (SHA1 :data:`ADE20K_ZIP_SHA1`, CSAILVision/sceneparsing;
the SHA1 as dmlc/gluon-cv's ``scripts/datasets/ade20k.py`` checks it), unzipped anywhere.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .metrics import IGNORE_INDEX, NUM_CLASSES

__all__ = ['ADE20K_URL', 'ADE20K_ZIP_SHA1', 'VALIDATION_IMAGES', 'BadSample', 'DataError', 'Sample',
           'ADE20KFolder', 'reduce_zero_label', 'encode_labels', 'read_image', 'read_annotation']

ADE20K_URL = 'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip'
ADE20K_ZIP_SHA1 = '219e1696abb36c8ba3a3afe7fb2f4b4606a897c7'
VALIDATION_IMAGES = 2000  # ADE_val_00000001 .. ADE_val_00002000
_REAL_NAME = re.compile(r'ADE_val_(\d{8})')


class DataError(ValueError):
    """The folder is not in the ADEChallengeData2016 layout (or holds no images); the message says what is missing."""


class BadSample(ValueError):
    """One image / annotation pair that cannot be scored; ``name`` is the image's stem, ``path`` the bad file."""

    def __init__(self, name: str, path: os.PathLike | str, reason: str):
        self.name, self.path, self.reason = name, str(path), reason
        super().__init__(f'{path}: {reason}')


@dataclass(frozen=True)
class Sample:
    """``image``: HxWx3 uint8 RGB; ``label``: HxW uint8 scored labels (0..149, 255 ignored)."""
    name: str
    image: np.ndarray
    label: np.ndarray


def reduce_zero_label(png: np.ndarray) -> np.ndarray:
    """mmseg's ``reduce_zero_label`` on uint8 annotation values: 0 -> 255, v -> v - 1, and 255 stays 255."""
    label = np.array(png, dtype=np.uint8, copy=True)
    label[label == 0] = 255
    label = label - 1
    label[label == 254] = 255
    return label


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """Predicted class indices 0..149 -> the annotation encoding 1..150 (uint8), as mmseg's ADE20K
    ``format_results`` writes its PNGs."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f'class indices must be 0..{NUM_CLASSES - 1}, got {labels.min()}..{labels.max()}')
    return (labels + 1).astype(np.uint8)


def _resolve_root(root: Path, split: str) -> Path:
    if not (root / 'images' / split).is_dir() and (root / 'ADEChallengeData2016' / 'images' / split).is_dir():
        return root / 'ADEChallengeData2016'  # the folder the zip was unzipped into
    return root


class ADE20KFolder:
    """The image / annotation pairs of ``root`` (an unzipped ``ADEChallengeData2016``, the folder holding it, or any
    folder in that layout), sorted by name. ``notes``: what is off without being an error (a real validation set
    with fewer than 2,000 images names the missing ones)."""

    def __init__(self, root: os.PathLike | str, split: str = 'validation'):
        given = Path(root)
        if not given.is_dir():
            raise DataError(f'{given} is not a folder; expected an unzipped ADEChallengeData2016 '
                            f'({ADE20K_URL}, SHA1 {ADE20K_ZIP_SHA1})')
        self.root = _resolve_root(given, split)
        self.image_dir = self.root / 'images' / split
        self.annotation_dir = self.root / 'annotations' / split
        missing = [str(d) for d in (self.image_dir, self.annotation_dir) if not d.is_dir()]
        if missing:
            raise DataError(f'{given} is not in the ADEChallengeData2016 layout: missing {" and ".join(missing)} '
                            f'(expected images/{split}/*.jpg and annotations/{split}/*.png; the data: {ADE20K_URL}, '
                            f'SHA1 {ADE20K_ZIP_SHA1})')
        self._images = {p.stem: p for p in self.image_dir.iterdir() if p.suffix.lower() == '.jpg'}
        if not self._images:
            raise DataError(f'no .jpg images in {self.image_dir}')
        annotated = {p.stem for p in self.annotation_dir.iterdir() if p.suffix.lower() == '.png'}
        self.names = sorted(set(self._images) | annotated)  # an annotation without its image: a bad sample
        self.notes: list[str] = []
        real = [m for m in map(_REAL_NAME.fullmatch, self.names) if m]
        if split == 'validation' and real and len(self.names) != VALIDATION_IMAGES:
            have = {int(m.group(1)) for m in real}
            absent = [f'ADE_val_{i:08d}' for i in range(1, VALIDATION_IMAGES + 1) if i not in have]
            shown = ', '.join(absent[:5]) + (f' and {len(absent) - 5} more' if len(absent) > 5 else '')
            self.notes.append(f'{len(self.names)} images in {self.image_dir}; the ADE20K validation set has '
                              f'{VALIDATION_IMAGES}' + (f' (missing: {shown})' if absent else '') +
                              ': numbers on a subset are not the papers\'')

    def __len__(self) -> int:
        return len(self.names)

    def image_path(self, name: str) -> Path:
        return self._images.get(name, self.image_dir / f'{name}.jpg')

    def annotation_path(self, name: str) -> Path:
        return self.annotation_dir / f'{name}.png'

    def load(self, index: int) -> Sample:
        """The sample ``index`` (in name order), or :class:`BadSample`."""
        name = self.names[index]
        image = read_image(name, self.image_path(name))
        label = read_annotation(name, self.annotation_path(name))
        if label.shape != image.shape[:2]:
            raise BadSample(name, self.annotation_path(name),
                            f'annotation is {label.shape[1]}x{label.shape[0]} but the image is '
                            f'{image.shape[1]}x{image.shape[0]}')
        return Sample(name, image, reduce_zero_label(label))


def read_image(name: str, path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB, decoded by OpenCV as mmcv does (BGR, then converted)."""
    if not path.is_file():
        raise BadSample(name, path, 'image file is missing')
    data = np.fromfile(str(path), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise BadSample(name, path, 'image cannot be decoded (damaged or not a JPEG)')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_annotation(name: str, path: Path) -> np.ndarray:
    """HxW uint8 annotation values 0..150 (and 255), read with Pillow as mmseg 0.x does."""
    if not path.is_file():
        raise BadSample(name, path, 'annotation file is missing')
    try:
        with Image.open(path) as im:
            if im.mode not in ('L', 'P'):
                raise BadSample(name, path, f'annotation must be a single-channel 8-bit PNG, got mode {im.mode}')
            png = np.asarray(im)
    except BadSample:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise BadSample(name, path, f'annotation cannot be read ({type(e).__name__})') from None
    bad = (png > NUM_CLASSES) & (png != IGNORE_INDEX)
    if bad.any():
        values = np.unique(png[bad])
        raise BadSample(name, path, f'annotation values must be 0..{NUM_CLASSES} (or {IGNORE_INDEX}), found '
                                    f'{", ".join(map(str, values[:8]))}' + (' ...' if len(values) > 8 else ''))
    return png

