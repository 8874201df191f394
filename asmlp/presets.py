"""What the app offers to pick: presets of models (``data/presets.json``) and the model list grouped by family and
size, each entry with the state of its weights, all known before anything loads and without any network.

A preset's ``needs`` says which weight kind each of its models must have on disk or in the caches
(:func:`asmlp.hub.available_kind`) for it to be the app's default: the first preset whose needs are met, else
the Demo preset (its weights ship in ``weights/demo/``). Where the host names one, that one instead (on a Hugging
Face Space the hardware does: ``data/space.json``, handed in by ``asmlp/space/runtime.py``; cpu-basic preselects
the demo models, ZeroGPU the paper's pair).

The Instances tab's presets of COCO detectors (``data/instance_presets.json``) work the same way: the first whose
detectors have the ``coco`` weights they need, else the Demo preset (the two nano demo detectors).
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Optional

from .hub.availability import available_kind
from .hub.sources import weight_sources
from .zoo import list_models, model_entry

__all__ = ['presets', 'preset', 'default_preset', 'weight_state', 'short_title', 'grouped_choices', 'FALLBACK',
           'SIZES', 'SHORT_STATES', 'instance_presets', 'instance_preset', 'default_instance_preset',
           'detector_weight_state', 'detector_choices']

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


def default_preset(host_preset: Optional[str] = None) -> str:
    """``host_preset`` when the host names one (a Space's hardware), else the first preset whose models have the
    weights it needs on disk or in the caches, else ``demo``."""
    if host_preset is not None:
        return preset(host_preset)['id']
    for p in presets():
        if all(_meets(available_kind(name), need) for name, need in p['needs'].items()):
            return p['id']
    return FALLBACK


SHORT_STATES = {  # weight_state -> what the model picker's entry says
    'ADE20K weights here': 'ADE20K here',
    'ADE20K weights downloadable on request': 'ADE20K, downloaded on request',
    'ImageNet backbone only (here), head untrained': 'ImageNet backbone here, head untrained',
    'ImageNet backbone only, downloadable on request; head untrained': 'ImageNet backbone on request, head untrained',
    'demo weights (generated scenes)': 'demo weights',
    'untrained': 'untrained',
}


def weight_state(name: str, short: bool = False) -> str:
    """What ``name``'s weights are before it loads: here / downloadable on request / ImageNet backbone only /
    demo / untrained (no network: files on disk and in the caches, and the zoo's sources); ``short``: the
    model picker's wording (:data:`SHORT_STATES`)."""
    have = available_kind(name)
    remote = {s.kind for s in weight_sources(name) if s.type != 'manual'}
    if have == 'ade20k':
        state = 'ADE20K weights here'
    elif 'ade20k' in remote:
        state = 'ADE20K weights downloadable on request'
    elif have == 'imagenet-backbone':
        state = 'ImageNet backbone only (here), head untrained'
    elif 'imagenet-backbone' in remote:
        state = 'ImageNet backbone only, downloadable on request; head untrained'
    elif have == 'demo':
        state = 'demo weights (generated scenes)'
    else:
        state = 'untrained'
    return SHORT_STATES[state] if short else state


def _size(name: str) -> str:
    return next((s for s in SIZES if s in name.split('_')), '')


def _order(name: str) -> tuple:
    family = model_entry(name)['family']
    size = _size(name)
    return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES),
            SIZES.index(size) if size in SIZES else len(SIZES), name)


def short_title(name: str) -> str:
    """The zoo title without the decoder the AS-MLP and Swin models share (``UperNet + ``): ``AS-MLP-B``,
    ``Swin-B (window 12, ImageNet-22K 384)``, ``SETR-PUP (ViT-L/16)``."""
    title = model_entry(name)['title']
    return title[len('UperNet + '):] if title.startswith('UperNet + ') else title


def grouped_choices() -> list[tuple[str, str]]:
    """``(label, name)`` for every zoo model, by family then size, each label one short line with the weight
    state: ``AS-MLP-B · ADE20K, downloaded on request``."""
    return [(f'{short_title(name)} · {weight_state(name, short=True)}', name) for name in sorted(list_models(),
                                                                                                 key=_order)]


# ------------------------------------------------------------------------------------------- COCO detectors

@functools.lru_cache(maxsize=1)
def instance_presets() -> tuple[dict[str, Any], ...]:
    """The Instances tab's presets of COCO detectors, in order of preference (``data/instance_presets.json``)."""
    return tuple(json.loads(resources.files(__package__).joinpath('data/instance_presets.json').read_text()))


def instance_preset(preset_id: str) -> dict[str, Any]:
    for p in instance_presets():
        if p['id'] == preset_id:
            return p
    raise ValueError(f'unknown instance preset {preset_id!r}; known: '
                     f'{", ".join(p["id"] for p in instance_presets())}')


def default_instance_preset() -> str:
    """The first instance preset whose detectors have the weights it needs on disk or in the caches, else
    ``demo`` (offline, nothing downloaded: the demo detectors)."""
    from .hub.availability import weights_on_disk
    for p in instance_presets():
        if all(weights_on_disk(name) == need for name, need in p['needs'].items()):
            return p['id']
    return FALLBACK


def detector_weight_state(name: str) -> str:
    """What detector ``name``'s weights are before it loads (no network): ``COCO here``, ``COCO, downloaded on
    request``, ``COCO, fetched by hand`` (only a manual source), ``demo weights`` or ``untrained``."""
    from .hub.availability import weights_on_disk
    from .hub.sources import detector_sources
    have = weights_on_disk(name)
    if have == 'coco':
        return 'COCO here'
    types = {s.type for s in detector_sources(name) if s.kind == 'coco'}
    if types - {'manual'}:
        return 'COCO, downloaded on request'
    if types:
        return 'COCO, fetched by hand'
    return 'demo weights' if have == 'demo' else 'untrained'


def detector_choices() -> list[tuple[str, str]]:
    """``(label, name)`` for every COCO detector (Table 5's, then the demo ones), each label with the weight
    state: ``Mask R-CNN + AS-MLP-T · COCO, fetched by hand``."""
    from .detectors import detector_entry, list_detectors
    return [(f'{detector_entry(n)["title"]} · {detector_weight_state(n)}', n)
            for n in list_detectors(include_demo=True)]
