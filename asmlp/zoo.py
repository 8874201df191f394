"""The model zoo: segmenters by name, built from the table in ``data/zoo.json``.

Each entry gives the architecture (``backbone``, optional ``neck``, ``decode_head``, ``auxiliary_head`` list,
``inference`` = mmseg ``test_cfg``) as component types plus keyword arguments, and the numbers ``published`` for it
with their source. The table is data; the only code here maps component types to constructors. The zoo knows
nothing of weights: :func:`build_segmenter` gives the architecture with random weights; ``asmlp.create_segmenter``
(:func:`asmlp.hub.create_segmenter`, the weights layer) adds ``pretrained=True``.
"""
from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the table is read without torch; the models are imported when one is built
    import torch.nn as nn

    from .models.segmenter import Segmenter

__all__ = ['list_models', 'model_entry', 'build_segmenter', 'reload']


def _heads() -> dict[str, Any]:
    from .models.heads import FCNHead, MLANeck, SETRMLAHead, SETRUPHead, UPerHead
    return {cls.__name__: cls for cls in (UPerHead, FCNHead, SETRUPHead, SETRMLAHead, MLANeck)}


def _asmlp_backbone(name: str, **kwargs) -> nn.Module:
    import timm
    from .models import asmlp  # noqa: F401  (registers the timm models)
    return timm.create_model(name, features_only=True, **kwargs)


def _swin_backbone(name: str, **kwargs) -> nn.Module:
    from .models.swin import SwinPyramid
    return SwinPyramid(name, **kwargs)


def _vit_backbone(name: str, **kwargs) -> nn.Module:
    from .models.vit import ViTFeatures
    return ViTFeatures(name, **kwargs)


BACKBONES = {'asmlp': _asmlp_backbone, 'swin': _swin_backbone, 'vit': _vit_backbone}


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath('data/zoo.json').read_text())


def reload() -> None:
    """Read ``data/zoo.json`` again on next use (after ``python -m asmlp pin`` rewrote it)."""
    _table.cache_clear()


def list_models() -> list[str]:
    """Names of every zoo segmenter, sorted."""
    return sorted(_table())


def model_entry(name: str) -> dict[str, Any]:
    """A copy of the zoo entry of ``name`` (architecture, published numbers); ValueError for unknown names."""
    table = _table()
    if not isinstance(name, str) or name not in table:
        raise ValueError(f'unknown model {name!r}; known models: {", ".join(sorted(table))}')
    return copy.deepcopy(table[name])


def _build(spec: dict[str, Any], registry: dict[str, Any], **overrides) -> nn.Module:
    return registry[spec['type']](*([spec['name']] if 'name' in spec else []), **{**spec['kwargs'], **overrides})


def build_segmenter(name: str, num_classes: int | None = None) -> Segmenter:
    """The zoo segmenter ``name`` with random weights (``num_classes`` overrides the heads' 150); with weights:
    :func:`asmlp.create_segmenter` (``pretrained=True``) or :func:`asmlp.load_pretrained`."""
    from .models.segmenter import InferenceConfig, Segmenter
    entry = model_entry(name)
    classes = {} if num_classes is None else {'num_classes': num_classes}
    heads = _heads()
    return Segmenter(
        backbone=_build(entry['backbone'], BACKBONES),
        neck=_build(entry['neck'], heads) if 'neck' in entry else None,
        decode_head=_build(entry['decode_head'], heads, **classes),
        auxiliary_head=[_build(spec, heads, **classes) for spec in entry.get('auxiliary_head', [])] or None,
        inference=InferenceConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry['inference'].items()}),
    )
