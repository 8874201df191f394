"""Seeded CPU training of a demo segmenter on generated scenes (a fixed number of steps; minutes only as a cap)."""
from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..synthetic import generate_batch, train_seed
from .evaluate import to_tensor
from .recipes import RECIPES, Recipe

__all__ = ['TrainResult', 'train', 'training_loss', 'round_to_storage']


@dataclass
class TrainResult:
    """The trained model (eval mode, weights rounded to their fp16 storage) and how it went."""
    model: nn.Module
    name: str
    recipe: Recipe
    seed: int
    steps_done: int
    seconds: float
    final_loss: float
    stopped_early: bool
    threads: int

    def info(self) -> dict:
        return {'steps': self.recipe.steps, 'steps_done': self.steps_done, 'stopped_early': self.stopped_early,
                'seed': self.seed, 'batch_size': self.recipe.batch_size, 'lr': self.recipe.lr,
                'weight_decay': self.recipe.weight_decay, 'warmup_steps': self.recipe.warmup_steps,
                'aux_weight': self.recipe.aux_weight, 'size': self.recipe.size, 'optimizer': 'AdamW',
                'schedule': 'linear warm-up, cosine to 0', 'seconds': round(self.seconds, 1),
                'final_loss': round(self.final_loss, 4), 'threads': self.threads, 'torch': torch.__version__,
                'cpu': platform.processor() or platform.machine()}


def _aux_heads(model: nn.Module) -> list[nn.Module]:
    aux = getattr(model, 'auxiliary_head', None)
    if aux is None:
        return []
    return list(aux) if isinstance(aux, nn.ModuleList) else [aux]


def training_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, aux_weight: float) -> torch.Tensor:
    """Cross-entropy of the decode head's logits resized to the labels (mmseg's loss), plus ``aux_weight`` times
    that of each auxiliary head, computed at the head's own resolution against nearest-resized labels (cheaper than
    resizing 150-class logits to full size; the auxiliary heads only help training)."""
    feats = model.extract_features(x)
    logits = F.interpolate(model.decode_head(feats), size=y.shape[-2:], mode='bilinear', align_corners=False)
    loss = F.cross_entropy(logits, y)
    for head in _aux_heads(model):
        logits = head(feats)
        small = F.interpolate(y[:, None].float(), size=logits.shape[-2:], mode='nearest')[:, 0].long()
        loss = loss + aux_weight * F.cross_entropy(logits, small)
    return loss


def _lr_factor(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(recipe.steps - recipe.warmup_steps, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def round_to_storage(model: nn.Module) -> nn.Module:
    """Round every floating-point tensor of ``model`` to fp16 and back (what the shipped file holds)."""
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.copy_(t.half().float())
    return model


def train(name: str, *, steps: Optional[int] = None, seed: int = 0, max_minutes: Optional[float] = None,
          threads: Optional[int] = 2, progress: bool = True, recipe: Optional[Recipe] = None) -> TrainResult:
    """Train the demo model ``name`` from its seeded random init on scenes ``train_seed(seed, i)``.

    ``steps`` overrides the recipe's. ``max_minutes`` stops early (the result then depends on the machine's speed;
    ``stopped_early`` says so). ``threads``: torch threads while training (None: the current setting; restored
    afterwards). The same name, steps, seed, torch version and thread count give the same weights.
    """
    recipe = recipe or RECIPES[name]
    if steps is not None:
        if steps < 1:
            raise ValueError(f'steps must be >= 1, got {steps}')
        recipe = replace(recipe, steps=steps, warmup_steps=min(recipe.warmup_steps, max(steps // 10, 1)))
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(name, recipe, seed, max_minutes, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train(name: str, recipe: Recipe, seed: int, max_minutes: Optional[float], progress: bool) -> TrainResult:
    from ..zoo import build_segmenter
    torch.manual_seed(seed)
    model = build_segmenter(name).train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and 'pos_embed' not in n and 'cls_token' not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and 'pos_embed' not in n
                                                                and 'cls_token' not in n)]
    optimizer = torch.optim.AdamW([{'params': decay, 'weight_decay': recipe.weight_decay},
                                   {'params': no_decay, 'weight_decay': 0.0}], lr=recipe.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, recipe))

    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=recipe.steps, desc=name, unit='step', dynamic_ncols=True)
        except ImportError:  # tqdm comes with huggingface_hub; without it, no bar
            bar = None
    start = time.perf_counter()
    deadline = None if max_minutes is None else start + 60 * max_minutes
    smooth, step, stopped = None, 0, False
    try:
        for step in range(recipe.steps):
            if deadline is not None and time.perf_counter() > deadline:
                stopped = True
                break
            seeds = [train_seed(seed, step * recipe.batch_size + i) for i in range(recipe.batch_size)]
            images, labels = generate_batch(seeds, recipe.size)
            loss = training_loss(model, to_tensor(images), torch.from_numpy(labels).long(), recipe.aux_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            value = loss.item()
            smooth = value if smooth is None else 0.95 * smooth + 0.05 * value
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f'{smooth:.3f}', refresh=False)
        else:
            step = recipe.steps
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    round_to_storage(model)
    return TrainResult(model=model, name=name, recipe=recipe, seed=seed, steps_done=step, seconds=seconds,
                       final_loss=float('nan') if smooth is None else smooth, stopped_early=stopped,
                       threads=torch.get_num_threads())
