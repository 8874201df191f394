"""Checkpoint converters: every official layout, written here from its documentation (not from our models), is
saved as the real file type, converted through the CLI code path, loaded strictly and compared with an independent
reference (the official AS-MLP forward, nn.MultiheadAttention / nn.Unfold restatements of mmseg, and transformers
4.x logits of a small UperNet-Swin stored in tests/fixtures). Zoo-sized layouts are checked on the meta device.

Layout sources: svip-lab/AS-MLP ``models/as_mlp.py`` and svip-lab/AS-MLP-Semantic-Segmentation
``mmseg/models/backbones/asmlp.py`` (AS-MLP ImageNet and mmseg),
§1.5 (HF Hub files), §2.3 (mmseg SETR); the original Swin seg backbone and mmseg's Swin (``stages``, ``w_msa``,
``ffn.layers``, nn.Unfold patch merging) as their module code names them.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import asmlp  # noqa: F401  (registers the AS-MLP models with timm)
from asmlp import convert, zoo
from asmlp.convert import (CheckpointMismatchError, ConversionError, convert_state_dict, detect_format, load_into,
                           run_convert, unfold_to_swin_order)
from asmlp.models.heads import FCNHead, MLANeck, SETRMLAHead, SETRUPHead, UPerHead
from asmlp.models.segmenter import Segmenter
from asmlp.models.swin import SwinPyramid
from asmlp.models.vit import ViTFeatures
from test_asmlp import official_forward, official_layout  # the official AS-MLP layout and forward, restated
from test_checkpoint_io import CfgNode, asmlp_training_checkpoint, throwaway_module

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / 'tests' / 'fixtures' / 'upernet_swin_small_cfg'
INT_KEYS = ('num_batches_tracked', 'relative_position_index')


# ------------------------------------------------------------------------------------------ documented layouts

def conv_module(layout, prefix, cin, cout, k, bn='bn'):
    """mmcv ConvModule (conv without bias, BatchNorm named ``bn``; HF calls it ``batch_norm``)."""
    layout[f'{prefix}.conv.weight'] = (cout, cin, k, k)
    for stat in ('weight', 'bias', 'running_mean', 'running_var'):
        layout[f'{prefix}.{bn}.{stat}'] = (cout,)
    layout[f'{prefix}.{bn}.num_batches_tracked'] = ()


def upernet_layout(in_channels, channels, aux_channels, num_classes, bn='bn', cls='conv_seg'):
    """UPerHead (pool scales 1, 2, 3, 6) + FCN auxiliary head (one 3x3 ConvModule) on stage 3."""
    layout = {}
    top = in_channels[-1]
    for p in range(4):
        conv_module(layout, f'decode_head.psp_modules.{p}.1', top, channels, 1, bn)
    conv_module(layout, 'decode_head.bottleneck', top + 4 * channels, channels, 3, bn)
    for level in range(3):
        conv_module(layout, f'decode_head.lateral_convs.{level}', in_channels[level], channels, 1, bn)
        conv_module(layout, f'decode_head.fpn_convs.{level}', channels, channels, 3, bn)
    conv_module(layout, 'decode_head.fpn_bottleneck', 4 * channels, channels, 3, bn)
    layout[f'decode_head.{cls}.weight'] = (num_classes, channels, 1, 1)
    layout[f'decode_head.{cls}.bias'] = (num_classes,)
    conv_module(layout, 'auxiliary_head.convs.0', in_channels[2], aux_channels, 3, bn)
    layout[f'auxiliary_head.{cls}.weight'] = (num_classes, aux_channels, 1, 1)
    layout[f'auxiliary_head.{cls}.bias'] = (num_classes,)
    return layout


def asmlp_mmseg_layout(embed_dim, depths, channels, aux_channels, num_classes):
    """Official AS-MLP mmseg UperNet: backbone.* = ImageNet keys without norm/head, plus norm0..3; mmseg heads."""
    layout = {f'backbone.{k}': v for k, v in official_layout(embed_dim, depths).items()
              if not k.startswith(('norm.', 'head.'))}
    for i in range(4):
        layout[f'backbone.norm{i}.weight'] = layout[f'backbone.norm{i}.bias'] = (embed_dim * 2 ** i,)
    return {**layout, **upernet_layout([embed_dim * 2 ** i for i in range(4)], channels, aux_channels, num_classes)}


def swin_official_layout(embed_dim, depths, num_heads, window):
    """Swin-Transformer-Semantic-Segmentation backbone: original Swin names, merge at the end of stages 0-2."""
    layout = {'patch_embed.proj.weight': (embed_dim, 3, 4, 4), 'patch_embed.proj.bias': (embed_dim,),
              'patch_embed.norm.weight': (embed_dim,), 'patch_embed.norm.bias': (embed_dim,)}
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        c = embed_dim * 2 ** i
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            layout.update({
                p + 'norm1.weight': (c,), p + 'norm1.bias': (c,),
                p + 'attn.relative_position_bias_table': ((2 * window - 1) ** 2, heads),
                p + 'attn.relative_position_index': (window ** 2, window ** 2),
                p + 'attn.qkv.weight': (3 * c, c), p + 'attn.qkv.bias': (3 * c,),
                p + 'attn.proj.weight': (c, c), p + 'attn.proj.bias': (c,),
                p + 'norm2.weight': (c,), p + 'norm2.bias': (c,),
                p + 'mlp.fc1.weight': (4 * c, c), p + 'mlp.fc1.bias': (4 * c,),
                p + 'mlp.fc2.weight': (c, 4 * c), p + 'mlp.fc2.bias': (c,),
            })
        if i < len(depths) - 1:
            layout[f'layers.{i}.downsample.reduction.weight'] = (2 * c, 4 * c)
            layout[f'layers.{i}.downsample.norm.weight'] = layout[f'layers.{i}.downsample.norm.bias'] = (4 * c,)
        layout[f'norm{i}.weight'] = layout[f'norm{i}.bias'] = (c,)
    return {f'backbone.{k}': v for k, v in layout.items()}


def swin_mmseg_layout(embed_dim, depths, num_heads, window):
    """mmsegmentation >= 0.17 Swin: stages / w_msa / ffn names, PatchMerging (nn.Unfold) at the end of stages 0-2."""
    layout = {'patch_embed.projection.weight': (embed_dim, 3, 4, 4), 'patch_embed.projection.bias': (embed_dim,),
              'patch_embed.norm.weight': (embed_dim,), 'patch_embed.norm.bias': (embed_dim,)}
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        c = embed_dim * 2 ** i
        for j in range(depth):
            p = f'stages.{i}.blocks.{j}.'
            layout.update({
                p + 'norm1.weight': (c,), p + 'norm1.bias': (c,),
                p + 'attn.w_msa.relative_position_bias_table': ((2 * window - 1) ** 2, heads),
                p + 'attn.w_msa.relative_position_index': (window ** 2, window ** 2),
                p + 'attn.w_msa.qkv.weight': (3 * c, c), p + 'attn.w_msa.qkv.bias': (3 * c,),
                p + 'attn.w_msa.proj.weight': (c, c), p + 'attn.w_msa.proj.bias': (c,),
                p + 'norm2.weight': (c,), p + 'norm2.bias': (c,),
                p + 'ffn.layers.0.0.weight': (4 * c, c), p + 'ffn.layers.0.0.bias': (4 * c,),
                p + 'ffn.layers.1.weight': (c, 4 * c), p + 'ffn.layers.1.bias': (c,),
            })
        if i < len(depths) - 1:
            layout[f'stages.{i}.downsample.reduction.weight'] = (2 * c, 4 * c)
            layout[f'stages.{i}.downsample.norm.weight'] = layout[f'stages.{i}.downsample.norm.bias'] = (4 * c,)
        layout[f'norm{i}.weight'] = layout[f'norm{i}.bias'] = (c,)
    return {f'backbone.{k}': v for k, v in layout.items()}


def hf_swin_layout(embed_dim, depths, num_heads, window):
    """The transformers 4.x names of the openmmlab/upernet-swin-* Hub files (their model.safetensors key lists)."""
    layout = {'embeddings.patch_embeddings.projection.weight': (embed_dim, 3, 4, 4),
              'embeddings.patch_embeddings.projection.bias': (embed_dim,),
              'embeddings.norm.weight': (embed_dim,), 'embeddings.norm.bias': (embed_dim,)}
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        c = embed_dim * 2 ** i
        for j in range(depth):
            p = f'encoder.layers.{i}.blocks.{j}.'
            layout.update({
                p + 'layernorm_before.weight': (c,), p + 'layernorm_before.bias': (c,),
                p + 'attention.self.relative_position_bias_table': ((2 * window - 1) ** 2, heads),
                p + 'attention.self.relative_position_index': (window ** 2, window ** 2),
                **{p + f'attention.self.{n}.weight': (c, c) for n in ('query', 'key', 'value')},
                **{p + f'attention.self.{n}.bias': (c,) for n in ('query', 'key', 'value')},
                p + 'attention.output.dense.weight': (c, c), p + 'attention.output.dense.bias': (c,),
                p + 'layernorm_after.weight': (c,), p + 'layernorm_after.bias': (c,),
                p + 'intermediate.dense.weight': (4 * c, c), p + 'intermediate.dense.bias': (4 * c,),
                p + 'output.dense.weight': (c, 4 * c), p + 'output.dense.bias': (c,),
            })
        if i < len(depths) - 1:
            layout[f'encoder.layers.{i}.downsample.reduction.weight'] = (2 * c, 4 * c)
            layout[f'encoder.layers.{i}.downsample.norm.weight'] = (4 * c,)
            layout[f'encoder.layers.{i}.downsample.norm.bias'] = (4 * c,)
        layout[f'hidden_states_norms.stage{i + 1}.weight'] = layout[f'hidden_states_norms.stage{i + 1}.bias'] = (c,)
    return {f'backbone.{k}': v for k, v in layout.items()}


def setr_mmseg_layout(variant, embed_dim, depth, grid, num_classes, channels=256, mla_channels=128,
                      aux_num_convs=2):
    """mmseg SETR (mmseg/models/backbones/vit.py, decode_heads/setr_*.py, necks/mla_neck.py): ViT 'layers'
    backbone, Naive/PUP SETRUPHead or MLA neck + head."""
    c = embed_dim
    layout = {'backbone.cls_token': (1, 1, c), 'backbone.pos_embed': (1, 1 + grid * grid, c),
              'backbone.patch_embed.projection.weight': (c, 3, 16, 16), 'backbone.patch_embed.projection.bias': (c,)}
    for i in range(depth):
        p = f'backbone.layers.{i}.'
        layout.update({
            p + 'ln1.weight': (c,), p + 'ln1.bias': (c,),
            p + 'attn.attn.in_proj_weight': (3 * c, c), p + 'attn.attn.in_proj_bias': (3 * c,),
            p + 'attn.attn.out_proj.weight': (c, c), p + 'attn.attn.out_proj.bias': (c,),
            p + 'ln2.weight': (c,), p + 'ln2.bias': (c,),
            p + 'ffn.layers.0.0.weight': (4 * c, c), p + 'ffn.layers.0.0.bias': (4 * c,),
            p + 'ffn.layers.1.weight': (c, 4 * c), p + 'ffn.layers.1.bias': (c,),
        })

    def up_head(prefix, num_convs, kernel):
        layout[f'{prefix}.norm.weight'] = layout[f'{prefix}.norm.bias'] = (c,)
        for k in range(num_convs):
            conv_module(layout, f'{prefix}.up_convs.{k}.0', c if k == 0 else channels, channels, kernel)
        layout[f'{prefix}.conv_seg.weight'] = (num_classes, channels, 1, 1)
        layout[f'{prefix}.conv_seg.bias'] = (num_classes,)

    if variant == 'naive':
        up_head('decode_head', 1, 1)
        for a in range(3):
            up_head(f'auxiliary_head.{a}', aux_num_convs, 1)
    elif variant == 'pup':
        up_head('decode_head', 4, 3)
        for a in range(3):
            up_head(f'auxiliary_head.{a}', aux_num_convs, 3)
    else:  # mla
        for level in range(4):
            layout[f'neck.norm.{level}.weight'] = layout[f'neck.norm.{level}.bias'] = (c,)
            conv_module(layout, f'neck.mla.channel_proj.{level}', c, channels, 1)
            conv_module(layout, f'neck.mla.feat_extract.{level}', channels, channels, 3)
            conv_module(layout, f'decode_head.up_convs.{level}.0', channels, mla_channels, 3)
            conv_module(layout, f'decode_head.up_convs.{level}.1', mla_channels, mla_channels, 3)
            layout[f'auxiliary_head.{level}.conv_seg.weight'] = (num_classes, channels, 1, 1)
            layout[f'auxiliary_head.{level}.conv_seg.bias'] = (num_classes,)
        layout['decode_head.conv_seg.weight'] = (num_classes, 4 * mla_channels, 1, 1)
        layout['decode_head.conv_seg.bias'] = (num_classes,)
    return layout


def random_tensors(layout, seed=0):
    """Random values in the dtypes of real checkpoints (int64 index buffers and BN counters)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.items():
        if key.endswith(INT_KEYS):
            out[key] = torch.randint(0, 100, shape, generator=g)
        elif key.endswith('running_var'):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith('relative_position_bias_table'):
            out[key] = torch.randn(shape, generator=g)
        elif len(shape) > 1:
            out[key] = torch.randn(shape, generator=g) / np.prod(shape[1:]) ** 0.5
        else:
            out[key] = torch.randn(shape, generator=g) * 0.2 + (1.0 if key.endswith('weight') else 0.0)
    return out


def meta_tensors(layout):
    return {k: torch.empty(s, device='meta', dtype=torch.int64 if k.endswith(INT_KEYS) else torch.float32)
            for k, s in layout.items()}


def mmcv_checkpoint(state_dict):
    """The mmcv runner's file: meta (with numpy values from the eval hook), state_dict, optimizer."""
    return {'meta': {'mmcv_version': '1.3.0', 'time': 'Mon May 31 11:25:42 2021', 'iter': 160000,
                     'CLASSES': ('wall', 'building', 'sky'), 'PALETTE': [[120, 120, 120], [180, 120, 120]],
                     'hook_msgs': {'best_score': np.float64(0.4441), 'best_iter': np.int64(144000)}},
            'state_dict': collections.OrderedDict(state_dict),
            'optimizer': {'state': {}, 'param_groups': [{'lr': 6e-5, 'betas': (0.9, 0.999), 'params': [0, 1]}]}}


# ------------------------------------------------------------------------------------------ tiny segmenters

ASMLP_TINY = dict(embed_dim=8, depths=(1, 1, 1, 1))
SWIN_TINY = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))
VIT_TINY = dict(embed_dim=32, depth=4, num_heads=2)
CLASSES = 5


def tiny_asmlp():
    backbone = timm.create_model('asmlp_tiny', features_only=True, **ASMLP_TINY)
    chans = [8, 16, 32, 64]
    return Segmenter(backbone, UPerHead(chans, channels=16, num_classes=CLASSES),
                     auxiliary_head=FCNHead(32, channels=8, num_classes=CLASSES, in_index=2))


def tiny_swin(embed_dim=24, channels=16, aux_channels=8, num_classes=CLASSES, **swin):
    backbone = SwinPyramid('swin_tiny_patch4_window7_224', **{**SWIN_TINY, 'embed_dim': embed_dim, **swin})
    chans = [embed_dim * 2 ** i for i in range(4)]
    return Segmenter(backbone, UPerHead(chans, channels=channels, num_classes=num_classes),
                     auxiliary_head=FCNHead(chans[2], channels=aux_channels, num_classes=num_classes, in_index=2))


def tiny_setr(variant):
    c = VIT_TINY['embed_dim']
    if variant == 'mla':
        backbone = ViTFeatures('vit_small_patch16_384', img_size=64, out_indices=(0, 1, 2, 3),
                               cls_token_in_blocks=False, **VIT_TINY)
        return Segmenter(backbone, SETRMLAHead((16,) * 4, channels=32, mla_channels=8, num_classes=CLASSES),
                         neck=MLANeck((c,) * 4, out_channels=16),
                         auxiliary_head=[FCNHead(16, channels=16, num_convs=0, kernel_size=1, in_index=i,
                                                 num_classes=CLASSES) for i in range(4)])
    backbone = ViTFeatures('vit_small_patch16_384', img_size=64, out_indices=(0, 1, 2, 3), **VIT_TINY)
    return Segmenter(backbone, SETRUPHead(c, channels=16, num_convs=4, up_scale=2, kernel_size=3, in_index=3,
                                          num_classes=CLASSES),
                     auxiliary_head=[SETRUPHead(c, channels=16, num_convs=2, up_scale=4, kernel_size=3, in_index=i,
                                                num_classes=CLASSES) for i in range(3)])


@pytest.fixture
def tiny_zoo(monkeypatch):
    """Make the zoo build tiny models for the given names (the CLI path is otherwise the real one)."""
    builders = {}

    def create_segmenter(name, *args, **kwargs):
        return builders[name]() if name in builders else real(name, *args, **kwargs)

    real = zoo.build_segmenter
    monkeypatch.setattr(zoo, 'build_segmenter', create_segmenter)
    return builders


def cli(src, model, out, force=False):
    return run_convert(argparse.Namespace(src=Path(src), model=model, out=Path(out), force=force))


def converted_model(out_dir, build):
    """A fresh tiny model with the written file loaded strictly (what a user of the output gets)."""
    model = build()
    model.load_state_dict(safetensors.torch.load_file(out_dir / 'model.safetensors'), strict=True)
    return model.eval()


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ------------------------------------------------------------------------------------------ AS-MLP

def test_asmlp_imagenet_training_checkpoint(tmp_path, tiny_zoo, capsys):
    tiny_zoo['upernet_asmlp_tiny'] = tiny_asmlp
    source = random_tensors(official_layout(**ASMLP_TINY))
    src = tmp_path / 'asmlp_tiny_patch4_shift5_224.pth'
    with throwaway_module('fake_yacs_for_convert.config', CfgNode=CfgNode):
        torch.save(asmlp_training_checkpoint(source), src)

    assert cli(src, 'upernet_asmlp_tiny', tmp_path / 'out') == 0
    assert 'upernet_asmlp_tiny from asmlp-imagenet (imagenet-backbone)' in capsys.readouterr().out
    config = json.loads((tmp_path / 'out' / 'config.json').read_text())
    assert config == {'model': 'upernet_asmlp_tiny', 'source_format': 'asmlp-imagenet',
                      'source_sha256': hashlib.sha256(src.read_bytes()).hexdigest(),
                      'converter_version': convert.CONVERTER_VERSION, 'kind': 'imagenet-backbone'}
    model = converted_model(tmp_path / 'out', tiny_asmlp)

    x = torch.randn(1, 3, 70, 94)
    with torch.no_grad():
        stages, _ = official_forward(x, source, ASMLP_TINY['depths'], 5)
        ours = model.backbone(x)
    # the seg norms norm0..3 stay at their init (GroupNorm(1, C), weight 1, bias 0), as in the official seg training
    errors = [rel_err(o, F.group_norm(s, 1)) for o, s in zip(ours, stages)]
    assert max(errors) <= 1e-5, errors
    written = safetensors.torch.load_file(tmp_path / 'out' / 'model.safetensors')
    assert not any(k.startswith(('backbone.norm.', 'backbone.head.')) for k in written)
    assert torch.equal(written['backbone.norm0.weight'], torch.ones(8))
    assert torch.equal(written['backbone.norm3.bias'], torch.zeros(64))


def test_asmlp_mmseg_upernet(tmp_path, tiny_zoo):
    tiny_zoo['upernet_asmlp_tiny'] = tiny_asmlp
    source = random_tensors(asmlp_mmseg_layout(**ASMLP_TINY, channels=16, aux_channels=8, num_classes=CLASSES))
    src = tmp_path / 'upernet_asmlp_tiny_ade20k.pth'
    torch.save(mmcv_checkpoint(source), src)
    assert detect_format(source) == 'asmlp-mmseg-upernet'
    assert cli(src, 'upernet_asmlp_tiny', tmp_path / 'out') == 0
    model = converted_model(tmp_path / 'out', tiny_asmlp)

    x = torch.randn(1, 3, 64, 76)
    backbone = {k[len('backbone.'):]: v for k, v in source.items() if k.startswith('backbone.')}
    # the seg checkpoint has no classifier, which official_forward also runs
    dummy_head = {'norm.weight': torch.ones(64), 'norm.bias': torch.zeros(64),
                  'head.weight': torch.zeros(1, 64), 'head.bias': torch.zeros(1)}
    with torch.no_grad():
        stages, _ = official_forward(x, {**backbone, **dummy_head}, ASMLP_TINY['depths'], 5)
        reference = [F.group_norm(s, 1, backbone[f'norm{i}.weight'], backbone[f'norm{i}.bias'])
                     for i, s in enumerate(stages)]
        ours = model.backbone(x)
    assert max(rel_err(o, r) for o, r in zip(ours, reference)) <= 1e-5
    written = safetensors.torch.load_file(tmp_path / 'out' / 'model.safetensors')
    assert set(written) == set(source)  # the official mmseg layout is this project's layout, key for key
    for k in source:
        assert torch.equal(written[k], source[k]), k


# ------------------------------------------------------------------------------------------ Swin

def unfold_merging(x_nchw, norm_w, norm_b, reduction_w):
    """mmseg's PatchMerging: nn.Unfold(2, stride 2) -> LayerNorm(4C) -> Linear(4C, 2C)."""
    x = nn.Unfold(kernel_size=2, stride=2)(x_nchw).transpose(1, 2)  # B, L, 4C
    x = F.layer_norm(x, (x.shape[-1],), norm_w, norm_b)
    return F.linear(x, reduction_w)


def official_merging(x_nchw, norm_w, norm_b, reduction_w):
    """The original Swin PatchMerging: concat x0 (0::2, 0::2), x1 (1::2, 0::2), x2 (0::2, 1::2), x3 (1::2, 1::2)."""
    x = x_nchw.permute(0, 2, 3, 1)
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1).flatten(1, 2)
    x = F.layer_norm(x, (x.shape[-1],), norm_w, norm_b)
    return F.linear(x, reduction_w)


def our_merging(model, stage, x_nchw):
    """Our patch merging at the start of ``stage`` (timm), on NHWC input, flattened like the references."""
    return model.backbone.layers[stage].downsample(x_nchw.permute(0, 2, 3, 1)).flatten(1, 2)


def check_swin_block_keys(written, source_block, target_block, names):
    for src_name, dst_name in names.items():
        assert torch.equal(written[target_block + dst_name], source_block[src_name]), (target_block, dst_name)


SWIN_BLOCK_OFFICIAL = {n: n for n in ('norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.qkv.bias',
                                      'attn.proj.weight', 'attn.proj.bias', 'attn.relative_position_bias_table',
                                      'norm2.weight', 'norm2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias',
                                      'mlp.fc2.weight', 'mlp.fc2.bias')}
SWIN_BLOCK_MMSEG = {
    'norm1.weight': 'norm1.weight', 'norm1.bias': 'norm1.bias', 'norm2.weight': 'norm2.weight',
    'norm2.bias': 'norm2.bias', 'attn.w_msa.qkv.weight': 'attn.qkv.weight', 'attn.w_msa.qkv.bias': 'attn.qkv.bias',
    'attn.w_msa.proj.weight': 'attn.proj.weight', 'attn.w_msa.proj.bias': 'attn.proj.bias',
    'attn.w_msa.relative_position_bias_table': 'attn.relative_position_bias_table',
    'ffn.layers.0.0.weight': 'mlp.fc1.weight', 'ffn.layers.0.0.bias': 'mlp.fc1.bias',
    'ffn.layers.1.weight': 'mlp.fc2.weight', 'ffn.layers.1.bias': 'mlp.fc2.bias',
}


@pytest.mark.parametrize('fmt', ['swin-official-upernet', 'mmseg-swin-upernet'])
def test_swin_mmseg_and_official_upernet(tmp_path, tiny_zoo, fmt):
    tiny_zoo['upernet_swin_tiny'] = tiny_swin
    official = fmt == 'swin-official-upernet'
    backbone_layout = (swin_official_layout if official else swin_mmseg_layout)(**SWIN_TINY, window=7)
    chans = [24, 48, 96, 192]
    source = random_tensors({**backbone_layout, **upernet_layout(chans, 16, 8, CLASSES)})
    src = tmp_path / f'{fmt}.pth'
    torch.save(mmcv_checkpoint(source), src)
    assert detect_format(source) == fmt
    assert cli(src, 'upernet_swin_tiny', tmp_path / 'out') == 0
    written = safetensors.torch.load_file(tmp_path / 'out' / 'model.safetensors')
    model = converted_model(tmp_path / 'out', tiny_swin)

    # per key: blocks renamed, heads and output norms as they are, index buffers dropped
    stage_key, names = ('layers', SWIN_BLOCK_OFFICIAL) if official else ('stages', SWIN_BLOCK_MMSEG)
    for i, depth in enumerate(SWIN_TINY['depths']):
        for j in range(depth):
            block = {k.split(f'backbone.{stage_key}.{i}.blocks.{j}.')[1]: v for k, v in source.items()
                     if k.startswith(f'backbone.{stage_key}.{i}.blocks.{j}.')}
            check_swin_block_keys(written, block, f'backbone.layers.{i}.blocks.{j}.', names)
        for p in ('weight', 'bias'):
            assert torch.equal(written[f'backbone.norm{i}.{p}'], source[f'backbone.norm{i}.{p}'])
    proj = 'proj' if official else 'projection'
    assert torch.equal(written['backbone.patch_embed.proj.weight'], source[f'backbone.patch_embed.{proj}.weight'])
    assert torch.equal(written['backbone.patch_embed.norm.bias'], source['backbone.patch_embed.norm.bias'])
    assert not any('relative_position_index' in k or 'layers.0.downsample' in k for k in written)
    for k in source:
        if k.startswith(('decode_head.', 'auxiliary_head.')):
            assert torch.equal(written[k], source[k]), k

    # numerically: each source patch merging (end of stage N) equals ours (start of stage N + 1)
    reference_merging = official_merging if official else unfold_merging
    for n in range(3):
        c = chans[n]
        x = torch.randn(2, c, 6, 10)
        p = f'backbone.{stage_key}.{n}.downsample.'
        merge = (source[p + 'norm.weight'], source[p + 'norm.bias'], source[p + 'reduction.weight'])
        with torch.no_grad():
            ref = reference_merging(x, *merge)
            ours = our_merging(model, n + 1, x)
        assert rel_err(ours, ref) <= 1e-5
        if official:  # no channel reorder for the original layout
            assert torch.equal(written[f'backbone.layers.{n + 1}.downsample.reduction.weight'], merge[2])
        else:  # the unfold order is really different: used as is, the source weights give other numbers
            with torch.no_grad():
                as_is = official_merging(x, *merge)
            assert rel_err(as_is, ref) > 1e-2


def test_unfold_reorder_on_a_known_permutation():
    c = 3
    # unfold channel 4c + 2i + j  <->  Swin position k = (0,0), (1,0), (0,1), (1,1) -> k * C + c
    unfold_labels = torch.tensor([10 * ch + (2 * i + j) for ch in range(c) for i in range(2) for j in range(2)])
    swin = unfold_to_swin_order(unfold_labels.float(), 0)
    expected = [10 * ch + (2 * i + j) for (i, j) in [(0, 0), (1, 0), (0, 1), (1, 1)] for ch in range(c)]
    assert swin.long().tolist() == expected
    weight = torch.arange(2 * 4 * c).reshape(2, 4 * c).float()
    assert torch.equal(unfold_to_swin_order(weight, 1)[1], unfold_to_swin_order(weight[1], 0))


def test_hf_upernet_swin_fixture(tmp_path, tiny_zoo):
    """transformers 4.46.3 wrote this file and its logits (tools/make_swin_upernet_fixture.py); our converted
    segmenter reproduces the logits."""
    config = json.loads((FIXTURE / 'config.json').read_text())
    swin, labels = config['backbone_config'], len(config['id2label'])

    def build():
        return tiny_swin(embed_dim=swin['embed_dim'], depths=tuple(swin['depths']), num_heads=tuple(swin['num_heads']),
                         window_size=swin['window_size'], mlp_ratio=swin['mlp_ratio'],
                         channels=config['hidden_size'], aux_channels=config['auxiliary_channels'],
                         num_classes=labels)

    tiny_zoo['upernet_swin_tiny'] = build
    src = FIXTURE / 'model.safetensors'
    hub = safetensors.torch.load_file(src)
    # the Hub files' legacy layout, written by transformers 4.x itself
    expected = {**hf_swin_layout(swin['embed_dim'], swin['depths'], swin['num_heads'], swin['window_size']),
                **upernet_layout([swin['embed_dim'] * 2 ** i for i in range(4)], config['hidden_size'],
                                 config['auxiliary_channels'], labels, bn='batch_norm', cls='classifier')}
    assert {k: tuple(v.shape) for k, v in hub.items()} == expected
    assert hub['backbone.encoder.layers.0.blocks.0.attention.self.relative_position_index'].dtype == torch.int64
    assert hub['decode_head.bottleneck.batch_norm.num_batches_tracked'].dtype == torch.int64

    assert cli(src, 'upernet_swin_tiny', tmp_path / 'out') == 0
    assert json.loads((tmp_path / 'out' / 'config.json').read_text())['source_format'] == 'hf-upernet-swin'
    model = converted_model(tmp_path / 'out', build)
    reference = safetensors.torch.load_file(FIXTURE / 'reference.safetensors')
    errors = {}
    for size in ('64x64', '70x94'):
        with torch.no_grad():
            ours = model.encode_decode(reference[f'input_{size}'])
        errors[size] = rel_err(ours, reference[f'logits_{size}'])
    assert max(errors.values()) <= 1e-4, errors


# ------------------------------------------------------------------------------------------ SETR

def mmseg_vit_block(x, sd, p, num_heads):
    """mmseg TransformerEncoderLayer (pre-norm): x + MHA(ln1(x)), then x + FFN(ln2(x)); nn.MultiheadAttention
    holds the packed in_proj [q; k; v] exactly as in the checkpoint."""
    c = x.shape[-1]
    mha = nn.MultiheadAttention(c, num_heads, batch_first=True)
    mha.load_state_dict({'in_proj_weight': sd[p + 'attn.attn.in_proj_weight'],
                         'in_proj_bias': sd[p + 'attn.attn.in_proj_bias'],
                         'out_proj.weight': sd[p + 'attn.attn.out_proj.weight'],
                         'out_proj.bias': sd[p + 'attn.attn.out_proj.bias']})
    h = F.layer_norm(x, (c,), sd[p + 'ln1.weight'], sd[p + 'ln1.bias'], 1e-6)
    x = x + mha(h, h, h, need_weights=False)[0]
    h = F.layer_norm(x, (c,), sd[p + 'ln2.weight'], sd[p + 'ln2.bias'], 1e-6)
    h = F.linear(F.gelu(F.linear(h, sd[p + 'ffn.layers.0.0.weight'], sd[p + 'ffn.layers.0.0.bias'])),
                 sd[p + 'ffn.layers.1.weight'], sd[p + 'ffn.layers.1.bias'])
    return x + h


SETR_BLOCK = {'ln1.weight': 'norm1.weight', 'ln1.bias': 'norm1.bias', 'ln2.weight': 'norm2.weight',
              'ln2.bias': 'norm2.bias', 'attn.attn.in_proj_weight': 'attn.qkv.weight',
              'attn.attn.in_proj_bias': 'attn.qkv.bias', 'attn.attn.out_proj.weight': 'attn.proj.weight',
              'attn.attn.out_proj.bias': 'attn.proj.bias', 'ffn.layers.0.0.weight': 'mlp.fc1.weight',
              'ffn.layers.0.0.bias': 'mlp.fc1.bias', 'ffn.layers.1.weight': 'mlp.fc2.weight',
              'ffn.layers.1.bias': 'mlp.fc2.bias'}


@pytest.mark.parametrize('variant', ['mla', 'pup'])
def test_mmseg_setr(tmp_path, tiny_zoo, variant):
    name = f'setr_{variant}_vit_large'
    tiny_zoo[name] = lambda: tiny_setr(variant)
    c, depth = VIT_TINY['embed_dim'], VIT_TINY['depth']
    layout = setr_mmseg_layout(variant, c, depth, grid=4, num_classes=CLASSES, channels=16, mla_channels=8)
    source = random_tensors(layout)
    src = tmp_path / f'setr_{variant}_512x512_160k_b16_ade20k.pth'
    torch.save(mmcv_checkpoint(source), src)
    assert detect_format(source) == 'mmseg-setr'
    assert cli(src, name, tmp_path / 'out') == 0
    written = safetensors.torch.load_file(tmp_path / 'out' / 'model.safetensors')
    model = converted_model(tmp_path / 'out', lambda: tiny_setr(variant))

    # every source tensor lands in its target key, unchanged
    targets = {'backbone.cls_token': 'backbone.cls_token', 'backbone.pos_embed': 'backbone.pos_embed',
               'backbone.patch_embed.projection.weight': 'backbone.patch_embed.proj.weight',
               'backbone.patch_embed.projection.bias': 'backbone.patch_embed.proj.bias'}
    for i in range(depth):
        targets.update({f'backbone.layers.{i}.{s}': f'backbone.blocks.{i}.{t}' for s, t in SETR_BLOCK.items()})
    targets.update({k: k for k in source if not k.startswith('backbone.')})  # neck and heads keep their names
    assert set(targets) == set(source) and set(targets.values()) == set(written)
    for s, t in targets.items():
        assert torch.equal(written[t], source[s]), (s, t)

    # the packed in_proj works as timm's qkv: each converted block equals mmseg's block on the source tensors
    tokens = torch.randn(2, 17, c)
    with torch.no_grad():
        for i in range(depth):
            ref = mmseg_vit_block(tokens, source, f'backbone.layers.{i}.', VIT_TINY['num_heads'])
            assert rel_err(model.backbone.blocks[i](tokens), ref) <= 1e-5
        logits = model(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, CLASSES, 64, 64) and torch.isfinite(logits).all()


# ------------------------------------------------------------------------------------------ zoo-sized layouts

ASMLP_ZOO = {'upernet_asmlp_tiny': (96, (2, 2, 6, 2)), 'upernet_asmlp_small': (96, (2, 2, 18, 2)),
             'upernet_asmlp_base': (128, (2, 2, 18, 2))}
SWIN_ZOO = {'upernet_swin_tiny': (96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
            'upernet_swin_small': (96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
            'upernet_swin_base': (128, (2, 2, 18, 2), (4, 8, 16, 32), 7),
            'upernet_swin_base_w12_in22k': (128, (2, 2, 18, 2), (4, 8, 16, 32), 12),
            'upernet_swin_large_w12_in22k': (192, (2, 2, 18, 2), (6, 12, 24, 48), 12)}
SWIN_LAYOUTS = {'hf-upernet-swin': (hf_swin_layout, 'batch_norm', 'classifier'),
                'swin-official-upernet': (swin_official_layout, 'bn', 'conv_seg'),
                'mmseg-swin-upernet': (swin_mmseg_layout, 'bn', 'conv_seg')}


def zoo_layout(name, fmt):
    if name in ASMLP_ZOO:
        embed, depths = ASMLP_ZOO[name]
        if fmt == 'asmlp-imagenet':
            return official_layout(embed, depths)
        return asmlp_mmseg_layout(embed, depths, 512, 256, 150)
    if name in SWIN_ZOO:
        embed, depths, heads, window = SWIN_ZOO[name]
        backbone, bn, cls = SWIN_LAYOUTS[fmt]
        return {**backbone(embed, depths, heads, window),
                **upernet_layout([embed * 2 ** i for i in range(4)], 512, 256, 150, bn=bn, cls=cls)}
    variant = name.split('_')[1]
    return setr_mmseg_layout(variant, 1024, 24, grid=32, num_classes=150, aux_num_convs=2)


ZOO_CASES = ([(n, f) for n in ASMLP_ZOO for f in ('asmlp-imagenet', 'asmlp-mmseg-upernet')]
             + [(n, f) for n in SWIN_ZOO for f in SWIN_LAYOUTS]
             + [(f'setr_{v}_vit_large', 'mmseg-setr') for v in ('naive', 'pup', 'mla')])


@pytest.mark.parametrize('name,fmt', ZOO_CASES)
def test_documented_layouts_load_strictly_into_the_zoo_models(name, fmt):
    source = meta_tensors(zoo_layout(name, fmt))
    converted = convert_state_dict(source, name)
    assert converted.source_format == fmt
    with torch.device('meta'):
        model = zoo.build_segmenter(name)
    left = load_into(model, converted.state_dict, converted.kind)
    if fmt == 'asmlp-imagenet':
        assert converted.kind == 'imagenet-backbone'
        assert left and all(re.match(r'(decode_head|auxiliary_head)\.|backbone\.norm[0-3]\.', k) for k in left)
        assert {f'backbone.norm{i}.weight' for i in range(4)} <= set(left)
    else:
        assert converted.kind == 'ade20k' and left == []


# ------------------------------------------------------------------------------------------ detection, errors

def test_detect_format_and_unknown_layout():
    assert detect_format(meta_tensors(official_layout(8, (1, 1, 1, 1)))) == 'asmlp-imagenet'
    ddp = {f'module.{k}': v for k, v in meta_tensors(swin_official_layout(8, (2, 2, 2, 2), (1, 1, 1, 1), 7)).items()}
    assert detect_format(ddp) == 'swin-official-upernet'
    with torch.device('meta'):
        assert detect_format(tiny_swin().state_dict()) == 'native'
        assert detect_format(tiny_setr('pup').state_dict()) == 'native'
        assert detect_format(tiny_asmlp().state_dict()) == 'asmlp-mmseg-upernet'  # the same layout
    with pytest.raises(ConversionError, match=r'unknown checkpoint layout.*keys: foo\.weight, bar\.bias'):
        detect_format({'foo.weight': torch.zeros(1), 'bar.bias': torch.zeros(1)})


def test_wrong_family_is_refused_before_loading():
    swin = meta_tensors(swin_mmseg_layout(8, (2, 2, 2, 2), (1, 1, 1, 1), 7))
    with pytest.raises(ConversionError, match=r'upernet\.pth is a Swin checkpoint \(mmseg-swin-upernet\), '
                                              r'upernet_asmlp_tiny is AS-MLP'):
        convert_state_dict(swin, 'upernet_asmlp_tiny', source='upernet.pth')
    with pytest.raises(ConversionError,
                       match=r'is an AS-MLP checkpoint \(asmlp-imagenet\), setr_pup_vit_large is SETR'):
        convert_state_dict(meta_tensors(official_layout(8, (1, 1, 1, 1))), 'setr_pup_vit_large')


def test_load_into_names_missing_unexpected_and_mismatched_keys():
    with torch.device('meta'):
        model = tiny_asmlp()
    state = dict(meta_tensors(asmlp_mmseg_layout(**ASMLP_TINY, channels=16, aux_channels=8, num_classes=CLASSES)))
    del state['backbone.layers.2.blocks.0.mlp.fc1.bias'], state['decode_head.conv_seg.bias']
    state['backbone.extra.weight'] = torch.empty(3, device='meta')
    state['decode_head.conv_seg.weight'] = torch.empty(19, 16, 1, 1, device='meta')
    with pytest.raises(CheckpointMismatchError) as info:
        load_into(model, state, 'ade20k')
    message = str(info.value)
    assert '\n' not in message
    assert ('2 missing keys: backbone.layers.2.blocks.0.mlp.fc1.bias (expected (128,)), '
            'decode_head.conv_seg.bias (expected (5,))') in message
    assert '1 unexpected key: backbone.extra.weight (found (3,))' in message
    assert 'decode_head.conv_seg.weight: expected (5, 16, 1, 1), found (19, 16, 1, 1)' in message
    assert info.value.missing == ['backbone.layers.2.blocks.0.mlp.fc1.bias', 'decode_head.conv_seg.bias']
    # an ImageNet kind tolerates only the heads and the seg norms
    backbone_only = {k: v for k, v in meta_tensors(official_layout(**ASMLP_TINY)).items()
                     if not k.startswith(('norm.', 'head.'))}
    with torch.device('meta'):
        model = tiny_asmlp()
    with pytest.raises(CheckpointMismatchError, match='1 missing key: backbone.patch_embed.norm.bias'):
        load_into(model, {f'backbone.{k}': v for k, v in backbone_only.items() if k != 'patch_embed.norm.bias'},
                  'imagenet-backbone')


def test_long_lists_are_cut_with_a_count():
    with torch.device('meta'):
        model = tiny_asmlp()
    with pytest.raises(CheckpointMismatchError, match=r'\d+ missing keys: .* and \d+ more'):
        load_into(model, {}, 'ade20k')


def _one_line_error(capsys):
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err and '\n' not in err and 'Traceback' not in err, captured.err
    return err


def test_cli_errors(tmp_path, tiny_zoo, capsys):
    tiny_zoo['upernet_asmlp_tiny'] = tiny_asmlp
    layout = asmlp_mmseg_layout(**ASMLP_TINY, channels=16, aux_channels=8, num_classes=CLASSES)
    out = tmp_path / 'out'

    missing = random_tensors(layout)
    del missing['backbone.layers.1.blocks.0.axial_shift.conv2_2.weight']
    torch.save(mmcv_checkpoint(missing), tmp_path / 'missing.pth')
    assert cli(tmp_path / 'missing.pth', 'upernet_asmlp_tiny', out) == 1
    assert '1 missing key: backbone.layers.1.blocks.0.axial_shift.conv2_2.weight (expected (16, 16, 1, 1))' \
        in _one_line_error(capsys)

    other_classes = random_tensors({**layout, 'decode_head.conv_seg.weight': (19, 16, 1, 1),
                                    'decode_head.conv_seg.bias': (19,)})
    torch.save(mmcv_checkpoint(other_classes), tmp_path / 'cityscapes.pth')
    assert cli(tmp_path / 'cityscapes.pth', 'upernet_asmlp_tiny', out) == 1
    err = _one_line_error(capsys)
    assert 'decode_head.conv_seg.weight: expected (5, 16, 1, 1), found (19, 16, 1, 1)' in err
    assert 'decode_head.conv_seg.bias: expected (5,), found (19,)' in err

    torch.save({'state_dict': {'encoder.conv1.weight': torch.zeros(2, 3, 7, 7)}}, tmp_path / 'resnet.pth')
    assert cli(tmp_path / 'resnet.pth', 'upernet_asmlp_tiny', out) == 1
    assert 'resnet.pth: unknown checkpoint layout' in _one_line_error(capsys)

    (tmp_path / 'broken.pth').write_bytes(b'PK\x03\x04' + b'\0' * 40)
    assert cli(tmp_path / 'broken.pth', 'upernet_asmlp_tiny', out) == 1
    assert 'broken.pth: truncated or corrupt' in _one_line_error(capsys)

    assert cli(tmp_path / 'missing.pth', 'upernet_asmlp_huge', out) == 1
    assert "unknown model 'upernet_asmlp_huge'" in _one_line_error(capsys)
    assert not out.exists()  # nothing written on failure


def test_cli_force_and_determinism(tmp_path, tiny_zoo, capsys):
    tiny_zoo['upernet_asmlp_tiny'] = tiny_asmlp
    src = tmp_path / 'asmlp_tiny_patch4_shift5_224.pth'
    torch.save({'model': random_tensors(official_layout(**ASMLP_TINY))}, src)
    out = tmp_path / 'out'
    assert cli(src, 'upernet_asmlp_tiny', out) == 0
    first = (out / 'model.safetensors').read_bytes()
    capsys.readouterr()
    assert cli(src, 'upernet_asmlp_tiny', out) == 1
    assert 'model.safetensors exists; pass --force to overwrite it' in _one_line_error(capsys)
    assert (out / 'model.safetensors').read_bytes() == first  # untouched
    assert cli(src, 'upernet_asmlp_tiny', out, force=True) == 0
    # heads left at init are seeded: the same source gives the same tensors
    again = safetensors.torch.load_file(out / 'model.safetensors')
    before = safetensors.torch.load(first)
    assert again.keys() == before.keys() and all(torch.equal(again[k], before[k]) for k in again)
    assert sorted(p.name for p in out.iterdir()) == ['config.json', 'model.safetensors']


def test_converted_file_converts_again_as_native(tmp_path, tiny_zoo):
    tiny_zoo['upernet_asmlp_tiny'] = tiny_asmlp
    src = tmp_path / 'asmlp_tiny_patch4_shift5_224.pth'
    torch.save({'model': random_tensors(official_layout(**ASMLP_TINY))}, src)
    assert cli(src, 'upernet_asmlp_tiny', tmp_path / 'a') == 0
    assert cli(tmp_path / 'a' / 'model.safetensors', 'upernet_asmlp_tiny', tmp_path / 'b') == 0
    config = json.loads((tmp_path / 'b' / 'config.json').read_text())
    assert config['source_format'] == 'native' and config['kind'] == 'imagenet-backbone'
    a = safetensors.torch.load_file(tmp_path / 'a' / 'model.safetensors')
    b = safetensors.torch.load_file(tmp_path / 'b' / 'model.safetensors')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _module_cli():
    """``python -m asmlp convert`` once asmlp/__main__.py wires the sub-command in, else ``python -m asmlp.convert``."""
    from asmlp.__main__ import build_parser
    try:
        build_parser().parse_args(['convert', 'x', '--model', 'm', '--out', 'o'])
    except SystemExit:
        return [sys.executable, '-m', 'asmlp.convert']
    return [sys.executable, '-m', 'asmlp', 'convert']


def test_command_line_wrong_architecture(tmp_path):
    """A real process: one line on stderr, non-zero exit, no traceback (the Swin fixture for an AS-MLP model)."""
    out = tmp_path / 'out'
    result = subprocess.run(_module_cli() + [str(FIXTURE / 'model.safetensors'), '--model', 'upernet_asmlp_tiny',
                                             '--out', str(out)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1, result.stderr
    err = result.stderr.strip()
    assert '\n' not in err and 'Traceback' not in err
    assert 'model.safetensors is a Swin checkpoint (hf-upernet-swin), upernet_asmlp_tiny is AS-MLP' in err
    assert not out.exists()
