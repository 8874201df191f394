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
"""
from .cli import register_cli, run_train_demo
from .evaluate import IoUReport, evaluate, predict_batch
from .recipes import DEMO_MODELS, DEMO_SIZE, EVAL_SCENES, PREDICT_SCALE, RECIPES, Recipe
from .train import TrainResult, train

__all__ = ['DEMO_MODELS', 'DEMO_SIZE', 'PREDICT_SCALE', 'EVAL_SCENES', 'RECIPES', 'Recipe', 'IoUReport', 'TrainResult',
           'evaluate', 'predict_batch', 'train', 'register_cli', 'run_train_demo']
