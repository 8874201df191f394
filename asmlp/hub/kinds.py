"""The kinds of models the weights resolver serves, and how it loads each: a registry of :class:`ModelKind`.

A kind says which names it has, where their weights come from (:class:`~asmlp.hub.sources.WeightSource` lists),
where to look (:class:`~asmlp.hub.locate.Plan`), how a located file becomes a model (``load``: the loader, strict,
raising when the file does not fit) and how the untrained model is built. Everything else — finding files, the
sha256 checks, download records, status messages, the seeded untrained fallback — is the resolver's, the same for
every kind (:func:`asmlp.hub.resolve.resolve`).

Built in: ``segmenter`` (the zoo, :mod:`asmlp.hub.loaders`: convert + strict load) and ``classifier``
(:mod:`asmlp.classifiers`: timm's ``pretrained_cfg_overlay``). A new kind (e.g. COCO detectors) defines its
``ModelKind`` in its own module and calls :func:`register_kind` there; listing that module in
:data:`KIND_MODULES` makes :func:`kind_of` find it before anything imported it (the modules are imported by name
on first lookup, so this module imports none of them). Nothing here imports torch.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .locate import SEGMENTER_PLAN, Located, Plan

if TYPE_CHECKING:
    import torch.nn as nn

    from .sources import WeightSource

__all__ = ['Loaded', 'ModelKind', 'KIND_MODULES', 'register_kind', 'unregister_kind', 'model_kinds', 'model_kind',
           'kind_of']

KIND_MODULES = ('asmlp.hub.loaders', 'asmlp.classifiers')  # each registers its kind when imported


@dataclass(frozen=True)
class Loaded:
    """What a loader made of a located file: the model (weights loaded strictly), the kind of weights it holds
    (``ade20k``, ``imagenet-backbone``, ``demo``, ``imagenet``, ...) and the format they were read from."""
    model: nn.Module
    kind: str
    format: str


@dataclass(frozen=True)
class ModelKind:
    """One kind of model for the resolver.

    - ``names()``: every model name of this kind; ``check(name)``: ValueError for unknown names, listing the known
      ones; ``sources(name)``: its weight sources, best first.
    - ``load(name, located, options) -> Loaded``: the loader; raises (any exception, one line for people) when
      the file is not this model's. ``options``: the caller's keyword arguments (e.g. timm ``create_model``
      arguments of a smaller test model).
    - ``build(name, options)``: the untrained model (the resolver seeds it from the name: the same untrained
      model on every load).
    - ``untrained``: the message of an untrained model of this kind; ``plan``: where to look, in order;
      ``rank``: the weight kinds from best to worst, for :func:`asmlp.hub.weights_on_disk`; ``counts_as``: when
      set, every weight file of this kind of model is reported as that kind (classifiers: ``imagenet``).
    """
    name: str
    names: Callable[[], Iterable[str]]
    check: Callable[[str], Any]
    sources: Callable[[str], list[WeightSource]]
    load: Callable[[str, Located, dict], Loaded]
    build: Callable[[str, dict], nn.Module]
    untrained: str
    plan: Plan = SEGMENTER_PLAN
    rank: tuple[str, ...] = ('ade20k', 'demo', 'imagenet-backbone')
    counts_as: str | None = None


_kinds: dict[str, ModelKind] = {}
_lock = threading.Lock()


def register_kind(kind: ModelKind) -> ModelKind:
    """Add (or replace) ``kind`` under ``kind.name``; returns it."""
    with _lock:
        _kinds[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove the kind registered as ``name`` (a test's, an experiment's); nothing when there is none."""
    with _lock:
        _kinds.pop(name, None)


def model_kinds() -> list[ModelKind]:
    """Every registered kind (the modules of :data:`KIND_MODULES` imported first)."""
    for module in KIND_MODULES:
        importlib.import_module(module)
    with _lock:
        return list(_kinds.values())


def model_kind(name: str) -> ModelKind:
    """The kind registered as ``name`` (``segmenter``, ``classifier``, ...)."""
    kinds = {k.name: k for k in model_kinds()}
    if name not in kinds:
        raise ValueError(f'unknown kind of model {name!r}; known: {", ".join(kinds)}')
    return kinds[name]


def kind_of(model: str) -> ModelKind:
    """The kind that has a model called ``model``; ValueError naming the kinds when none has."""
    kinds = model_kinds()
    for kind in kinds:
        if model in kind.names():
            return kind
    raise ValueError(f'unknown model {model!r}: not a {" nor a ".join(k.name for k in kinds)} '
                     f'(python -m asmlp info, info --imagenet)')
