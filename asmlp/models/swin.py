"""Swin Transformer (Liu et al., arXiv 2103.14030) as a segmentation backbone with mmseg / HF semantics.

``SwinPyramid`` is built from timm's ``SwinTransformer`` (patch embed, stages, blocks, patch merging are timm's) and
returns the four stage maps, NCHW at strides 4/8/16/32 (channels C, 2C, 4C, 8C), each through its own LayerNorm
``norm0..norm3`` (mmseg ``SwinTransformer(out_indices=(0, 1, 2, 3))`` names; HF ``hidden_states_norms.stage1..4``).
timm's final ``norm`` and classifier are dropped, so the parameters are exactly mmseg's backbone (27.52 M for Swin-T).

Outputs equal HF transformers' ``SwinBackbone`` (the backbone of the openmmlab/upernet-swin-* models, converted from
mmseg; tested to ~2e-6) at any input size, and follow mmseg's ``ShiftWindowMSA`` (pad, then shift). Three things:

* ``always_partition=True``: stages smaller than a window keep the full window and the shift, as mmseg / HF do
  (timm otherwise shrinks the window and drops the shift);
* pad before shift: where a map is not a window multiple, mmseg / HF pad it bottom/right to one, cyclically shift
  the padded map and build the attention mask on the padded size; timm shifts the unpadded map and pads after, which
  changes which tokens share a window (max |diff| 0.1-1 at 512x512 on random weights). ``_PadThenShiftBlock`` overrides
  only timm's ``SwinTransformerBlock._attn`` to do it the mmseg way;
* the image is zero-padded bottom/right to a multiple of the patch size (timm asserts divisibility). Odd maps are
  zero-padded bottom/right before each patch merging by timm, as mmseg / HF do.

``hf_swin_to_pyramid`` maps the HF Swin keys (the 4.x layout of the Hub files, or the transformers 5.x module names)
to ``SwinPyramid`` keys.
"""
from __future__ import annotations

import re
from typing import Dict, List

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import FeatureInfo
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock, window_partition, window_reverse

__all__ = ['SwinPyramid', 'hf_swin_to_pyramid']

# the settings that give mmseg / HF behaviour at any input size; a caller may not change them
_FIXED_KWARGS = dict(num_classes=0, global_pool='', always_partition=True, strict_img_size=False)


class _PadThenShiftBlock(SwinTransformerBlock):
    """timm Swin block whose shifted-window attention pads to a window multiple before the cyclic shift (mmseg/HF)."""

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        _, H, W, C = x.shape
        win_h, win_w = self.window_size
        x = F.pad(x, (0, 0, 0, (-W) % win_w, 0, (-H) % win_h))
        _, Hp, Wp, _ = x.shape

        has_shift = any(self.shift_size)
        if has_shift:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        # mask regions from the padded size (timm's static mask is built on the padded input_resolution too)
        attn_mask = self.get_attn_mask(x) if self.dynamic_mask else self.attn_mask

        x_windows = window_partition(x, self.window_size).view(-1, self.window_area, C)
        attn_windows = self.attn(x_windows, mask=attn_mask).view(-1, win_h, win_w, C)
        x = window_reverse(attn_windows, self.window_size, Hp, Wp)

        if has_shift:
            x = torch.roll(x, shifts=self.shift_size, dims=(1, 2))
        return x[:, :H, :W, :].contiguous()


class SwinPyramid(nn.Module):
    """timm Swin as an mmseg-equivalent 4-level feature pyramid (``forward`` returns a list of NCHW maps).

    Args:
        variant: A timm Swin model name, e.g. ``swin_tiny_patch4_window7_224`` (UperNet Swin-T/S use window 7,
            ``swin_base_patch4_window12_384`` / ``swin_large_patch4_window12_384`` window 12).
        **timm_kwargs: Passed to ``timm.create_model`` (e.g. ``embed_dim``, ``depths``, ``num_heads``,
            ``window_size``, ``drop_path_rate``, ``device``). No weights are downloaded: load converted weights
            (``hf_swin_to_pyramid``) with ``load_state_dict``.
    """

    def __init__(self, variant: str = 'swin_tiny_patch4_window7_224', **timm_kwargs):
        super().__init__()
        for k, v in _FIXED_KWARGS.items():
            if k in timm_kwargs and timm_kwargs[k] != v:
                raise ValueError(f'SwinPyramid needs {k}={v!r} (mmseg/HF semantics), got {timm_kwargs[k]!r}')
        if variant.split('.')[0] not in timm.list_models(module='swin_transformer'):
            raise ValueError(f'{variant!r} is not a timm Swin model (see timm.list_models(module="swin_transformer"))')
        net: SwinTransformer = timm.create_model(variant, pretrained=False, **{**timm_kwargs, **_FIXED_KWARGS})
        self.variant = variant
        self.patch_embed = net.patch_embed
        self.layers = net.layers
        factory = dict(device=self.patch_embed.proj.weight.device, dtype=self.patch_embed.proj.weight.dtype)
        for m in self.layers.modules():
            if type(m) is SwinTransformerBlock:
                m.__class__ = _PadThenShiftBlock
        for i, info in enumerate(net.feature_info):
            self.add_module(f'norm{i}', nn.LayerNorm(info['num_chs'], **factory))
        self.feature_info = FeatureInfo(net.feature_info, tuple(range(len(net.feature_info))))
        self.out_channels: List[int] = self.feature_info.channels()

    @property
    def in_chans(self) -> int:
        return self.patch_embed.proj.in_channels

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(B, in_chans, H, W), any H, W -> ``[(B, C_i, ceil(H / s_i), ceil(W / s_i)) for s_i in (4, 8, 16, 32)]``."""
        if x.dim() != 4:
            raise ValueError(f'expected an NCHW image batch, got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_chans:
            raise ValueError(f'expected {self.in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)})')
        ph, pw = self.patch_embed.patch_size
        x = F.pad(x, (0, (-x.shape[3]) % pw, 0, (-x.shape[2]) % ph))
        x = self.patch_embed(x)  # NHWC
        outs = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            outs.append(getattr(self, f'norm{i}')(x).permute(0, 3, 1, 2).contiguous())
        return outs


# HF block sub-key -> timm block sub-key; transformers 4.x names (the Hub files) first, then the 5.x module names
_HF_BLOCK_KEYS = {
    'layernorm_before': 'norm1',
    'layernorm_after': 'norm2',
    'attention.output.dense': 'attn.proj',
    'attention.o_proj': 'attn.proj',
    'intermediate.dense': 'mlp.fc1',
    'output.dense': 'mlp.fc2',
    'mlp.fc1': 'mlp.fc1',
    'mlp.fc2': 'mlp.fc2',
}
_HF_QKV = re.compile(r'attention\.(?:self\.(query|key|value)|([qkv])_proj)\.(weight|bias)')
_HF_BLOCK = re.compile(r'encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)')
_HF_DOWNSAMPLE = re.compile(r'encoder\.layers\.(\d+)\.downsample\.((?:reduction|norm)\.(?:weight|bias))')
_HF_OUT_NORM = re.compile(r'hidden_states_norms\.stage(\d+)\.(weight|bias)')
_HF_FIXED = {
    'embeddings.patch_embeddings.projection.weight': 'patch_embed.proj.weight',
    'embeddings.patch_embeddings.projection.bias': 'patch_embed.proj.bias',
    'embeddings.norm.weight': 'patch_embed.norm.weight',
    'embeddings.norm.bias': 'patch_embed.norm.bias',
}


def hf_swin_to_pyramid(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Map an HF Swin backbone state dict to ``SwinPyramid`` keys (pure: the input is not modified).

    Accepts the transformers 4.x layout of the openmmlab/upernet-swin-* Hub files (``backbone.embeddings.*``,
    ``backbone.encoder.layers.N.blocks.M.attention.self.{query,key,value}``, ...) and the transformers 5.x module
    names (``backbone.swin.encoder...attention.q_proj``, ``...relative_position_bias.relative_position_bias_table``,
    ``mlp.fc1``); with or without the ``backbone.`` / ``swin.`` prefixes. If any key starts with ``backbone.``, all
    other keys (``decode_head.*``, ``auxiliary_head.*``) are ignored. q/k/v are concatenated (q; k; v) into timm's
    ``qkv``; ``encoder.layers.N.downsample`` (end of stage N) becomes ``layers.{N+1}.downsample`` (timm merges at the
    start of a stage; same 2x2 channel order, no reordering); ``hidden_states_norms.stageK`` becomes
    ``norm{K-1}``; ``relative_position_index`` buffers and the unused final ``layernorm`` are dropped. Unknown keys
    raise ``ValueError``.
    """
    if any(k.startswith('backbone.') for k in state_dict):
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
    out: Dict[str, torch.Tensor] = {}
    qkv: Dict[str, Dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state_dict.items():
        k = key[len('swin.'):] if key.startswith('swin.') else key
        if k.endswith('relative_position_index') or k.startswith('layernorm.'):
            continue
        if k in _HF_FIXED:
            out[_HF_FIXED[k]] = value
        elif m := _HF_BLOCK.fullmatch(k):
            prefix, rest = f'layers.{m[1]}.blocks.{m[2]}.', m[3]
            if q := _HF_QKV.fullmatch(rest):
                qkv.setdefault(f'{prefix}attn.qkv.{q[3]}', {})[(q[1] or q[2])[0]] = value
            elif rest.endswith('relative_position_bias_table'):
                out[prefix + 'attn.relative_position_bias_table'] = value
            else:
                name, _, param = rest.rpartition('.')
                if name not in _HF_BLOCK_KEYS:
                    unknown.append(key)
                    continue
                out[f'{prefix}{_HF_BLOCK_KEYS[name]}.{param}'] = value
        elif m := _HF_DOWNSAMPLE.fullmatch(k):
            out[f'layers.{int(m[1]) + 1}.downsample.{m[2]}'] = value
        elif m := _HF_OUT_NORM.fullmatch(k):
            out[f'norm{int(m[1]) - 1}.{m[2]}'] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'not HF Swin backbone keys: {unknown[:5]}' + (' ...' if len(unknown) > 5 else ''))
    for k, parts in qkv.items():
        if set(parts) != {'q', 'k', 'v'}:
            raise ValueError(f'{k}: expected query, key and value, got {sorted(parts)}')
        out[k] = torch.cat([parts['q'], parts['k'], parts['v']], dim=0)
    return out
