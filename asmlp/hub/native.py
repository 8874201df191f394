"""This project's own weight format: a folder (local or a Hub repo) with ``config.json`` + ``model.safetensors``.

``model.safetensors`` holds the zoo segmenter's ``state_dict`` under its own keys (as written by
``python -m asmlp convert``); ``config.json`` says what it is::

    {"model": "upernet_swin_tiny", "kind": "ade20k", "source_format": "hf-upernet-swin",
     "source_sha256": "<sha256 of the file it was converted from>", "converter_version": "1"}

``kind`` is ``ade20k``, ``imagenet-backbone`` or ``demo`` (only under ``weights/demo/<name>/``). Loading follows
the converter's rules (:func:`asmlp.convert.load_into`): strict — every key of the model, nothing else, same
shapes — except the keys ``asmlp.convert.TOLERATED_MISSING`` lets an ImageNet backbone leave at init (heads, the
per-stage output norms). ``demo`` loads like ``ade20k``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from ..errors import first_line

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ['CONFIG_FILE', 'WEIGHTS_FILE', 'REQUIRED_FIELDS', 'NATIVE_KINDS', 'read_config', 'load_into',
           'check_state_dict']

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
REQUIRED_FIELDS = ('model', 'kind', 'source_format', 'source_sha256', 'converter_version')
NATIVE_KINDS = ('ade20k', 'imagenet-backbone', 'demo')


def read_config(path: Path, name: str, *, kinds: tuple[str, ...] = NATIVE_KINDS) -> dict[str, Any]:
    """The validated ``config.json`` at ``path`` for model ``name``; ValueError with a one-line reason otherwise."""
    try:
        config = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f'{path}: missing') from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f'{path}: not readable JSON ({first_line(error)})') from None
    if not isinstance(config, dict):
        raise ValueError(f'{path}: expected a JSON object')
    missing = [k for k in REQUIRED_FIELDS if k not in config]
    if missing:
        raise ValueError(f'{path}: missing field(s) {", ".join(missing)}')
    if config['model'] != name:
        raise ValueError(f'{path}: holds weights for {config["model"]!r}, not {name!r}')
    if config['kind'] not in kinds:
        raise ValueError(f'{path}: kind {config["kind"]!r} is not one of {", ".join(kinds)}')
    return config


def _loading_kind(kind: str) -> str:
    return 'ade20k' if kind == 'demo' else kind


def check_state_dict(model_shapes: dict[str, tuple[int, ...]], file_shapes: dict[str, tuple[int, ...]],
                     kind: str, where: str) -> None:
    """ValueError unless ``file_shapes`` fits ``model_shapes`` for ``kind`` (shapes only: no tensor is read)."""
    import re

    from ..convert import TOLERATED_MISSING
    tolerated = [re.compile(p) for p in TOLERATED_MISSING[_loading_kind(kind)]]
    missing = sorted(k for k in set(model_shapes) - set(file_shapes) if not any(p.fullmatch(k) for p in tolerated))
    unexpected = sorted(set(file_shapes) - set(model_shapes))
    wrong = sorted(k for k in set(model_shapes) & set(file_shapes) if tuple(model_shapes[k]) != tuple(file_shapes[k]))
    problems = []
    for label, keys in (('missing', missing), ('unexpected', unexpected), ('wrong shape', wrong)):
        if keys:
            problems.append(f'{len(keys)} {label} key(s), e.g. {keys[0]}')
    if problems:
        raise ValueError(f'{where}: does not fit the model: {"; ".join(problems)}')


def load_into(model: nn.Module, weights_path: Path, kind: str) -> None:
    """Load ``weights_path`` (safetensors) into ``model`` by the converter's rules for ``kind``."""
    from ..checkpoint_io import load_checkpoint
    from ..convert import load_into as convert_load_into
    convert_load_into(model, load_checkpoint(weights_path), _loading_kind(kind))
