"""ADE20K (SceneParsing, 150 classes): class names and the colour palette, read from ``data/ade20k.json``."""
from __future__ import annotations

import json
from importlib import resources

import numpy as np

_DATA = json.loads(resources.files(__package__).joinpath('data/ade20k.json').read_text())

CLASSES: tuple[str, ...] = tuple(_DATA['classes'])
PALETTE: np.ndarray = np.array(_DATA['palette'], dtype=np.uint8)  # (150, 3) RGB, mmseg's; index = model class
PALETTE.flags.writeable = False
assert len(CLASSES) == len(PALETTE) == 150
