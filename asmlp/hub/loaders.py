"""The loaders of the zoo's segmenters and COCO detectors: a located file becomes a model, weights loaded strictly.

This project's native files (``config.json`` + ``model.safetensors``) load by :func:`asmlp.hub.native.load_into`
into the untrained zoo model; every other format goes through :func:`asmlp.convert.convert_file` (format detected,
converted, loaded strictly). Keys a kind leaves at init (an ImageNet backbone's heads) get a fixed seed in both.
:data:`SEGMENTERS` is the segmenters' :class:`~asmlp.hub.kinds.ModelKind`.

Detectors (``data/coco.json``, :mod:`asmlp.detectors`): native folders the same way, official mmdet 2.x checkpoints
by :func:`asmlp.convert_detection.load_detector_file`; :data:`DETECTORS` looks in ``weights/<name>/``, the official
files dropped in ``weights/``, the zoo's URLs and share links, then ``weights/demo/<name>/``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .kinds import Loaded, ModelKind, register_kind
from .locate import SEGMENTER_PLAN, Located, Plan
from .status import UNTRAINED_DETECTOR_MESSAGE, UNTRAINED_MESSAGE

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ['load_segmenter', 'build_segmenter', 'SEGMENTERS', 'load_detector', 'build_detector', 'DETECTORS',
           'DETECTOR_PLAN']

CONVERTED_KINDS = ('ade20k', 'imagenet-backbone')


def build_segmenter(name: str, options: dict | None = None) -> nn.Module:
    """The untrained zoo segmenter ``name`` (``options``: :func:`asmlp.zoo.build_segmenter`'s ``num_classes``)."""
    from .. import zoo
    return zoo.build_segmenter(name, **(options or {}))


def load_segmenter(name: str, located: Located, options: dict | None = None) -> Loaded:
    """Zoo segmenter ``name`` with the weights of ``located``, loaded strictly; raises when they do not fit."""
    import torch

    from .native import load_into
    if located.format == 'native':
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # keys a kind leaves at init: the same file always gives the same model
            model = build_segmenter(name, options)
        load_into(model, located.path, located.kind)
        return Loaded(model, located.kind, 'native')
    from ..convert import convert_file
    model, meta = convert_file(located.path, name)
    kind = meta.get('kind') or located.kind
    if kind not in CONVERTED_KINDS:
        raise ValueError(f'the converter reported kind {kind!r}')
    return Loaded(model, kind, meta.get('source_format') or located.format)


def _names():
    from ..zoo import list_models
    return list_models()


def _check(name: str):
    from ..zoo import model_entry
    return model_entry(name)


def _sources(name: str):
    from .sources import weight_sources
    return weight_sources(name)


SEGMENTERS = register_kind(ModelKind(
    name='segmenter', names=_names, check=_check, sources=_sources, load=load_segmenter, build=build_segmenter,
    untrained=UNTRAINED_MESSAGE, plan=SEGMENTER_PLAN))


DETECTOR_PLAN = Plan(passes=(('coco',),), folder_kinds=('coco',), namespace=False)


def build_detector(name: str, options: dict | None = None) -> nn.Module:
    """The untrained zoo detector ``name`` (:func:`asmlp.detectors.create_detector`)."""
    from ..detectors import create_detector
    return create_detector(name)


def load_detector(name: str, located: Located, options: dict | None = None) -> Loaded:
    """Zoo detector ``name`` with the weights of ``located``, loaded strictly; raises when they do not fit."""
    import torch

    from .native import load_into
    if located.format == 'native':
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_detector(name, options)
        load_into(model, located.path, located.kind)
        return Loaded(model, located.kind, 'native')
    from ..convert_detection import load_detector_file
    model, meta = load_detector_file(located.path, name)
    return Loaded(model, meta['kind'], meta['source_format'])


def _detector_names():
    from ..detectors import list_detectors
    return list_detectors(include_demo=True)


def _check_detector(name: str):
    from ..detectors import detector_entry
    return detector_entry(name)


def _detector_sources(name: str):
    from .sources import detector_sources
    return detector_sources(name)


DETECTORS = register_kind(ModelKind(
    name='detector', names=_detector_names, check=_check_detector, sources=_detector_sources, load=load_detector,
    build=build_detector, untrained=UNTRAINED_DETECTOR_MESSAGE, plan=DETECTOR_PLAN, rank=('coco', 'demo')))
