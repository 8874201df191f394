"""Demo segmenters: nano AS-MLP, Swin and SETR models trained by this project on generated scenes.

With no network and no downloaded checkpoints every zoo model is untrained; these three are the embedded default
that works anywhere. They are trained on :mod:`asmlp.synthetic` scenes (sky / water and building / road look alike
pixel by pixel, only context tells them apart) and shipped in ``weights/demo/<name>/``, where
:func:`asmlp.hub.load_pretrained` finds them (kind ``demo``).

- ``recipes.py``: the models (:data:`DEMO_MODELS`), their training recipes, the demo input size.
- ``train.py``: :func:`train` — the seeded CPU training loop.
- ``evaluate.py``: :func:`evaluate` — per-class IoU and mIoU on held-out scenes.
- ``folder.py``: :func:`write_folder` — ``config.json`` + ``model.safetensors`` (fp16) + ``README.md`` model card.
- ``examples.py``: :func:`write_examples` — ``assets/examples/generated_*.png``.
- ``cli.py``: ``python -m asmlp train-demo`` (:func:`register_cli`, :func:`run_train_demo`).

The demo detectors (Mask R-CNN nano on AS-MLP and Swin, trained on ``synth-coco`` scenes; ``train-demo
--detectors``): ``detection_recipes.py`` (:data:`DEMO_DETECTORS`, recipes, held-out sets), ``detection_targets.py``
(assigner, sampler, target encoding), ``detection_train.py`` (:func:`train_detector`: losses and the loop),
``detection_evaluate.py`` (held-out AP through ``evaluate-coco``), ``detection_folder.py`` (the folder and
:func:`load_demo_detector`).
"""
from .cli import register_cli, run_train_demo
from .detection_folder import load_demo_detector
from .detection_recipes import DEMO_DETECTORS, DETECTION_RECIPES, DetectionRecipe
from .detection_train import train_detector
from .evaluate import IoUReport, evaluate, predict_batch
from .recipes import DEMO_MODELS, DEMO_SIZE, EVAL_SCENES, PREDICT_SCALE, RECIPES, Recipe
from .train import TrainResult, train

__all__ = ['DEMO_MODELS', 'DEMO_SIZE', 'PREDICT_SCALE', 'EVAL_SCENES', 'RECIPES', 'Recipe', 'IoUReport', 'TrainResult',
           'evaluate', 'predict_batch', 'train', 'register_cli', 'run_train_demo',
           'DEMO_DETECTORS', 'DETECTION_RECIPES', 'DetectionRecipe', 'train_detector', 'load_demo_detector']
