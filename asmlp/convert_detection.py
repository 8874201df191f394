"""Official COCO detector checkpoints -> the zoo detectors of :mod:`asmlp.detectors` (strict, names every mismatch).

Source formats, detected from the key names (:func:`detect_detection_format`); all are mmdet 2.11 checkpoints
(``{'meta', 'state_dict', 'optimizer'[, 'amp']}``, ``mmcv_custom/runner/checkpoint.py`` of both repositories), read
without unpickling code by :func:`asmlp.checkpoint_io.load_checkpoint` (``torch.load(weights_only=True)``; only
``state_dict`` is kept, meta and optimizer are dropped):

* ``asmlp-mmdet``: svip-lab/AS-MLP-Object-Detection (``mmdet/models/backbones/asmlp.py``): ``backbone.*`` already has
  this project's AS-MLP keys (``patch_embed``, ``layers.N.blocks.M.axial_shift.*``, ``layers.0-2.downsample``,
  ``norm0..3``) and the heads are mmdet's own module names (:mod:`asmlp.models.detection`): one to one. A
  ``model.safetensors`` of this project with AS-MLP keys reads the same way.
* ``swin-official-mmdet``: SwinTransformer/Swin-Transformer-Object-Detection (``mmdet/models/backbones/
  swin_transformer.py``, the original Swin layout): ``layers.N.downsample`` (end of stage N) moves to the start of
  stage N + 1 as in timm and the ``relative_position_index`` buffers are dropped
  (:func:`asmlp.convert.swin_official_to_timm`); the heads are one to one.
* ``native-detector``: this project's own Swin detector keys (``layers.1-3.downsample``), unchanged.

mmdetection's own Swin (``backbone.stages.N``, ``attn.w_msa``, ``ffn``, permuted patch-merging channels; the
``download.openmmlab.com`` Mask R-CNN files) is refused with a message naming the supported releases.

:func:`load_detector_file` is the loader of kind ``coco`` for the weights resolver: read, convert, build the zoo
detector and load strictly (:func:`asmlp.convert.load_into`: every missing key, unexpected key and shape mismatch
is named in a :class:`asmlp.convert.CheckpointMismatchError`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn as nn

from . import detectors
from .checkpoint_io import load_checkpoint, sha256_file
from .convert import CheckpointMismatchError, ConversionError, load_into, swin_official_to_timm

__all__ = ['DETECTION_FORMATS', 'KIND', 'CONVERTER_VERSION', 'detect_detection_format',
           'convert_detection_state_dict', 'load_detector_state_dict', 'load_detector_file',
           'CheckpointMismatchError', 'ConversionError']

CONVERTER_VERSION = 1
KIND = 'coco'
DETECTION_FORMATS: dict[str, str] = {  # format -> backbone family
    'asmlp-mmdet': 'AS-MLP',
    'swin-official-mmdet': 'Swin',
    'native-detector': 'Swin',
}
_ARCHITECTURE_TITLES = {'mask_rcnn': 'Mask R-CNN', 'cascade_mask_rcnn': 'Cascade Mask R-CNN'}


def _any(keys, pattern: str) -> bool:
    regex = re.compile(pattern)
    return any(regex.search(k) for k in keys)


def detect_detection_format(state_dict: dict[str, torch.Tensor]) -> str:
    """The format of a detector state dict (see the module docstring); ConversionError when it is none of them."""
    keys = list(state_dict)
    if not _any(keys, r'^rpn_head\.') or not _any(keys, r'^roi_head\.'):
        sample = ', '.join(keys[:3])
        raise ConversionError(f'not a two-stage detector checkpoint: no rpn_head.* / roi_head.* keys '
                              f'(keys: {sample or "none"})')
    if _any(keys, r'^backbone\.stages\.\d+\.'):
        raise ConversionError("mmdetection's own Swin layout (backbone.stages.N, attn.w_msa, ffn) is not supported: "
                              'use the Swin-Transformer-Object-Detection release of the same detector')
    if _any(keys, r'^backbone\.layers\.\d+\.blocks\.\d+\.axial_shift\.'):
        return 'asmlp-mmdet'
    if _any(keys, r'^backbone\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_bias_table$'):
        if _any(keys, r'^backbone\.layers\.0\.downsample\.') or _any(keys, r'\.relative_position_index$'):
            return 'swin-official-mmdet'
        return 'native-detector'
    raise ConversionError(f'unknown detector backbone: not one of {", ".join(DETECTION_FORMATS)}')


def _architecture_of(state_dict: dict[str, torch.Tensor]) -> str:
    return 'cascade_mask_rcnn' if _any(list(state_dict), r'^roi_head\.bbox_head\.\d+\.') else 'mask_rcnn'


def convert_detection_state_dict(state_dict: dict[str, torch.Tensor], name: str, *,
                                 source: str = 'the checkpoint') -> tuple[dict[str, torch.Tensor], str]:
    """(the keys of zoo detector ``name``, the detected format) for an official or native detector state dict.

    ConversionError for an unknown layout, another backbone family or another detector architecture (``source``
    names the checkpoint in messages). Pure: ``state_dict`` is not modified.
    """
    entry = detectors.detector_entry(name)
    state_dict = {k.removeprefix('module.'): v for k, v in state_dict.items()}
    try:
        source_format = detect_detection_format(state_dict)
    except ConversionError as e:
        raise ConversionError(f'{source}: {e}') from None
    family = DETECTION_FORMATS[source_format]
    if family != entry['family']:
        raise ConversionError(f'{source} is a {family} detector ({source_format}), {name} is {entry["family"]}')
    found = _architecture_of(state_dict)
    if found != entry['architecture']:
        raise ConversionError(f'{source} is a {_ARCHITECTURE_TITLES[found]} checkpoint, {name} is a '
                              f'{_ARCHITECTURE_TITLES[entry["architecture"]]}')
    if source_format == 'swin-official-mmdet':
        state_dict = swin_official_to_timm(state_dict)
    return state_dict, source_format


def load_detector_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load converted keys strictly into ``model`` (CheckpointMismatchError naming every mismatch)."""
    load_into(model, state_dict, KIND)


def load_detector_file(path: str | os.PathLike, name: str) -> tuple[nn.Module, dict]:
    """Read (safely), convert and strictly load the checkpoint at ``path`` into a new zoo detector ``name``.

    Returns ``(model in eval mode, meta)`` with meta ``{model, source_format, source_sha256, converter_version,
    kind}`` (``kind`` = ``coco``). Raises CheckpointError (unreadable / unsafe file), ConversionError (not this
    detector's layout) or CheckpointMismatchError (keys or shapes that do not fit), all ValueErrors with a one-line
    message.
    """
    path = Path(path)
    detectors.detector_entry(name)  # unknown names fail before the file is read
    converted, source_format = convert_detection_state_dict(load_checkpoint(path), name, source=path.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = detectors.create_detector(name)
    load_detector_state_dict(model, converted)
    meta = {'model': name, 'source_format': source_format, 'source_sha256': sha256_file(path),
            'converter_version': CONVERTER_VERSION, 'kind': KIND}
    return model.eval(), meta
