"""Example images of generated scenes for the app: ``assets/examples/generated_<k>.png``, the scene of seed
``example_seed(k)`` at 256x256 (made by this project, CC0)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2

from ..paths import REPO_ROOT
from ..synthetic import example_seed, generate_scene

__all__ = ['EXAMPLE_INDICES', 'EXAMPLE_SIZE', 'example_path', 'write_examples']

EXAMPLE_INDICES = (0, 10, 13, 15)  # picked for variety (overcast, dusk, sunset, day) with both context pairs in each
EXAMPLE_SIZE = 256
EXAMPLES_DIR = REPO_ROOT / 'assets' / 'examples'


def example_path(index: int, folder: str | os.PathLike = EXAMPLES_DIR) -> Path:
    return Path(folder) / f'generated_{index}.png'


def write_examples(out_dir: str | os.PathLike = EXAMPLES_DIR, indices=EXAMPLE_INDICES,
                   size: int = EXAMPLE_SIZE) -> list[Path]:
    """Write the scenes ``example_seed(k)`` for k in ``indices`` as lossless PNG files; returns their paths."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = []
    for k in indices:
        path = example_path(k, out_dir)
        if not cv2.imwrite(str(path), cv2.cvtColor(generate_scene(example_seed(k), size).image, cv2.COLOR_RGB2BGR)):
            raise OSError(f'could not write {path}')
        paths.append(path)
    return paths


if __name__ == '__main__':  # python -m asmlp.demo.examples
    for p in write_examples():
        print(p)
