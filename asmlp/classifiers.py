"""ImageNet-1K classifiers: AS-MLP-T/S/B, Swin-T/S/B and DeiT-S/B as timm models, from ``data/imagenet.json``.

Each entry names the timm model (``timm.name``, pretrained tag ``timm.tag``: its eval transform and class count),
the numbers ``published`` for it (AS-MLP Table 1, Swin Table 1, DeiT Table 1: params, GFLOPs = GMACs, top-1,
V100 throughput) with their source, and its weights: the AS-MLP entries reference the official ImageNet files
the UperNet-AS-MLP zoo entries already list (``weights_from``: that zoo entry's sources of that format; links and
sha256 stay in one place), the timm ones list ``hub`` sources ``timm/<name>.<tag>``. Weights are found by the
project's resolver (:func:`asmlp.hub.resolve.resolve` with this module's :data:`CLASSIFIERS` kind: local
``weights/`` files, the asmlp download cache and its sha256 records, the Hugging Face cache, the fast offline
probe of :mod:`asmlp.hub.fetch`) and handed to timm by :func:`load_timm` with
``pretrained_cfg_overlay=dict(file=...)`` (``.safetensors``) or ``dict(state_dict=...)`` (a ``.pth`` read by
:func:`asmlp.checkpoint_io.load_checkpoint`, never unpickled), never through timm's own unpinned download.

:func:`asmlp.zoo.list_models` stays the segmenters; :func:`list_classifiers` lists these. torch and timm are
imported only when a model is built.
"""
from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import TYPE_CHECKING, Any, Optional

from .hub.availability import weights_on_disk  # noqa: F401  (the app's classifier list asks it here)
from .hub.kinds import Loaded, ModelKind, register_kind
from .hub.locate import Located, Plan
from .hub.resolve import locate_first, resolve

if TYPE_CHECKING:
    import torch.nn as nn

    from .hub.sources import WeightSource
    from .hub.status import WeightStatus

__all__ = ['list_classifiers', 'classifier_entry', 'classifier_sources', 'create_classifier', 'load_classifier',
           'classifier_metrics', 'timm_name', 'weights_on_disk', 'prefetch_classifier', 'load_timm', 'CLASSIFIERS',
           'NO_WEIGHTS_MESSAGE']

DEFAULT_CLASSIFIERS = ('asmlp_tiny', 'swin_tiny', 'deit_small')  # equal size, the paper's comparison

NO_WEIGHTS_MESSAGE = 'no weights — untrained, the classes it names are meaningless'


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath('data/imagenet.json').read_text())


def list_classifiers() -> list[str]:
    """Names of the ImageNet classifiers, in the table's order (AS-MLP, Swin, DeiT; small to large)."""
    return list(_table())


def classifier_entry(name: str) -> dict[str, Any]:
    """A copy of the entry of ``name``; ValueError for unknown names, listing the known ones."""
    table = _table()
    if not isinstance(name, str) or name not in table:
        raise ValueError(f'unknown classifier {name!r}; known classifiers: {", ".join(table)}')
    return copy.deepcopy(table[name])


def timm_name(name: str) -> str:
    """The timm model name with its pretrained tag, e.g. ``swin_tiny_patch4_window7_224.ms_in1k``."""
    spec = classifier_entry(name)['timm']
    return f'{spec["name"]}.{spec["tag"]}'


def classifier_sources(name: str) -> list[WeightSource]:
    """The weight sources of ``name`` in order of preference: its own ``weights``, or the sources of format
    ``weights_from.format`` of the zoo entry ``weights_from.model`` (the same records, not copies)."""
    from .hub.sources import WeightSource, weight_sources
    entry = classifier_entry(name)
    if 'weights_from' in entry:
        ref = entry['weights_from']
        return [s for s in weight_sources(ref['model']) if s.format == ref['format']]
    return [WeightSource.from_json(s) for s in entry.get('weights', [])]


def create_classifier(name: str, **kwargs) -> nn.Module:
    """The untrained timm model of ``name`` (with its pretrained tag's config: transform, classes); ``kwargs``
    go to ``timm.create_model`` (e.g. a smaller ``depth`` in tests). Build under ``torch.device('meta')`` to
    count without memory."""
    import timm

    from . import models  # noqa: F401  (registers the AS-MLP models with timm)
    entry = classifier_entry(name)
    return timm.create_model(timm_name(name), pretrained=False, **{**entry['timm']['kwargs'], **kwargs})


# --------------------------------------------------------------------------------------------------- the loader

def load_timm(name: str, located: Located, options: dict) -> Loaded:
    """The classifier ``name`` with the weights of ``located``, loaded by timm (strict): a ``.safetensors`` file as
    ``pretrained_cfg_overlay=dict(file=...)``, a ``torch.save`` file as ``dict(state_dict=...)`` read by
    :func:`asmlp.checkpoint_io.load_checkpoint` (never unpickled: timm would ``torch.load`` it itself)."""
    import timm

    from . import models  # noqa: F401  (registers the AS-MLP models with timm)
    from .checkpoint_io import load_checkpoint
    if located.path.suffix == '.safetensors':
        overlay = dict(file=str(located.path))
    else:
        overlay = dict(state_dict=load_checkpoint(located.path))
    model = timm.create_model(timm_name(name), pretrained=True, pretrained_cfg_overlay=overlay,
                              **{**classifier_entry(name)['timm']['kwargs'], **options})
    return Loaded(model, 'imagenet', located.format)


CLASSIFIERS = register_kind(ModelKind(
    name='classifier', names=list_classifiers, check=classifier_entry, sources=classifier_sources, load=load_timm,
    build=lambda name, options: create_classifier(name, **options), untrained=NO_WEIGHTS_MESSAGE,
    plan=Plan(passes=(('imagenet', 'imagenet-backbone'),), folder=False, namespace=False, demo=False),
    rank=('imagenet',), counts_as='imagenet'))


def prefetch_classifier(name: str) -> list[str]:
    """Download the file :func:`load_classifier` would use for ``name``, without loading it (the app does this
    before a request's time budget starts); returns the problems met, one line each. Never raises for missing
    weights."""
    return locate_first(CLASSIFIERS, name)[1]


def load_classifier(name: str, *, download: bool = True, sources: Optional[list[WeightSource]] = None,
                    **kwargs) -> tuple[nn.Module, WeightStatus]:
    """The classifier ``name`` (eval mode) with the first weights that load strictly, and their
    :class:`~asmlp.hub.WeightStatus` (kind ``imagenet``); without any, the untrained model with kind ``none``
    and a message that says "no weights" and why. Never raises for missing or broken weights; ValueError for
    unknown names. ``download=False``: only files on disk and in the caches. ``sources`` replaces the entry's;
    ``kwargs`` go to ``timm.create_model`` (a checkpoint must then have that architecture)."""
    got = resolve(CLASSIFIERS, name, download=download, sources=sources, options=kwargs)
    return got.model, got.status


# ------------------------------------------------------------------------------------------------------- counting

def classifier_metrics(name: str) -> dict:
    """Parameters and GMACs of one forward at 224x224, the papers' size (counted on the meta device,
    :mod:`asmlp.metrics`), beside the published numbers; ``params_off`` / ``gmacs_off``: counted / published - 1."""
    import torch

    from .metrics import count_gmacs, count_params
    entry = classifier_entry(name)
    with torch.device('meta'):
        model = create_classifier(name).eval()
    params, gmacs = count_params(model), count_gmacs(model, (1, 3, 224, 224))
    published = entry['published']
    reported = next((s.get('reported') for s in entry.get('weights', []) if s.get('reported')), None)
    return dict(
        name=name, family=entry['family'], title=entry['title'], size=entry['size'], timm=timm_name(name),
        input=224, params=params, gmacs=gmacs, paper_params=published['params'], paper_gmacs=published['gmacs'],
        paper_top1=published['top1'], paper_throughput=published['throughput'], paper_source=published['source'],
        reported_top1=reported and reported['top1'],
        params_off=params / published['params'] - 1, gmacs_off=gmacs / published['gmacs'] - 1,
        count_note=entry.get('count_note'),
    )
