"""ImageNet classification of one image by several classifiers (the app's Classify tab and its ``classify`` API).

Each model gets timm's own eval transform for its pretrained config (``timm.data.resolve_data_config`` /
``create_transform``: resize, centre crop, mean/std), one forward at batch 1 (timed), softmax, top-5; class names
are timm's :class:`~timm.data.ImageNetInfo` descriptions. :func:`agreement` says where the models agree.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .engine.choices import check_names
from .classifiers import DEFAULT_CLASSIFIERS, classifier_entry

__all__ = ['DEFAULT_CLASSIFIERS', 'Classification', 'check_classifier_names', 'class_names', 'eval_transform',
           'classify_one', 'classify', 'agreement']



@dataclass(frozen=True)
class Classification:
    name: str
    title: str
    status: Any            # asmlp.hub.WeightStatus
    indices: list[int]     # top-k ImageNet-1K class indices, most probable first
    probs: list[float]     # their softmax probabilities
    seconds: float         # the forward at batch 1 (transform excluded)
    input_size: tuple[int, int]

    @property
    def labels(self) -> list[str]:
        names = class_names()
        return [names[i] for i in self.indices]

    def as_dict(self) -> dict:
        return dict(model=self.name, title=self.title, weights=self.status.message, weights_kind=self.status.kind,
                    latency_ms=1e3 * self.seconds, input_size=list(self.input_size),
                    top5=[dict(index=i, label=label, prob=p) for i, label, p in zip(self.indices, self.labels,
                                                                                     self.probs)])


def check_classifier_names(names) -> list[str]:
    """Classifier names from the UI or an API client, validated (unknown names raise ValueError naming them)."""
    return check_names(names, classifier_entry, 'classifier', 'classifier names')


@functools.lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1K class descriptions, in class-index order (timm's ``ImageNetInfo``)."""
    from timm.data import ImageNetInfo
    return tuple(ImageNetInfo('imagenet-1k').label_descriptions())


def eval_transform(model: torch.nn.Module) -> Callable:
    """timm's eval transform for ``model``'s pretrained config (a PIL image -> a normalised CHW tensor)."""
    from timm.data import create_transform, resolve_data_config
    return create_transform(**resolve_data_config({}, model=model))


def classify_one(model: torch.nn.Module, image: np.ndarray, k: int = 5) -> tuple[list[int], list[float], float,
                                                                                 tuple[int, int]]:
    """Top-``k`` (indices, probabilities) of ``model`` for an HxWx3 uint8 RGB ``image``, the forward's seconds and
    the model's input size."""
    from PIL import Image
    param = next(model.parameters())
    x = eval_transform(model)(Image.fromarray(image)).unsqueeze(0).to(param.device, param.dtype)
    with torch.inference_mode():
        start = time.perf_counter()
        logits = model(x)
        if logits.device.type == 'cuda':
            torch.cuda.synchronize(logits.device)
        seconds = time.perf_counter() - start
    probs = logits.float().softmax(-1)[0]
    top = probs.topk(k)
    return top.indices.tolist(), top.values.tolist(), seconds, tuple(x.shape[-2:])


def classify(image: np.ndarray, names, get: Callable[[str], Any], k: int = 5) -> list[Classification]:
    """Every model of ``names`` on ``image``; ``get(name)`` gives a loaded model with ``.model`` and ``.status``
    (:meth:`asmlp.engine.ModelCache.get` of a cache whose loader is :func:`asmlp.classifiers.load_classifier`)."""
    results = []
    for name in check_classifier_names(names):
        loaded = get(name)
        indices, probs, seconds, size = classify_one(loaded.model, image, k)
        results.append(Classification(name, classifier_entry(name)['title'], loaded.status, indices, probs, seconds,
                                      size))
    return results


def agreement(results: list[Classification]) -> dict:
    """Where the models agree: the top-1 class they share (if all do), and the classes in every top-k."""
    tops = {r.indices[0] for r in results}
    shared = set(results[0].indices).intersection(*(r.indices for r in results[1:])) if results else set()
    order = [i for i in results[0].indices if i in shared] if results else []
    names = class_names()
    return dict(same_top1=len(tops) == 1 and bool(results), top1=names[next(iter(tops))] if len(tops) == 1 else None,
                in_every_top5=[names[i] for i in order])
