"""Procedurally generated outdoor scenes with ADE20K labels, where colour alone is ambiguous.

``generate_scene(seed, size)`` draws one scene: an RGB uint8 image and its label map of real ADE20K class indices
(``asmlp.ade20k.CLASSES``): sky 2, building 1, tree 4, grass 9, road 6, water 21, mountain 16. The same seed always
gives the same scene (numpy's PCG64 seeded with ``seed``; an int or a tuple of ints).

Two pairs of classes are built to look alike pixel by pixel (:data:`CONTEXT_PAIRS`):

- **sky / water**: water mirrors the sky, its colour at depth ``d`` below the horizon is the sky's colour at height
  ``d`` above it, with the same cloud texture and pixel noise. It only lies below the horizon.
- **building / road**: building walls and the road share one grey per scene, the same texture and noise. Buildings
  stand on the horizon and rise into the sky; the road runs from the bottom of the image towards the horizon
  between grass (and stops at a lake).

The horizon moves between 30% and 68% of the height, so neither the colour of a pixel nor its row decides these
pairs: a model has to see where the pixel is relative to the horizon, the sky and the ground, i.e. it needs a
receptive field. Tree, grass and mountain have their own colours and textures and are easy. Layout (what is in the
scene, how many, where), the sky's palette, textures, noise and lighting (gain, colour cast, a horizontal gradient)
change from scene to scene.

Seed spaces used by the project (disjoint by their first element): training ``(0, seed, index)`` (:func:`train_seed`),
held-out evaluation ``(1, index)`` (:func:`heldout_seeds`), example images ``(2, index)``, speed runs ``(3, ...)``,
generated ADE20K-layout sets ``(4, seed, index)`` (:func:`asmlp.evaluation.synthetic_set.dataset_seed`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

__all__ = ['SCENE_CLASSES', 'CONTEXT_PAIRS', 'GENERATOR_VERSION', 'Scene', 'generate_scene', 'generate_batch',
           'train_seed', 'heldout_seeds', 'example_seed', 'scenes_per_second']

GENERATOR_VERSION = 1  # bump when a seed no longer gives the same scene
HELDOUT_SIZE = 128  # the held-out scenes (and the demo models' training scenes) are HELDOUT_SIZE x HELDOUT_SIZE
HELDOUT_SCENES = 64  # held-out scenes heldout_seeds(HELDOUT_SCENES) give the demo models' recorded numbers

BUILDING, SKY, TREE, ROAD, GRASS, MOUNTAIN, WATER = 1, 2, 4, 6, 9, 16, 21
SCENE_CLASSES: dict[str, int] = {'building': BUILDING, 'sky': SKY, 'tree': TREE, 'road': ROAD, 'grass': GRASS,
                                 'mountain': MOUNTAIN, 'water': WATER}
CONTEXT_PAIRS: tuple[tuple[str, str], ...] = (('sky', 'water'), ('building', 'road'))

# sky palettes: (top colour, horizon colour) RGB; each scene jitters one of them
_SKIES = np.array([
    [[40, 90, 190], [170, 205, 235]],    # clear day
    [[70, 120, 200], [215, 225, 235]],   # hazy day
    [[60, 50, 120], [240, 150, 90]],     # sunset
    [[120, 125, 135], [200, 200, 205]],  # overcast
    [[25, 40, 90], [110, 120, 170]],     # dusk
], dtype=np.float32)
_MOUNTAINS = np.array([[125, 100, 75], [105, 100, 70], [140, 115, 90], [95, 85, 60]], dtype=np.float32)


@dataclass(frozen=True)
class Scene:
    """``image``: (H, W, 3) uint8 RGB; ``labels``: (H, W) uint8 ADE20K class indices (values of SCENE_CLASSES)."""
    image: np.ndarray
    labels: np.ndarray


def train_seed(seed: int, index: int) -> tuple[int, int, int]:
    """The seed of training scene ``index`` of a run seeded ``seed``."""
    return (0, int(seed), int(index))


def heldout_seeds(n: int, start: int = 0) -> list[tuple[int, int]]:
    """Seeds of the held-out evaluation scenes ``start .. start + n - 1`` (never used for training)."""
    return [(1, i) for i in range(start, start + n)]


def example_seed(index: int) -> tuple[int, int]:
    """Seed of the example images written to ``assets/examples/generated_*.png``."""
    return (2, int(index))


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if height < 16 or width < 16:
        raise ValueError(f'scenes are at least 16x16, got {height}x{width}')
    return int(height), int(width)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise with about ``cells`` blobs across the image (float32 H x W)."""
    ch = max(2, round(cells * height / max(height, width))) + 1
    cw = max(2, round(cells * width / max(height, width))) + 1
    grid = rng.standard_normal((ch, cw), dtype=np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    return colour + rng.uniform(-amount, amount, size=colour.shape).astype(np.float32)


def _ridge(rng: np.random.Generator, width: int, base: int, height: float) -> np.ndarray:
    """A mountain ridge: for each column the first row of the mountain (float, rows above ``base``)."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    profile = np.zeros(width, dtype=np.float32)
    for k, amp in ((1, 1.0), (2, 0.5), (4, 0.25), (9, 0.1)):
        profile += amp * np.sin(2 * np.pi * (k * x + rng.uniform(0, 1)))
    profile = (profile - profile.min()) / max(float(np.ptp(profile)), 1e-6)  # 0..1
    lo = rng.uniform(0.0, 0.4)
    return base - height * (lo + (1 - lo) * profile)


def generate_scene(seed: int | Sequence[int], size: int | Sequence[int] = 128) -> Scene:
    """One scene (image and ADE20K labels) at ``size`` (int or (height, width), at least 16), fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    H, W = _size(size)
    rows = np.arange(H, dtype=np.float32)[:, None]
    cols = np.arange(W, dtype=np.float32)[None, :]

    # ---------------------------------------------------------------- layout: the label map
    horizon = int(round(rng.uniform(0.30, 0.68) * H))
    labels = np.full((H, W), GRASS, dtype=np.uint8)
    labels[:horizon] = SKY

    if rng.random() < 0.6:  # mountains on the horizon
        ridge = _ridge(rng, W, horizon, rng.uniform(0.08, 0.3) * H)
        labels[(rows >= ridge[None, :]) & (rows < horizon)] = MOUNTAIN

    water = np.zeros((H, W), dtype=bool)
    if rng.random() < 0.75:  # a lake (or the sea) that starts at the horizon
        depth = rng.uniform(0.08, 0.5) * (H - horizon) if rng.random() < 0.8 else H - horizon
        if rng.random() < 0.45:  # across the whole width
            water[horizon:horizon + int(round(depth))] = True
        else:  # half an ellipse hanging from the horizon
            centre, half = rng.uniform(0.1, 0.9) * W, rng.uniform(0.2, 0.6) * W
            inside = ((cols - centre) / half) ** 2 + ((rows - horizon + 0.5) / max(depth, 1.0)) ** 2 <= 1.0
            water = inside & (rows >= horizon)
        labels[water] = WATER

    if rng.random() < 0.8:  # the road, from the bottom edge towards the horizon, stopping at the water
        bottom_c, bottom_half = rng.uniform(0.2, 0.8) * W, rng.uniform(0.12, 0.35) * W
        top_c, top_half = bottom_c + rng.uniform(-0.25, 0.25) * W, rng.uniform(0.005, 0.03) * W
        poly = np.array([[bottom_c - bottom_half, H], [bottom_c + bottom_half, H],
                         [top_c + top_half, horizon], [top_c - top_half, horizon]])
        road = np.zeros((H, W), dtype=np.uint8)
        cv2.fillPoly(road, [np.round(poly).astype(np.int32)], 1)
        labels[(road > 0) & ~water & (rows >= horizon)] = ROAD

    building_tone = []
    if rng.random() < 0.8:  # buildings standing on the horizon
        for _ in range(rng.integers(1, 5)):
            width = rng.uniform(0.07, 0.25) * W
            x0 = rng.uniform(-0.05, 1.0) * W - width / 2
            top = horizon - rng.uniform(0.1, 0.45) * H
            base = horizon + rng.uniform(0.0, 0.03) * H
            x0, x1 = int(round(x0)), int(round(x0 + width))
            y0, y1 = max(int(round(top)), 1), int(round(base))
            mask = np.zeros((H, W), dtype=np.uint8)
            cv2.rectangle(mask, (x0, y0), (x1, y1), 1, thickness=-1)
            if rng.random() < 0.35:  # gabled roof
                apex = max(y0 - rng.uniform(0.04, 0.12) * H, 0)
                roof = np.array([[x0, y0], [x1, y0], [(x0 + x1) / 2, apex]])
                cv2.fillPoly(mask, [np.round(roof).astype(np.int32)], 1)
            building_tone.append((mask > 0, rng.uniform(-10, 10)))
            labels[mask > 0] = BUILDING

    trunks = np.zeros((H, W), dtype=bool)
    if rng.random() < 0.75:  # trees on the grass (or on the horizon line), nearer ones bigger
        for _ in range(rng.integers(1, 9)):
            base_y = horizon + (rng.uniform(0, 1) ** 1.5) * (H - horizon - 1)
            base_x = rng.uniform(0, W)
            if labels[min(int(base_y), H - 1), min(int(base_x), W - 1)] not in (GRASS, MOUNTAIN, SKY):
                continue
            scale = 0.4 + 0.9 * (base_y - horizon) / max(H - horizon, 1)
            radius = scale * rng.uniform(0.04, 0.1) * H
            trunk_h, trunk_w = 0.9 * radius, max(0.22 * radius, 1.0)
            cy = base_y - trunk_h - 0.8 * radius
            tree = np.zeros((H, W), dtype=np.uint8)
            cv2.rectangle(tree, (int(round(base_x - trunk_w / 2)), int(round(cy))),
                          (int(round(base_x + trunk_w / 2)), int(round(base_y))), 1, thickness=-1)
            cv2.ellipse(tree, (int(round(base_x)), int(round(cy))),
                        (max(int(round(radius * rng.uniform(0.8, 1.2))), 2), max(int(round(radius)), 2)),
                        0, 0, 360, 2, thickness=-1)
            trunks[tree == 1] = True  # a nearer tree's canopy hides a farther trunk
            trunks[tree == 2] = False
            labels[tree > 0] = TREE

    # ---------------------------------------------------------------- appearance
    image = np.empty((H, W, 3), dtype=np.float32)
    pixel_sigma = rng.uniform(2.0, 9.0)

    # sky and water: one field mirrored about the horizon (colour by distance to it), one cloud texture
    top, bottom = (_jitter(rng, c, 18.0) for c in _SKIES[rng.integers(len(_SKIES))])
    span = rng.uniform(0.25, 0.6) * H
    t = np.clip(np.abs(rows - (horizon - 0.5)) / span, 0.0, 1.0) ** 0.8  # (H, 1)
    clouds = _smooth_noise(rng, H, W, rng.integers(3, 9)) * rng.uniform(0.0, 14.0)
    sky_water = bottom + (top - bottom) * t[..., None] + clouds[..., None]
    mask = (labels == SKY) | (labels == WATER)
    image[mask] = np.broadcast_to(sky_water, (H, W, 3))[mask]

    # building and road: one grey, one texture
    grey = rng.uniform(95, 175) + rng.uniform(-6, 6, size=3).astype(np.float32)
    stains = _smooth_noise(rng, H, W, rng.integers(6, 16)) * rng.uniform(2.0, 10.0)
    concrete = grey + stains[..., None]
    tone = np.zeros((H, W), dtype=np.float32)
    for where, shift in building_tone:
        tone[where] = shift
    road_shift = rng.uniform(-10, 10)
    mask = labels == ROAD
    tone[mask] = road_shift
    mask = (labels == BUILDING) | mask
    image[mask] = (concrete + tone[..., None])[mask]

    mask = labels == GRASS
    if mask.any():
        grass = _jitter(rng, np.array([115, 170, 60], dtype=np.float32), 18.0)
        near = np.clip((rows - horizon) / max(H - horizon, 1), 0, 1)[..., None]
        blades = _smooth_noise(rng, H, W, 40) * 9.0 + _smooth_noise(rng, H, W, 8) * 8.0
        field = grass * (0.9 + 0.2 * near) + blades[..., None]
        image[mask] = np.broadcast_to(field, (H, W, 3))[mask]

    mask = labels == TREE
    if mask.any():
        leaves = _jitter(rng, np.array([30, 75, 45], dtype=np.float32), 10.0)
        clumps = _smooth_noise(rng, H, W, 28) * 12.0
        field = leaves + clumps[..., None]
        field = np.where(trunks[..., None], _jitter(rng, np.array([60, 42, 28], dtype=np.float32), 8.0), field)
        image[mask] = field[mask]

    mask = labels == MOUNTAIN
    if mask.any():
        rock = _jitter(rng, _MOUNTAINS[rng.integers(len(_MOUNTAINS))], 12.0)
        texture = _smooth_noise(rng, H, W, 20) * 10.0 + _smooth_noise(rng, H, W, 5) * 8.0
        field = rock + texture[..., None]
        image[mask] = field[mask]

    # lighting: gain, colour cast, a horizontal gradient (the sun's side); then pixel noise
    gain = rng.uniform(0.75, 1.15) * rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    slope = rng.uniform(-0.12, 0.12) * (cols / max(W - 1, 1) - 0.5)  # (1, W)
    image *= gain * (1.0 + slope)[..., None]
    image += rng.standard_normal((H, W, 3), dtype=np.float32) * pixel_sigma
    return Scene(image=np.clip(image + 0.5, 0, 255).astype(np.uint8), labels=labels)


def generate_batch(seeds: Iterable[int | Sequence[int]], size: int | Sequence[int] = 128
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Scenes for ``seeds`` stacked: images (N, H, W, 3) uint8 and labels (N, H, W) uint8."""
    scenes = [generate_scene(seed, size) for seed in seeds]
    if not scenes:
        raise ValueError('no seeds given')
    return np.stack([s.image for s in scenes]), np.stack([s.labels for s in scenes])


def scenes_per_second(count: int = 500, size: int | Sequence[int] = 128, repeat: int = 3) -> float:
    """Generation speed on the calling thread: the best of ``repeat`` runs of ``count`` scenes."""
    import time
    best = float('inf')
    for r in range(repeat):
        start = time.perf_counter()
        for i in range(count):
            generate_scene((3, r, i), size)
        best = min(best, time.perf_counter() - start)
    return count / best


if __name__ == '__main__':  # python -m asmlp.synthetic [SIZE]: the speed recorded in BENCHMARKS.md
    import sys
    side = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    cv2.setNumThreads(1)
    print(f'asmlp.synthetic: {scenes_per_second(size=side):.0f} scenes/s at {side}x{side} (one core, best of 3 x 500)')
