"""What an ERF is measured on: a model's stage maps, their labels, and whether its weights are trained.

Zoo segmenters give their ``.backbone`` (AS-MLP ``features_only``, ``SwinPyramid``, ``ViTFeatures``); the ImageNet
classifiers of :mod:`asmlp.classifiers` give timm's ``forward_intermediates`` maps (NCHW): every stage of the
hierarchical ones (AS-MLP, Swin), the blocks of a ViT named by its entry's ``erf.indices`` (DeiT: 3/6/9/12). Every
title says whether the weights are trained (the ERF of an untrained network only shows its wiring).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch.nn as nn

__all__ = ['ErfSubject', 'StageMaps', 'trained_label', 'classifier_subject', 'segmenter_subject', 'load_subject',
           'square_input', 'erf_of_subjects']

TRAINED_LABELS = {'imagenet': 'trained, ImageNet-1K', 'ade20k': 'trained, ADE20K',
                  'imagenet-backbone': 'backbone trained, ImageNet-1K', 'demo': 'demo weights, generated scenes',
                  'none': 'untrained'}


class StageMaps(nn.Module):
    """A timm classifier as a backbone: ``forward_intermediates(x, indices, intermediates_only=True)`` (NCHW)."""

    def __init__(self, model: nn.Module, indices: Optional[Sequence[int]] = None):
        super().__init__()
        self.model, self.indices = model, None if indices is None else list(indices)

    def forward(self, x):
        return list(self.model.forward_intermediates(x, indices=self.indices, intermediates_only=True))


@dataclass(frozen=True)
class ErfSubject:
    name: str
    title: str               # with the weights' state, e.g. "AS-MLP-T (trained, ImageNet-1K)"
    backbone: nn.Module      # returns a list of NCHW stage maps
    stage_labels: list[str]
    trained: bool
    status: Any              # asmlp.hub.WeightStatus


def trained_label(status) -> str:
    """``trained, ImageNet-1K`` / ``trained, ADE20K`` / ... / ``untrained`` for a :class:`~asmlp.hub.WeightStatus`."""
    return TRAINED_LABELS.get(status.kind, status.kind)


def _trained(status) -> bool:
    return status.kind != 'none'


def _titled(title: str, status) -> str:
    label = trained_label(status)
    return title if status.kind == 'demo' and 'demo' in title else f'{title} ({label})'  # zoo demo titles say it


def classifier_subject(name: str, model: nn.Module, status) -> ErfSubject:
    from ..classifiers import classifier_entry
    entry = classifier_entry(name)
    erf = entry.get('erf', {})
    indices = erf.get('indices')
    labels = erf.get('labels') or [f'stage {i + 1}' for i in range(len(model.feature_info))]  # timm's stages
    return ErfSubject(name, _titled(entry['title'], status), StageMaps(model, indices), list(labels),
                      _trained(status), status)


def segmenter_subject(name: str, model: nn.Module, status) -> ErfSubject:
    from ..zoo import model_entry
    entry = model_entry(name)
    taps = entry['backbone']['kwargs'].get('out_indices')
    labels = ([f'block {i + 1}' for i in taps] if entry['backbone']['type'] == 'vit' and taps else
              [f'stage {i + 1}' for i in range(4)])  # a ViT's taps are blocks; the pyramids have 4 stages
    return ErfSubject(name, _titled(entry['title'], status), model.backbone, labels, _trained(status), status)


def load_subject(name: str, size: int = 224, download: bool = True) -> ErfSubject:
    """The ERF subject of ``name``: an ImageNet classifier (at ``size``: ViT and Swin are built for it, AS-MLP takes
    any size) or a zoo segmenter, with the best weights the resolver finds (none: untrained, said in the title)."""
    from ..classifiers import classifier_entry, list_classifiers, load_classifier
    if name in list_classifiers():
        kwargs = {} if size == 224 or classifier_entry(name)['family'] == 'AS-MLP' else {'img_size': size}
        model, status = load_classifier(name, download=download, **kwargs)
        return classifier_subject(name, model, status)
    from ..hub import load_pretrained
    model, status = load_pretrained(name, download=download)
    return segmenter_subject(name, model, status)


def square_input(image, size: int = 224):
    """An HxWx3 uint8 RGB image as a (1, 3, size, size) tensor: short side resized (bicubic), centre crop, ImageNet
    mean/std (timm's ``create_transform``): the same input for every model, its centre the image's."""
    from PIL import Image
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
    transform = create_transform(input_size=(3, size, size), crop_pct=1.0, interpolation='bicubic',
                                 mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
    return transform(Image.fromarray(image)).unsqueeze(0)


def erf_of_subjects(subjects: Sequence[ErfSubject], x) -> tuple[dict[str, list], dict[str, list[str]]]:
    """Per subject (keyed by title): its effective receptive fields on the input ``x``
    (:func:`asmlp.explain.effective_rf`, on the backbone's device), and its stage labels: the app's two ERF
    views draw them with :func:`asmlp.explain.erf_figure`."""
    from .erf import effective_rf
    return ({s.title: effective_rf(s.backbone, x) for s in subjects}, {s.title: s.stage_labels for s in subjects})
