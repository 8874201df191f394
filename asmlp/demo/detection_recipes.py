"""The demo detectors, their training recipes, their scenes and their held-out sets.

Scenes are ``python -m asmlp synth-coco``'s (:func:`asmlp.evaluation.coco_synthetic.generate_coco_scene`) at its
default 120x160: generated landscapes with 1-6 flat objects of COCO's 80 categories (the shape and colour follow
the category), boxes and instance masks. Training scene ``i`` of seed ``s`` has the generator seed
:func:`train_scene_seed` ``(6, s, i)``, outside the seed spaces of :mod:`asmlp.synthetic` (0..4) and of the written
synth-coco sets (5), so no held-out scene is ever trained on. The recorded held-out numbers are box / mask AP of
``evaluate-coco`` on the synth-coco sets :data:`HELDOUT_SETS` (``synth-coco DIR --count N --seed S``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

__all__ = ['DEMO_DETECTORS', 'SCENE_SIZE', 'HELDOUT_SETS', 'HeldoutSet', 'DetectionRecipe', 'DETECTION_RECIPES',
           'train_scene_seed', 'detection_recipe_sha256']

DEMO_DETECTORS = ('mask_rcnn_asmlp_nano', 'mask_rcnn_swin_nano')
SCENE_SIZE = (120, 160)  # (H, W): synth-coco's default; the detectors' test scale (160, 120) keeps it as it is


@dataclass(frozen=True)
class HeldoutSet:
    """``python -m asmlp synth-coco DIR --count scenes --seed seed``."""
    name: str
    scenes: int
    seed: int

    def command(self, folder: str = 'DIR') -> str:
        return f'python -m asmlp synth-coco {folder} --count {self.scenes} --seed {self.seed}'


# 'small': the set the tests evaluate again (seconds); 'large': a steadier number for the model cards
HELDOUT_SETS = (HeldoutSet('small', 16, 0), HeldoutSet('large', 200, 1))


@dataclass(frozen=True)
class DetectionRecipe:
    """Mask R-CNN training as mmdet 2.11 does it (:mod:`.detection_targets`, :mod:`.detection_train`), from a random
    init on generated scenes, with fewer sampled RoIs: AdamW, linear warm-up then cosine decay to 0, gradients
    clipped to ``grad_clip`` (L2 norm). RPN: ``rpn_samples`` anchors per image, half positive at most; proposals:
    ``proposal_nms_pre`` per level, NMS 0.7, ``proposal_max`` kept (mmdet ``train_cfg.rpn_proposal``); R-CNN:
    ``rcnn_samples`` RoIs per image, a quarter positive at most, ground truths added."""
    steps: int
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 10.0
    rpn_samples: int = 256
    rpn_pos_fraction: float = 0.5
    proposal_nms_pre: int = 500
    proposal_max: int = 300
    rcnn_samples: int = 48
    rcnn_pos_fraction: float = 0.25
    size: tuple[int, int] = SCENE_SIZE


# the same scenes in the same order for both; within ~15 minutes each on 2 CPU threads (the model cards say how long)
DETECTION_RECIPES: dict[str, DetectionRecipe] = {
    'mask_rcnn_asmlp_nano': DetectionRecipe(steps=1200),
    'mask_rcnn_swin_nano': DetectionRecipe(steps=1200),
}


def train_scene_seed(seed: int, index: int) -> tuple[int, int, int]:
    """The generator seed of training scene ``index`` for training seed ``seed``."""
    return (6, int(seed), int(index))


def detection_recipe_sha256(name: str, recipe: DetectionRecipe, seed: int) -> str:
    """sha256 of what decides the trained weights: the detector's entry and architecture, the recipe, the seed and
    the scene generator's version (``source_sha256`` of a demo folder: there is no source file)."""
    from ..detectors import architecture_entry, detector_entry
    from ..synthetic import GENERATOR_VERSION
    entry = detector_entry(name)
    blob = json.dumps({'generator_version': GENERATOR_VERSION, 'scenes': 'synth-coco', 'model': name,
                       'backbone': entry['backbone'], 'architecture': architecture_entry(name),
                       'recipe': asdict(recipe), 'seed': seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
