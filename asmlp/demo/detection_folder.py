"""A demo detector's weights folder, ``weights/demo/<name>/``, and loading it.

The layout is the demo segmenters' (:mod:`.folder`): ``model.safetensors`` (the detector's state dict under
mmdet's module names, floating tensors as fp16), ``config.json`` (kind ``demo``: what the weights are, how they were
made, the held-out box / mask AP) and a ``README.md`` model card. :func:`load_demo_detector` reads a folder into the
zoo detector (strict: every key, nothing else, same shapes), returning a :class:`~asmlp.hub.WeightStatus` of kind
``demo``; the weights resolver can route detectors here.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch.nn as nn

from .detection_recipes import DEMO_DETECTORS, HELDOUT_SETS, detection_recipe_sha256
from .detection_train import DetectionTrainResult

__all__ = ['SOURCE_FORMAT', 'command_line', 'detector_config', 'detector_card', 'write_detector_folder',
           'demo_detector_folder', 'load_demo_detector']

SOURCE_FORMAT = 'asmlp-demo-synth-coco'


def command_line(name: str, steps: int, seed: int) -> str:
    """The command that trains these weights again."""
    return f'python -m asmlp train-demo --detectors --model {name} --steps {steps} --seed {seed}'


def detector_config(result: DetectionTrainResult, heldout: dict) -> dict:
    """``config.json``: the native fields (``kind: demo``), the data, the training and the held-out AP
    (``heldout``: :func:`asmlp.demo.detection_evaluate.evaluate_heldout`'s result)."""
    from ..convert_detection import CONVERTER_VERSION
    from ..synthetic import GENERATOR_VERSION
    recipe = result.recipe
    first = HELDOUT_SETS[0].name
    return {
        'model': result.name,
        'kind': 'demo',
        'task': 'instances',
        'source_format': SOURCE_FORMAT,
        'source_sha256': detection_recipe_sha256(result.name, recipe, result.seed),  # the recipe's: no source file
        'converter_version': CONVERTER_VERSION,
        'storage_dtype': 'float16',
        'input_size': list(recipe.size),
        'img_scale': list(result.model.img_scale),
        'data': {'generator': 'asmlp.evaluation.coco_synthetic (python -m asmlp synth-coco)',
                 'generator_version': GENERATOR_VERSION, 'categories': 'COCO\'s 80 (ids 1..90 with gaps)',
                 'train_seeds': f'train_scene_seed({result.seed}, i) = (6, {result.seed}, i), '
                                f'i < {result.steps_done * recipe.batch_size}',
                 'heldout': {k: v['command'] for k, v in heldout.items()}},
        'command': command_line(result.name, recipe.steps, result.seed),
        'training': result.info(),
        'box_ap': heldout[first]['bbox']['AP'],
        'mask_ap': heldout[first]['segm']['AP'],
        'heldout': heldout,
    }


def _fmt(value) -> str:
    return '-' if value is None else f'{value:.1f}'


def _params(name: str) -> int:
    import torch

    from ..detectors import create_detector
    with torch.device('meta'):
        return sum(p.numel() for p in create_detector(name).parameters())


def detector_card(config: dict) -> str:
    """The README.md of a demo detector folder: a demo, generated data, how it was trained, held-out AP."""
    from ..detectors import architecture_entry, detector_entry
    name, training, heldout, data = config['model'], config['training'], config['heldout'], config['data']
    entry, arch = detector_entry(name), architecture_entry(name)
    height, width = config['input_size']
    rows = []
    for set_name, result in heldout.items():
        for iou_type, label in (('bbox', 'box'), ('segm', 'mask')):
            ap = result[iou_type]
            rows.append(f'| {set_name}: `{result["command"]}` | {label} | '
                        + ' | '.join(_fmt(ap[k]) for k in ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')) + ' |')
    table = '\n'.join(rows)
    stopped = (f'\n**Stopped early** after {training["steps_done"]} of {training["steps"]} steps (`--max-minutes`): '
               f'these weights are not the reproducible ones.\n' if training['stopped_early'] else '')
    first = next(iter(heldout))
    return f"""---
tags:
- instance-segmentation
- object-detection
- demo
- synthetic-data
---

# {name}: demo weights (generated scenes)

{entry['title']}, {_params(name) / 1e6:.2f} M parameters. Architecture `{entry['architecture']}`: {arch['source']}.

**Demo weights, not a published model.** Trained by this project (asmlp) from a random initialisation on
procedurally generated scenes, so that the app shows detections that mean something with no network and no
downloaded checkpoint. It knows flat coloured shapes on generated landscapes and nothing of real photographs.

## Data

`python -m asmlp synth-coco`'s scenes (generator version {data['generator_version']}; no images or labels from
anywhere else): generated landscapes with 1 to 6 non-touching flat objects of COCO's 80 categories, each category
with its own shape (rectangle, ellipse, triangle, diamond, hexagon, star) and colour, boxes and instance masks, in
COCO's layout and category ids.

- training scenes: {data['train_seeds']}, {height}x{width}, each through a JPEG round trip as the written sets
- held-out sets (never trained on): {', '.join(f'`{c}`' for c in data['heldout'].values())}

## Use

Trained at {height}x{width}; `model.predict(image)` resizes into its test scale {tuple(config['img_scale'])}
(long side, short side: keep-ratio) as mmdet's test pipeline does.

```python
from asmlp.demo.detection_folder import load_demo_detector
model, status = load_demo_detector('{name}')  # status.kind == 'demo'
instances = model.predict(rgb_uint8_image)   # boxes, scores, labels (COCO order), masks
```

## Training

`{config['command']}`: {training['steps']} steps of {training['batch_size']} scenes, Mask R-CNN's losses as
mmdet 2.11 computes them (RPN: max-IoU assigner 0.7 / 0.3, {training['rpn_samples']} anchors per image, sigmoid
cross-entropy + L1; R-CNN: max-IoU assigner 0.5, {training['rcnn_samples']} RoIs per image with at most a quarter
positive and the ground truths added, cross-entropy + L1; mask: 28x28 sigmoid cross-entropy), {training['optimizer']}
(lr {training['lr']}, weight decay {training['weight_decay']}, {training['schedule']}, {training['warmup_steps']}
warm-up steps, gradients clipped to {training['grad_clip']}), seed {training['seed']}, fp32 on the CPU
({training['threads']} threads, torch {training['torch']}). Wall time {training['seconds']:.0f} s. The weights are
stored as fp16.
{stopped}
## Held-out results

Box and mask AP (percent) from `python -m asmlp evaluate-coco` (pycocotools COCOeval as mmdet 2.11 runs it) on
generated sets written by `synth-coco`: the `{first}` set is the one the tests evaluate again (few objects per
category, so its numbers move a lot from set to set); the larger set gives the steadier number.

| set | type | AP | AP50 | AP75 | APs | APm | APl |
|---|---|---|---|---|---|---|---|
{table}
"""


def write_detector_folder(result: DetectionTrainResult, heldout: dict, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/model.safetensors`` (fp16), ``config.json`` and ``README.md`` for a trained demo detector."""
    from .folder import write_folder
    config = detector_config(result, heldout)
    return write_folder(result.model, config, out_dir, card=detector_card(config))


def demo_detector_folder(name: str, root: Optional[str | os.PathLike] = None) -> Path:
    """``<root>/<name>/``; by default ``weights/demo/<name>/`` under :func:`asmlp.paths.weights_dir`, else the
    repository's ``weights/demo/`` where they ship."""
    from ..paths import REPO_ROOT, weights_dir
    if root is not None:
        return Path(root) / name
    folder = weights_dir() / 'demo' / name
    return folder if folder.is_dir() else REPO_ROOT / 'weights' / 'demo' / name


def load_demo_detector(name: str, root: Optional[str | os.PathLike] = None) -> tuple[nn.Module, object]:
    """The demo detector ``name`` with its shipped weights (eval mode, fp32) and a ``WeightStatus`` of kind
    ``demo``, read by the weights resolver (:func:`asmlp.hub.load_detector`); ``root``: a folder of demo folders
    (``<root>/<name>/``) to read instead of ``weights/demo/``. ValueError (one line) for an unknown name, a missing
    folder or a file that does not fit."""
    from ..hub.loaders import DETECTOR_PLAN
    from ..hub.loaders import load_detector as load_located
    from ..hub.locate import Located
    from ..hub.native import CONFIG_FILE, WEIGHTS_FILE, read_config
    from ..hub.resolve import resolve
    from ..paths import show_path
    if name not in DEMO_DETECTORS:
        raise ValueError(f'unknown demo detector {name!r}; demo detectors: {", ".join(DEMO_DETECTORS)}')
    if root is None:
        got = resolve('detector', name, download=False, sources=[],
                      plan=replace(DETECTOR_PLAN, folder=False, local=False))
        if got.status.kind != 'demo':
            raise ValueError(f'no demo weights for {name} ({got.status.message}; train them: '
                             f'python -m asmlp train-demo --detectors --model {name})')
        return got.model, got.status
    folder = demo_detector_folder(name, root)
    weights, config = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not weights.is_file() or not config.is_file():
        raise ValueError(f'no demo weights for {name} in {show_path(folder)} (train them: '
                         f'python -m asmlp train-demo --detectors --model {name})')
    read_config(config, name, kinds=('demo',))
    from ..checkpoint_io import sha256_file
    from .detection_evaluate import demo_status
    loaded = load_located(name, Located(weights, show_path(folder) + '/', 'demo', 'native', config=config))
    return loaded.model.eval(), demo_status(name, show_path(weights), sha256_file(weights))
