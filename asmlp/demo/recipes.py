"""The demo models, their training recipes and the demo input size."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from ..synthetic import HELDOUT_SCENES, HELDOUT_SIZE

__all__ = ['DEMO_MODELS', 'DEMO_SIZE', 'PREDICT_SCALE', 'EVAL_SCENES', 'Recipe', 'RECIPES', 'recipe_sha256']

DEMO_MODELS = ('upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano')
DEMO_SIZE = HELDOUT_SIZE  # training and held-out scenes are DEMO_SIZE x DEMO_SIZE
PREDICT_SCALE = (DEMO_SIZE, DEMO_SIZE)  # Segmenter.predict(image, scale=PREDICT_SCALE): long side at most 128
EVAL_SCENES = HELDOUT_SCENES  # held-out scenes heldout_seeds(EVAL_SCENES) for the recorded numbers


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters: AdamW, linear warm-up then cosine decay to 0, cross-entropy on the decode head
    plus ``aux_weight`` times that of each auxiliary head (mmseg's 0.4)."""
    steps: int
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    aux_weight: float = 0.4
    size: int = DEMO_SIZE


# the same 500 steps x 16 scenes (the same 8000 scenes, in the same order) for the three; ~6-10 minutes each on
# 2 CPU threads (BENCHMARKS.md)
RECIPES: dict[str, Recipe] = {
    'upernet_asmlp_nano': Recipe(steps=500),
    'upernet_swin_nano': Recipe(steps=500),
    'setr_pup_vit_nano': Recipe(steps=500, lr=1e-3),
}


def recipe_sha256(name: str, recipe: Recipe, seed: int) -> str:
    """sha256 of everything that decides the trained weights: generator version, architecture, recipe, seed
    (stored as ``source_sha256`` of a demo folder: there is no source file)."""
    from ..synthetic import GENERATOR_VERSION
    from ..zoo import model_entry
    entry = model_entry(name)
    arch = {k: entry[k] for k in ('backbone', 'neck', 'decode_head', 'auxiliary_head') if k in entry}
    blob = json.dumps({'generator_version': GENERATOR_VERSION, 'model': name, 'architecture': arch,
                       'recipe': asdict(recipe), 'seed': seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
