"""Convert official checkpoints (AS-MLP, Swin, SETR; ImageNet or ADE20K) to the zoo segmenters' state dicts.

Source formats, detected from the key names (:func:`detect_format`), and the kind of weights each gives:

* ``asmlp-imagenet`` (kind ``imagenet-backbone``): the official AS-MLP ImageNet classifier (``model``:
  ``patch_embed``, ``layers``, ``norm``, ``head``) becomes ``backbone.*``; ``norm`` and ``head`` are dropped, the
  heads and ``backbone.norm0..3`` keep their init (what the official segmentation training starts from).
* ``asmlp-mmseg-upernet`` (``ade20k``): the official AS-MLP mmseg UperNet (``backbone.*`` with ``norm0..3``,
  ``decode_head.*``, ``auxiliary_head.*``) already has this project's keys.
* ``hf-upernet-swin`` (``ade20k``): openmmlab/upernet-swin-* of the Hugging Face Hub (transformers 4.x names,
  5.x module names too): backbone by ``hf_swin_to_pyramid``, heads ``batch_norm`` -> ``bn``,
  ``classifier`` -> ``conv_seg``.
* ``swin-official-upernet`` (``ade20k``): the Swin-Transformer-Semantic-Segmentation releases (original Swin
  names, ``layers.N.downsample`` at the end of stage N, ``relative_position_index`` buffers): the merge moves to
  the start of stage N + 1 as in timm, with no channel reorder.
* ``mmseg-swin-upernet`` (``ade20k``): mmsegmentation >= 0.17 Swin (``stages.N.blocks.M.attn.w_msa``, ``ffn``,
  ``patch_embed.projection``): renamed, and patch merging's ``nn.Unfold`` channel order (4c + 2x2 position)
  undone to Swin's (position * C + c).
* ``mmseg-setr`` (``ade20k``): mmsegmentation SETR (ViT ``backbone.layers.I.ln1``, ``attn.attn.in_proj_*``, MLA
  ``neck.*``, heads): backbone by ``mmseg_vit_to_timm``, neck and heads unchanged.
* ``native`` (``native``): this project's segmenter keys, unchanged. By keys alone AS-MLP ones look like
  ``asmlp-mmseg-upernet`` (the same layout); :func:`convert_file` calls a ``model.safetensors`` with this
  command's ``config.json`` beside it ``native`` and reports the kind recorded there.

Loading is strict (:func:`load_into`): the only missing keys a kind tolerates are documented in
``TOLERATED_MISSING`` (ImageNet backbones leave the heads and the per-stage output norms at their init); any
other missing key, every unexpected key and every shape mismatch raises :class:`CheckpointMismatchError`, naming
them. A checkpoint of another family than the model (a Swin file for an AS-MLP model) is refused before that.

Command line (``python -m asmlp convert`` once wired into ``asmlp/__main__.py``, or ``python -m asmlp.convert``)::

    python -m asmlp convert SRC --model NAME --out DIR [--force]

writes ``DIR/model.safetensors`` (the segmenter's whole state dict) and ``DIR/config.json`` (``model``,
``source_format``, ``source_sha256``, ``converter_version``, ``kind``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from . import zoo
from .checkpoint_io import load_checkpoint, sha256_file
from .paths import atomic_write
from .errors import first_line

__all__ = [
    'CONVERTER_VERSION', 'FORMATS', 'TOLERATED_MISSING', 'CheckpointMismatchError', 'ConversionError',
    'Converted', 'convert_file', 'convert_state_dict', 'detect_format', 'load_into', 'register_cli', 'run_convert',
    'swin_official_to_timm', 'unfold_to_swin_order', 'write_converted',
]

CONVERTER_VERSION = 1

# format -> (model family it belongs to, kind); the family of 'native' comes from its keys
FORMATS: dict[str, tuple[str | None, str]] = {
    'asmlp-imagenet': ('AS-MLP', 'imagenet-backbone'),
    'asmlp-mmseg-upernet': ('AS-MLP', 'ade20k'),
    'hf-upernet-swin': ('Swin', 'ade20k'),
    'swin-official-upernet': ('Swin', 'ade20k'),
    'mmseg-swin-upernet': ('Swin', 'ade20k'),
    'mmseg-setr': ('SETR', 'ade20k'),
    'native': (None, 'native'),
}

# kind -> patterns of segmenter keys that may be missing from the checkpoint (they keep the model's init)
TOLERATED_MISSING: dict[str, tuple[str, ...]] = {
    'imagenet-backbone': (r'decode_head\..+', r'auxiliary_head\..+', r'backbone\.norm[0-3]\.(weight|bias)'),
    'ade20k': (),
    'native': (),
    'coco': (),  # the detectors of asmlp.convert_detection: every key
}

_LIST_FIRST = 6  # names listed per category in error messages


class ConversionError(ValueError):
    """The checkpoint's layout is unknown or does not belong to the requested model's family."""


class CheckpointMismatchError(ValueError):
    """Converted keys do not fit the model: missing / unexpected keys or shape mismatches (all named)."""

    def __init__(self, message: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]):
        super().__init__(message)
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched


@dataclass(frozen=True)
class Converted:
    """A state dict in the zoo segmenter's keys, with where it came from."""
    state_dict: dict[str, torch.Tensor]
    source_format: str
    kind: str


# --------------------------------------------------------------------------------------------- detection

def _any(keys: list[str], pattern: str) -> bool:
    regex = re.compile(pattern)
    return any(regex.search(k) for k in keys)


def _strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``module.`` prefix of (Distributed)DataParallel checkpoints when every key has it."""
    if state_dict and all(k.startswith('module.') for k in state_dict):
        return {k[len('module.'):]: v for k, v in state_dict.items()}
    return state_dict


def detect_format(state_dict: dict[str, torch.Tensor]) -> str:
    """Name of the source format of ``state_dict`` (see the module docstring); ConversionError if unknown."""
    keys = list(_strip_module_prefix(state_dict))
    if _any(keys, r'\.axial_shift\.conv1\.weight$'):
        if _any(keys, r'^backbone\.'):
            return 'asmlp-mmseg-upernet'
        if _any(keys, r'^layers\.\d+\.blocks\.'):
            return 'asmlp-imagenet'
    if _any(keys, r'^backbone\.(swin\.)?(embeddings\.patch_embeddings\.|encoder\.layers\.\d+\.blocks\.)'):
        return 'hf-upernet-swin'
    if _any(keys, r'^backbone\.stages\.\d+\.blocks\.\d+\.attn\.w_msa\.'):
        return 'mmseg-swin-upernet'
    if _any(keys, r'^backbone\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_bias_table$'):
        # the original Swin merges at the end of stage N (layers.0..2), timm at the start of N + 1 (layers.1..3)
        if _any(keys, r'^backbone\.layers\.0\.downsample\.|\.relative_position_index$'):
            return 'swin-official-upernet'
        return 'native'
    if _any(keys, r'^backbone\.layers\.\d+\.(ln1\.|attn\.attn\.in_proj_weight$|ffn\.layers\.)'):
        return 'mmseg-setr'
    if _any(keys, r'^backbone\.blocks\.\d+\.attn\.qkv\.weight$') and 'backbone.cls_token' in keys:
        return 'native'
    sample = ', '.join(keys[:5]) + (f', ... ({len(keys)} keys)' if len(keys) > 5 else '')
    raise ConversionError(f'unknown checkpoint layout: not one of {", ".join(FORMATS)} (keys: {sample or "none"})')


def _family_of(state_dict: dict[str, torch.Tensor], source_format: str) -> str:
    family = FORMATS[source_format][0]
    if family is not None:
        return family
    # native: detect_format only calls Swin and SETR keys native (AS-MLP ones are asmlp-mmseg-upernet)
    return 'Swin' if _any(list(state_dict), r'\.attn\.relative_position_bias_table$') else 'SETR'


# --------------------------------------------------------------------------------------------- key maps

def unfold_to_swin_order(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """Reorder the 4C channels of a patch-merging tensor along ``dim`` from mmseg's ``nn.Unfold`` order to Swin's.

    ``nn.Unfold(2, stride=2)`` puts channel ``c`` of 2x2 position ``(i, j)`` at ``4c + 2i + j``; the original Swin
    (and timm, HF) concatenates the positions (0,0), (1,0), (0,1), (1,1) (rows i, columns j) as blocks of C:
    position k, channel c at ``kC + c``. Used on ``reduction.weight`` (dim 1) and ``norm.weight/bias`` (dim 0).
    """
    if tensor.shape[dim] % 4:
        raise ConversionError(f'patch merging tensor of shape {tuple(tensor.shape)}: dim {dim} is not 4C')
    channels = tensor.shape[dim] // 4
    # positions (0,0) (1,0) (0,1) (1,1) as indices of (i, j) in row-major order
    unfold_index_of_swin_position = torch.tensor([0, 2, 1, 3], device=tensor.device)
    t = tensor.unflatten(dim, (channels, 4)).index_select(dim + 1, unfold_index_of_swin_position)
    return t.transpose(dim, dim + 1).flatten(dim, dim + 1).contiguous()


def _split(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(``backbone.*`` without the prefix, every other key as is)."""
    backbone = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
    rest = {k: v for k, v in state_dict.items() if not k.startswith('backbone.')}
    return backbone, rest


def _with_backbone(backbone: dict[str, torch.Tensor], rest: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {**{f'backbone.{k}': v for k, v in backbone.items()}, **rest}


def _from_asmlp_imagenet(sd):
    return {f'backbone.{k}': v for k, v in sd.items() if not k.startswith(('norm.', 'head.'))}


def _from_hf_upernet_swin(sd):
    from .models.swin import hf_swin_to_pyramid
    _, rest = _split(sd)
    heads = {}
    for key, value in rest.items():
        if key.startswith(('decode_head.', 'auxiliary_head.')):
            key = re.sub(r'^(decode_head|auxiliary_head)\.classifier\.', r'\1.conv_seg.', key)
            key = key.replace('.batch_norm.', '.bn.')
        heads[key] = value
    return _with_backbone(hf_swin_to_pyramid(sd), heads)


_OFFICIAL_SWIN_MERGE = re.compile(r'layers\.(\d+)\.downsample\.(.+)')


def swin_official_to_timm(sd):
    """Original-Swin ``backbone.*`` keys (Swin-Transformer-Semantic-Segmentation / -Object-Detection releases) to
    ``SwinPyramid``'s: ``layers.N.downsample`` -> ``layers.{N+1}.downsample``, derived buffers dropped; other keys
    unchanged."""
    backbone, rest = _split(sd)
    out = {}
    for key, value in backbone.items():
        if key.endswith(('.relative_position_index', '.attn_mask')):
            continue  # derived buffers: timm computes its own
        if m := _OFFICIAL_SWIN_MERGE.fullmatch(key):
            key = f'layers.{int(m[1]) + 1}.downsample.{m[2]}'
        out[key] = value
    return _with_backbone(out, rest)


_MMSEG_SWIN_BLOCK = [  # (pattern on the rest of 'stages.N.blocks.M.', replacement)
    (re.compile(r'attn\.w_msa\.(qkv|proj)\.(weight|bias)'), r'attn.\1.\2'),
    (re.compile(r'attn\.w_msa\.relative_position_bias_table'), 'attn.relative_position_bias_table'),
    (re.compile(r'ffn\.layers\.0\.0\.(weight|bias)'), r'mlp.fc1.\1'),
    (re.compile(r'ffn\.layers\.1\.(weight|bias)'), r'mlp.fc2.\1'),
    (re.compile(r'(norm1|norm2)\.(weight|bias)'), r'\1.\2'),
]


def _from_mmseg_swin(sd):
    backbone, rest = _split(sd)
    out = {}
    for key, value in backbone.items():
        if m := re.fullmatch(r'patch_embed\.projection\.(weight|bias)', key):
            key = f'patch_embed.proj.{m[1]}'
        elif m := re.fullmatch(r'stages\.(\d+)\.blocks\.(\d+)\.(.+)', key):
            if m[3] == 'attn.w_msa.relative_position_index':
                continue
            for pattern, replacement in _MMSEG_SWIN_BLOCK:
                if pattern.fullmatch(m[3]):
                    key = f'layers.{m[1]}.blocks.{m[2]}.{pattern.sub(replacement, m[3])}'
                    break
        elif m := re.fullmatch(r'stages\.(\d+)\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)', key):
            value = unfold_to_swin_order(value, 1 if m[2] == 'reduction.weight' else 0)
            key = f'layers.{int(m[1]) + 1}.downsample.{m[2]}'
        out[key] = value  # anything else keeps its name, and load_into reports it
    return _with_backbone(out, rest)


def _from_mmseg_setr(sd):
    from .models.vit import mmseg_vit_to_timm
    backbone, rest = _split(sd)
    return _with_backbone(mmseg_vit_to_timm(backbone), rest)


_CONVERTERS: dict[str, Callable[[dict], dict]] = {
    'asmlp-imagenet': _from_asmlp_imagenet,
    'asmlp-mmseg-upernet': dict,
    'hf-upernet-swin': _from_hf_upernet_swin,
    'swin-official-upernet': swin_official_to_timm,
    'mmseg-swin-upernet': _from_mmseg_swin,
    'mmseg-setr': _from_mmseg_setr,
    'native': dict,
}


def convert_state_dict(state_dict: dict[str, torch.Tensor], model_name: str, *,
                       source: str = 'the checkpoint') -> Converted:
    """Detect the format of ``state_dict`` and map it to the keys of zoo segmenter ``model_name`` (pure).

    Raises ConversionError for an unknown layout or a checkpoint of another family than ``model_name``
    (``source`` names the checkpoint in messages).
    """
    family = zoo.model_entry(model_name)['family']
    state_dict = _strip_module_prefix(dict(state_dict))
    try:
        source_format = detect_format(state_dict)
    except ConversionError as e:
        raise ConversionError(f'{source}: {e}') from None
    found = _family_of(state_dict, source_format)
    if found != family:
        raise ConversionError(f'{source} is {"an" if found[0] in "AEIOU" else "a"} {found} checkpoint '
                              f'({source_format}), {model_name} is {family}')
    try:
        converted = _CONVERTERS[source_format](state_dict)
    except ConversionError:
        raise
    except ValueError as e:
        raise ConversionError(f'{source} ({source_format}): {e}') from None
    return Converted(converted, source_format, FORMATS[source_format][1])


# --------------------------------------------------------------------------------------------- loading

def _listing(title: str, items: list[str]) -> str:
    shown = ', '.join(items[:_LIST_FIRST])
    more = f' and {len(items) - _LIST_FIRST} more' if len(items) > _LIST_FIRST else ''
    return f'{len(items)} {title}{"s" if len(items) != 1 else ""}: {shown}{more}'


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], kind: str) -> list[str]:
    """Load ``state_dict`` strictly into ``model``; returns the (tolerated) keys left at the model's init.

    Missing keys are allowed only where ``TOLERATED_MISSING[kind]`` says so; any other missing key, every
    unexpected key and every shape mismatch raise :class:`CheckpointMismatchError` naming them (the first few of
    each, then a count) with expected and found shapes. Works on meta-device models too (tensors are assigned).
    """
    if kind not in TOLERATED_MISSING:
        raise ValueError(f'unknown kind {kind!r}; known: {", ".join(TOLERATED_MISSING)}')
    tolerated = [re.compile(p) for p in TOLERATED_MISSING[kind]]
    expected = model.state_dict()
    left = [k for k in expected if k not in state_dict]
    missing = [k for k in left if not any(p.fullmatch(k) for p in tolerated)]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [(k, tuple(expected[k].shape), tuple(v.shape)) for k, v in state_dict.items()
                  if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(_listing('missing key', [f'{k} (expected {tuple(expected[k].shape)})' for k in missing]))
        if unexpected:
            parts.append(_listing('unexpected key', [f'{k} (found {tuple(state_dict[k].shape)})'
                                                     for k in unexpected]))
        if mismatched:
            parts.append(_listing('shape mismatch', [f'{k}: expected {e}, found {f}' for k, e, f in mismatched]))
        raise CheckpointMismatchError(f'checkpoint does not fit the model ({kind}): ' + '; '.join(parts),
                                      missing, unexpected, mismatched)
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(state_dict, strict=False, assign=on_meta)
    return left


def convert_file(path: str | os.PathLike, model_name: str) -> tuple[nn.Module, dict]:
    """Read (safely), convert and load the checkpoint at ``path`` into a new zoo segmenter ``model_name``.

    Returns ``(model in eval mode, info)`` with info ``{model, source_format, source_sha256, converter_version,
    kind}``. Keys a kind leaves at init get a fixed seed (the same file always gives the same model). A
    ``model.safetensors`` written by this command (its ``config.json`` beside it) is ``native``, and ``kind`` is
    the one recorded in that ``config.json``.
    """
    path = Path(path)
    zoo.model_entry(model_name)  # unknown names fail before the file is read
    converted = convert_state_dict(load_checkpoint(path), model_name, source=path.name)
    written = _written_by_convert(path)
    if written is not None and _CONVERTERS[converted.source_format] is dict:
        # a file this command wrote (its own keys, kept as they are); the kind it was made as is in config.json
        converted = Converted(converted.state_dict, 'native', 'native')
    else:
        written = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = zoo.build_segmenter(model_name)
    load_into(model, converted.state_dict, converted.kind)
    info = {'model': model_name, 'source_format': converted.source_format, 'source_sha256': sha256_file(path),
            'converter_version': CONVERTER_VERSION,
            'kind': written['kind'] if written is not None else converted.kind}
    return model.eval(), info


def _written_by_convert(path: Path) -> dict | None:
    """The ``config.json`` beside ``path`` if ``path`` is a ``model.safetensors`` written by this command."""
    if path.name != 'model.safetensors':
        return None
    try:
        config = json.loads(path.with_name('config.json').read_text())
    except (OSError, ValueError):
        return None
    fields = ('model', 'source_format', 'source_sha256', 'converter_version', 'kind')
    if not isinstance(config, dict) or not all(k in config for k in fields) or not isinstance(config['kind'], str):
        return None
    return config


# --------------------------------------------------------------------------------------------- writing, CLI

def write_converted(model: nn.Module, info: dict, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/model.safetensors`` (the model's state dict, contiguous) and ``out_dir/config.json``."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {'format': 'pt', **{k: str(v) for k, v in info.items()}}
    atomic_write(out / 'model.safetensors', lambda tmp: save_file(tensors, tmp, metadata=metadata))
    config = json.dumps(info, indent=2) + '\n'
    atomic_write(out / 'config.json', lambda tmp: Path(tmp).write_text(config))
    return out / 'model.safetensors'


def _add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('src', type=Path, metavar='SRC', help='checkpoint file (.pth/.bin/.safetensors)')
    parser.add_argument('--model', required=True, metavar='NAME', help='zoo model name (python -m asmlp info)')
    parser.add_argument('--out', required=True, type=Path, metavar='DIR',
                        help='output folder for model.safetensors and config.json')
    parser.add_argument('--force', action='store_true', help='overwrite an existing DIR/model.safetensors')
    return parser


_DESCRIPTION = ('Convert an official checkpoint to a zoo segmenter: writes DIR/model.safetensors and DIR/config.json. '
                f'Formats: {", ".join(FORMATS)} (detected from the keys).')


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``convert SRC --model NAME --out DIR [--force]`` to an argparse subparsers object.

    The sub-command's ``func`` runs :func:`run_convert` and raises ``SystemExit`` with its code when it fails, so
    it works with a ``main`` that ignores ``func``'s return value.
    """
    parser = subparsers.add_parser('convert', help='convert an official checkpoint to a zoo segmenter',
                                   description=_DESCRIPTION)
    _add_arguments(parser)
    parser.set_defaults(func=_cli_func)
    return parser


def _cli_func(args: argparse.Namespace) -> int:
    code = run_convert(args)
    if code:
        raise SystemExit(code)
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """The ``convert`` command on parsed arguments (``src``, ``model``, ``out``, ``force``); returns the exit code.

    0 on success; 1 with one line on stderr for a checkpoint or argument problem; 2 for an unexpected error
    (also one line, with its type).
    """
    try:
        out = Path(args.out)
        target = out / 'model.safetensors'
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f'--out {out} exists and is not a folder')
        if target.exists() and not args.force:
            raise FileExistsError(f'{target} exists; pass --force to overwrite it')
        model, info = convert_file(args.src, args.model)
        write_converted(model, info, out)
    except (ValueError, OSError) as e:  # CheckpointError, ConversionError, CheckpointMismatchError, file errors
        print(f'asmlp convert: error: {first_line(e)}', file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001  (one line, no traceback, by design of the command)
        print(f'asmlp convert: unexpected error: {type(e).__name__}: {first_line(e)}', file=sys.stderr)
        return 2
    print(f'wrote {target} and {out / "config.json"}: {info["model"]} from {info["source_format"]} '
          f'({info["kind"]}), source sha256 {info["source_sha256"][:12]}')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _add_arguments(argparse.ArgumentParser(prog='python -m asmlp.convert', description=_DESCRIPTION))
    return run_convert(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
