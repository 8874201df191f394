"""What weights a model has on disk or in the caches, found without loading anything and without network (the
app's model lists and presets use it before torch is imported): the files a
:class:`~asmlp.hub.locate.Search` with ``download=False`` finds, ranked."""
from __future__ import annotations

from typing import Optional

from .kinds import ModelKind, kind_of, model_kind
from .locate import Search, local_candidates  # noqa: F401  (public here too)

__all__ = ['available_kind', 'weights_on_disk', 'local_candidates']


def _best(kind: ModelKind, name: str) -> Optional[str]:
    found = {kind.counts_as or located.kind for located in Search(name, kind.sources(name), kind.plan,
                                                                  download=False)}
    return min(found, key=lambda k: kind.rank.index(k) if k in kind.rank else len(kind.rank), default=None)


def weights_on_disk(name: str) -> Optional[str]:
    """The best weight kind model ``name`` (a zoo segmenter or an ImageNet classifier) has on disk or in a cache
    — ``weights/``, the asmlp download cache, the Hugging Face cache (``$ASMLP_HUB_NAMESPACE`` included) — or None:
    ``ade20k`` before ``demo`` before ``imagenet-backbone`` for segmenters, ``imagenet`` for classifiers. Found
    without loading and without network; ValueError for unknown names."""
    return _best(kind_of(name), name)


def available_kind(name: str) -> Optional[str]:
    """:func:`weights_on_disk` of a zoo segmenter (ValueError for names that are not one)."""
    kind = model_kind('segmenter')
    kind.check(name)
    return _best(kind, name)
