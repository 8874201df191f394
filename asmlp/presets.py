"""What the app offers to pick: presets of models (``data/presets.json``) and the model list grouped by family and
size, each entry with the state of its weights, all known before anything loads and without any network.

A preset's ``needs`` says which weight kind each of its models must have on disk or in the caches
(:func:`asmlp.hub.available_kind`) for it to be the app's default: the first preset whose needs are met, else
the Demo preset (its weights ship in ``weights/demo/``). On a Hugging Face Space the hardware decides instead
(``data/space.json``, :func:`asmlp.space.hardware.space_preset`): cpu-basic preselects the demo models, ZeroGPU
the paper's pair.
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Optional

from .hub.availability import available_kind
from .hub.sources import weight_sources
from .zoo import list_models, model_entry

__all__ = ['presets', 'preset', 'default_preset', 'weight_state', 'grouped_choices', 'FALLBACK', 'SIZES']

FALLBACK = 'demo'
FAMILIES = ('AS-MLP', 'Swin', 'SETR')
SIZES = ('nano', 'tiny', 'small', 'base', 'large')


@functools.lru_cache(maxsize=1)
def presets() -> tuple[dict[str, Any], ...]:
    """The presets, in order of preference (a copy of ``data/presets.json``)."""
    return tuple(json.loads(resources.files(__package__).joinpath('data/presets.json').read_text()))


def preset(preset_id: str) -> dict[str, Any]:
    for p in presets():
        if p['id'] == preset_id:
            return p
    raise ValueError(f'unknown preset {preset_id!r}; known: {", ".join(p["id"] for p in presets())}')


def _meets(have: Optional[str], need: str) -> bool:
    return have == need or have == 'ade20k'  # trained segmenter weights meet every need


def default_preset() -> str:
    """The preset the Space hardware names when running on one, else the first preset whose models have the
    weights it needs on disk or in the caches, else ``demo``."""
    from .space.hardware import space_preset
    on_space = space_preset()
    if on_space is not None:
        return preset(on_space)['id']
    for p in presets():
        if all(_meets(available_kind(name), need) for name, need in p['needs'].items()):
            return p['id']
    return FALLBACK


def weight_state(name: str) -> str:
    """What ``name``'s weights are before it loads: here / downloadable on request / ImageNet backbone only /
    demo / untrained (no network: files on disk and in the caches, and the zoo's sources)."""
    have = available_kind(name)
    remote = {s.kind for s in weight_sources(name) if s.type != 'manual'}
    if have == 'ade20k':
        return 'ADE20K weights here'
    if 'ade20k' in remote:
        return 'ADE20K weights downloadable on request'
    if have == 'imagenet-backbone':
        return 'ImageNet backbone only (here), head untrained'
    if 'imagenet-backbone' in remote:
        return 'ImageNet backbone only, downloadable on request; head untrained'
    if have == 'demo':
        return 'demo weights (generated scenes)'
    return 'untrained'


def _size(name: str) -> str:
    return next((s for s in SIZES if s in name.split('_')), '')


def _order(name: str) -> tuple:
    family = model_entry(name)['family']
    size = _size(name)
    return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES),
            SIZES.index(size) if size in SIZES else len(SIZES), name)


def grouped_choices() -> list[tuple[str, str]]:
    """``(label, name)`` for every zoo model, by family then size: ``AS-MLP · base — UperNet + AS-MLP-B
    [upernet_asmlp_base] — ADE20K weights downloadable on request``."""
    out = []
    for name in sorted(list_models(), key=_order):
        entry = model_entry(name)
        out.append((f'{entry["family"]} · {_size(name) or "other"} — {entry["title"]}  [{name}] — '
                    f'{weight_state(name)}', name))
    return out
