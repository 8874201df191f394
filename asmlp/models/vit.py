"""Plain ViT backbone of SETR: outputs of chosen transformer layers of a timm ``VisionTransformer`` as NCHW maps.

ViT: Dosovitskiy et al., *An Image is Worth 16x16 Words*, arXiv 2010.11929. SETR: Zheng et al., *Rethinking Semantic
Segmentation from a Sequence-to-Sequence Perspective with Transformers*, arXiv 2012.15840 (github.com/fudan-zvg/SETR).
Semantics follow the mmsegmentation re-implementation (``mmseg/models/backbones/vit.py`` with the settings of
``configs/_base_/models/setr_*.py``):

* ViT-L/16 (24 layers, width 1024, 16 heads, mlp 4, qkv bias, LayerNorm eps 1e-6) built at ``img_size=512``: a 32x32
  position grid plus one cls slot (``pos_embed`` (1, 1025, 1024)), no final norm (mmseg ``final_norm=False``),
  dropout off; 304.15 M parameters.
* SETR-Naive and SETR-PUP: ``out_indices=(9, 14, 19, 23)``, ``cls_token_in_blocks=True`` (mmseg
  ``with_cls_token=True``): the cls token runs through every block and is dropped from the outputs.
* SETR-MLA: ``out_indices=(5, 11, 17, 23)``, ``cls_token_in_blocks=False`` (mmseg ``with_cls_token=False``): the cls
  token gets its position embedding and is removed before the first block. ``cls_token`` and the cls slot of
  ``pos_embed`` stay in the state dict (unused), as in mmseg's checkpoints, so both modes load the same keys.
* Another input grid: the position grid is resized BILINEARLY (``align_corners=False``, no antialiasing) like mmseg's
  ``resize_pos_embed`` with ``interpolate_mode='bilinear'`` (timm's own dynamic resize is antialiased bicubic). H, W
  that are not multiples of the patch are zero-padded right/bottom (mmseg ``padding='corner'``), so the maps are
  ceil(H/16) x ceil(W/16). mmseg's slide test feeds 512x512 crops, so this only matters for small images; mmseg
  resizes only when the token *count* differs, which agrees with this module for every input up to 512x512.

Weights: ``model.load_state_dict(mmseg_vit_to_timm(torch.load(path, map_location='cpu', weights_only=True)))``.
For FLOP counting pass ``fused_attn=False``: ``torch.utils.flop_counter`` does not count the CPU kernel of
``F.scaled_dot_product_attention``.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import timm
import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed
from timm.models import VisionTransformer
from timm.models import FeatureInfo

__all__ = ['ViTFeatures', 'SETR_VIT_CFGS', 'mmseg_vit_to_timm']

# backbone settings of the mmseg SETR configs (the model itself: ViTFeatures() defaults, ViT-L/16 @ 512)
SETR_VIT_CFGS = {
    'naive': dict(out_indices=(9, 14, 19, 23), cls_token_in_blocks=True),
    'pup': dict(out_indices=(9, 14, 19, 23), cls_token_in_blocks=True),
    'mla': dict(out_indices=(5, 11, 17, 23), cls_token_in_blocks=False),
}


class ViTFeatures(nn.Module):
    """Layer outputs of a timm ViT, prefix tokens removed, no final norm: a list of (B, C, ceil(H/p), ceil(W/p)).

    Args:
        model_name: a timm ``VisionTransformer`` with one cls token that has a position slot, e.g.
            ``vit_large_patch16_384`` (SETR), ``vit_base_patch16_384``, ``vit_small_patch16_384`` (light variants).
        img_size: size of the position grid (``img_size / patch_size``); other input sizes resize it bilinearly.
        out_indices: block indices to return (negative counts from the end); blocks after the last are dropped.
        cls_token_in_blocks: True for SETR-Naive/PUP (cls token through all blocks), False for SETR-MLA (cls token
            removed after the position embedding).
        fused_attn: force timm's fused attention on/off (None: timm's global setting).
        **kwargs: passed to ``timm.create_model``, e.g. ``embed_dim=32, depth=4, num_heads=2, patch_size=8`` for a
            tiny model, ``device='meta'``, or a non-zero ``drop_path_rate`` for training.
    """

    def __init__(
            self,
            model_name: str = 'vit_large_patch16_384',
            img_size: int | tuple[int, int] = 512,
            out_indices: Sequence[int] = (9, 14, 19, 23),
            cls_token_in_blocks: bool = True,
            fused_attn: Optional[bool] = None,
            **kwargs,
    ):
        super().__init__()
        kwargs = {'drop_rate': 0., 'pos_drop_rate': 0., 'attn_drop_rate': 0., 'proj_drop_rate': 0.,
                  'drop_path_rate': 0., **kwargs}
        model = timm.create_model(
            model_name, img_size=img_size, num_classes=0, global_pool='', dynamic_img_size=True,
            dynamic_img_pad=True, **kwargs)
        if not (isinstance(model, VisionTransformer) and model.has_class_token and model.num_prefix_tokens == 1
                and not model.no_embed_class and model.pos_embed is not None):
            raise ValueError(f'{model_name} is not a ViT with one cls token and a learned pos_embed with a cls slot')
        depth = len(model.blocks)
        indices = sorted({i % depth for i in out_indices if -depth <= i < depth})
        if not out_indices or len(indices) != len(out_indices):
            raise ValueError(f'out_indices must be distinct blocks in [-{depth}, {depth - 1}], got {out_indices}')
        self.out_indices = tuple(indices)
        self.cls_token_in_blocks = cls_token_in_blocks
        self.in_chans = model.patch_embed.proj.in_channels
        self.patch_size = model.patch_embed.patch_size  # (ph, pw)
        self.img_size = model.patch_embed.img_size  # (H, W) of the native position grid
        self.grid_size = model.patch_embed.grid_size
        self.embed_dim = model.embed_dim
        self.out_channels = [model.embed_dim] * len(self.out_indices)
        self.feature_info = FeatureInfo(model.feature_info, self.out_indices)

        self.patch_embed = model.patch_embed  # NHWC output, right/bottom zero padding (dynamic_img_pad)
        self.cls_token = model.cls_token
        self.pos_embed = model.pos_embed
        self.pos_drop = model.pos_drop
        self.norm_pre = model.norm_pre
        self.blocks = model.blocks[:self.out_indices[-1] + 1]
        if fused_attn is not None:
            for blk in self.blocks:
                blk.attn.fused_attn = fused_attn

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, w, C) patches -> (B, [1 +] h*w, C) tokens with the bilinearly resized position embedding."""
        B, h, w, C = x.shape
        pos = resample_abs_pos_embed(
            self.pos_embed, new_size=(h, w), old_size=self.grid_size, num_prefix_tokens=1,
            interpolation='bilinear', antialias=False, align_corners=False)
        x = x.reshape(B, h * w, C) + pos[:, 1:]
        if self.cls_token_in_blocks:
            x = torch.cat([(self.cls_token + pos[:, :1]).expand(B, -1, -1), x], dim=1)
        return self.pos_drop(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_chans or not x.is_floating_point() or min(x.shape[-2:]) < 1:
            raise ValueError(
                f'ViTFeatures expects a float (B, {self.in_chans}, H, W) image batch, got {x.dtype} {tuple(x.shape)}')
        x = self.patch_embed(x)
        B, h, w, C = x.shape
        x = self.norm_pre(self._pos_embed(x))
        skip = 1 if self.cls_token_in_blocks else 0
        outs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.out_indices:
                outs.append(x[:, skip:].reshape(B, h, w, C).permute(0, 3, 1, 2).contiguous())
        return outs


# mmseg TransformerEncoderLayer -> timm Block (rest of the key after ``layers.I.``)
_MMSEG_BLOCK_KEYS = {
    'ln1.': 'norm1.',
    'ln2.': 'norm2.',
    'attn.attn.in_proj_weight': 'attn.qkv.weight',  # nn.MultiheadAttention packs [q; k; v] like timm's qkv
    'attn.attn.in_proj_bias': 'attn.qkv.bias',
    'attn.attn.out_proj.': 'attn.proj.',
    'ffn.layers.0.0.': 'mlp.fc1.',
    'ffn.layers.1.': 'mlp.fc2.',
}


def mmseg_vit_to_timm(state_dict: dict) -> dict:
    """Rename an mmseg ViT backbone (e.g. a SETR checkpoint) to the keys of :class:`ViTFeatures`.

    Accepts a whole mmseg checkpoint (``{'state_dict': ...}``; only ``backbone.*`` is kept, heads and neck are
    dropped) or a bare backbone dict. ``cls_token`` and ``pos_embed`` (1 + N tokens, also for SETR-MLA) keep their
    names and values; keys already in timm naming pass through unchanged. Raises ValueError for a backbone with a
    final norm (mmseg ``final_norm=True``), which SETR does not use.
    """
    if isinstance(state_dict.get('state_dict'), dict):
        state_dict = state_dict['state_dict']
    state_dict = {k.removeprefix('module.'): v for k, v in state_dict.items()}
    if any(k.startswith('backbone.') for k in state_dict):
        state_dict = {k.removeprefix('backbone.'): v for k, v in state_dict.items() if k.startswith('backbone.')}
    out = {}
    for key, value in state_dict.items():
        if key.startswith('ln1.'):
            raise ValueError('mmseg ViT with final_norm=True (top-level ln1) is not supported: SETR uses no final norm')
        if key.startswith('patch_embed.projection.'):
            key = 'patch_embed.proj.' + key.removeprefix('patch_embed.projection.')
        elif m := re.match(r'layers\.(\d+)\.(.*)', key):
            rest = m.group(2)
            for old, new in _MMSEG_BLOCK_KEYS.items():
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            key = f'blocks.{m.group(1)}.{rest}'
        out[key] = value
    return out
