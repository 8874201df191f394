"""ViTFeatures (SETR's plain ViT backbone) against independent re-statements of ViT / mmseg's ViT."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from asmlp.models.vit import SETR_VIT_CFGS, ViTFeatures, mmseg_vit_to_timm

TINY = dict(model_name='vit_small_patch16_384', embed_dim=32, depth=4, num_heads=2)


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere (LN affine too), a large position embedding so its resize matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if name.endswith(('pos_embed', 'cls_token')):
                p.copy_(noise)
            elif 'ln' in name.split('.')[-2] or 'norm' in name:
                p.copy_((1. if name.endswith('weight') else 0.) + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return module


def _tiny(patch_size=16, img_size=128, seed=0, **kwargs) -> ViTFeatures:
    kwargs = {**TINY, 'patch_size': patch_size, 'img_size': img_size, **kwargs}
    return _randomize(ViTFeatures(**kwargs), seed).double().eval()


# ---- functional reference: ViT written out with explicit ops (arXiv 2010.11929, mmseg semantics) ----

def _ln(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _gelu(x):  # exact (erf) GELU
    return 0.5 * x * (1. + torch.erf(x / math.sqrt(2.)))


def _softmax(s):
    e = torch.exp(s - s.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


def _params_from_timm(sd, depth):
    layers = [{n: sd[f'blocks.{i}.{k}'] for n, k in (
        ('ln1_w', 'norm1.weight'), ('ln1_b', 'norm1.bias'), ('qkv_w', 'attn.qkv.weight'), ('qkv_b', 'attn.qkv.bias'),
        ('proj_w', 'attn.proj.weight'), ('proj_b', 'attn.proj.bias'), ('ln2_w', 'norm2.weight'),
        ('ln2_b', 'norm2.bias'), ('fc1_w', 'mlp.fc1.weight'), ('fc1_b', 'mlp.fc1.bias'), ('fc2_w', 'mlp.fc2.weight'),
        ('fc2_b', 'mlp.fc2.bias'))} for i in range(depth)]
    return dict(patch_w=sd['patch_embed.proj.weight'], patch_b=sd['patch_embed.proj.bias'], cls=sd['cls_token'],
                pos=sd['pos_embed'], layers=layers)


def reference_layers(p, x, patch, heads, grid, cls_in_blocks, out_indices, pos_mode='bilinear', antialias=False):
    B, _, H, W = x.shape
    x = F.pad(x, (0, -W % patch, 0, -H % patch))  # right/bottom zeros to a multiple of the patch
    t = F.conv2d(x, p['patch_w'], p['patch_b'], stride=patch)
    h, w = t.shape[-2:]
    C = t.shape[1]
    t = t.flatten(2).transpose(1, 2)
    pos_cls, pos_grid = p['pos'][:, :1], p['pos'][:, 1:]
    if (h, w) != tuple(grid):
        g = pos_grid.reshape(1, grid[0], grid[1], C).permute(0, 3, 1, 2)
        g = F.interpolate(g, size=(h, w), mode=pos_mode, align_corners=False, antialias=antialias)
        pos_grid = g.flatten(2).transpose(1, 2)
    t = t + pos_grid
    if cls_in_blocks:
        t = torch.cat([(p['cls'] + pos_cls).expand(B, -1, -1), t], dim=1)
    d = C // heads
    outs = []
    for i, L in enumerate(p['layers']):
        y = _ln(t, L['ln1_w'], L['ln1_b'])
        q, k, v = (z.reshape(B, -1, heads, d).transpose(1, 2) for z in (y @ L['qkv_w'].T + L['qkv_b']).split(C, -1))
        o = (_softmax(q @ k.transpose(-1, -2) / math.sqrt(d)) @ v).transpose(1, 2).reshape(B, -1, C)
        t = t + o @ L['proj_w'].T + L['proj_b']
        y = _ln(t, L['ln2_w'], L['ln2_b'])
        t = t + _gelu(y @ L['fc1_w'].T + L['fc1_b']) @ L['fc2_w'].T + L['fc2_b']
        if i in out_indices:
            outs.append(t[:, int(cls_in_blocks):].reshape(B, h, w, C).permute(0, 3, 1, 2))
    return outs


# timm resizes the position grid in float32 (also for a float64 model), hence 1e-6, not 1e-12
TOL = 1e-6


def _max_rel(a, b):
    return max(((x - y).abs().max() / y.abs().max()).item() for x, y in zip(a, b))


@pytest.mark.parametrize('cls_in_blocks', [True, False])
@pytest.mark.parametrize('patch,img_size,hw', [
    (16, 128, (128, 128)),  # native grid 8x8
    (16, 128, (96, 160)),   # 6x10: H shrinks, W grows
    (16, 128, (70, 100)),   # padded to 80x112 -> 5x7
    (8, 64, (40, 72)),      # patch 8: 8x8 -> 5x9
])
def test_layers_match_functional_reference(cls_in_blocks, patch, img_size, hw):
    out_indices = (0, 2, 3)
    model = _tiny(patch, img_size, out_indices=out_indices, cls_token_in_blocks=cls_in_blocks)
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        outs = model(x)
    p = _params_from_timm(model.state_dict(), 4)
    grid = (img_size // patch,) * 2
    ref = reference_layers(p, x, patch, 2, grid, cls_in_blocks, out_indices)
    expected_hw = (math.ceil(hw[0] / patch), math.ceil(hw[1] / patch))
    assert [o.shape for o in outs] == [(2, 32, *expected_hw)] * 3
    assert _max_rel(outs, ref) < TOL
    other = reference_layers(p, x, patch, 2, grid, not cls_in_blocks, out_indices)
    assert _max_rel(outs, other) > 1e-3  # the cls flag changes the features
    if expected_hw != grid:  # the test can tell the resize mode apart
        assert _max_rel(outs, reference_layers(p, x, patch, 2, grid, cls_in_blocks, out_indices, 'bicubic')) > 1e-3
        if expected_hw[0] < grid[0]:  # downsampling: antialiasing would change it as well
            aa = reference_layers(p, x, patch, 2, grid, cls_in_blocks, out_indices, antialias=True)
            assert _max_rel(outs, aa) > 1e-3


@pytest.mark.parametrize('fused', [True, False])
def test_fused_attn_switch_and_pruning(fused):
    model = _tiny(out_indices=(1,), fused_attn=fused)
    assert len(model.blocks) == 2 and model.out_indices == (1,)
    assert all(blk.attn.fused_attn is fused for blk in model.blocks)
    x = torch.randn(1, 3, 80, 48, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
    ref = reference_layers(_params_from_timm(model.state_dict(), 2), x, 16, 2, (8, 8), True, (1,))
    assert _max_rel(out, ref) < TOL


def test_out_indices_normalised():
    model = ViTFeatures(**TINY, img_size=64, out_indices=(-1, 1))
    assert model.out_indices == (1, 3) and len(model.blocks) == 4
    assert model.out_channels == [32, 32] and model.feature_info.reduction() == [16, 16]
    for bad in [(4,), (1, -3), ()]:
        with pytest.raises(ValueError, match='out_indices'):
            ViTFeatures(**TINY, img_size=64, out_indices=bad)


# ---- mmseg layout, built independently from the documented key names (torch's MultiheadAttention) ----

class _MmsegLayer(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = nn.Module()
        self.ffn.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.)), nn.Linear(4 * dim, dim), nn.Dropout(0.))

    def forward(self, x):
        y = self.ln1(x)
        x = x + self.attn.attn(y, y, y, need_weights=False)[0]
        return x + self.ffn.layers(self.ln2(x))


class _MmsegViT(nn.Module):
    """mmseg ``VisionTransformer`` forward (corner padding, cls concat, pos resize when the token count differs)."""

    def __init__(self, dim=32, depth=4, heads=2, patch=16, grid=8):
        super().__init__()
        self.patch, self.grid = patch, grid
        self.patch_embed = nn.Module()
        self.patch_embed.projection = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.layers = nn.ModuleList(_MmsegLayer(dim, heads) for _ in range(depth))

    def forward(self, x, with_cls_token, out_indices):
        x = F.pad(x, (0, -x.shape[-1] % self.patch, 0, -x.shape[-2] % self.patch))
        x = self.patch_embed.projection(x)
        hw = x.shape[-2:]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        pos = self.pos_embed
        if x.shape[1] != pos.shape[1]:
            g = pos[:, 1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
            g = F.interpolate(g, size=hw, mode='bilinear', align_corners=False)
            pos = torch.cat([pos[:, :1], g.flatten(2).transpose(1, 2)], dim=1)
        x = x + pos
        if not with_cls_token:
            x = x[:, 1:]
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in out_indices:
                out = x[:, 1:] if with_cls_token else x
                outs.append(out.reshape(out.shape[0], *hw, -1).permute(0, 3, 1, 2))
        return outs


@pytest.mark.parametrize('setr', ['pup', 'mla'])
def test_mmseg_checkpoint_converts_and_matches(setr):
    cls_in_blocks = SETR_VIT_CFGS[setr]['cls_token_in_blocks']
    out_indices = (0, 2, 3) if cls_in_blocks else (1, 3)
    mm = _randomize(_MmsegViT(), seed=3).double().eval()
    sd = {f'backbone.{k}': v for k, v in mm.state_dict().items()}
    assert 'backbone.layers.1.attn.attn.in_proj_weight' in sd and 'backbone.layers.1.ffn.layers.0.0.bias' in sd
    sd.update({'decode_head.conv_seg.weight': torch.zeros(150, 256, 1, 1), 'neck.norm.0.weight': torch.ones(32),
               'auxiliary_head.0.conv_seg.bias': torch.zeros(150)})
    model = ViTFeatures(**TINY, img_size=128, out_indices=out_indices, cls_token_in_blocks=cls_in_blocks).double()
    model.load_state_dict(mmseg_vit_to_timm({'meta': {}, 'state_dict': sd}), strict=True)
    model.eval()
    for hw in [(128, 128), (100, 70)]:
        x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        with torch.no_grad():
            ours, ref = model(x), mm(x, cls_in_blocks, out_indices)
        assert [o.shape for o in ours] == [r.shape for r in ref]
        assert _max_rel(ours, ref) < TOL


def test_converter_key_handling():
    sd = {'module.backbone.layers.0.ln1.weight': 1, 'module.backbone.patch_embed.projection.bias': 2,
          'module.decode_head.norm.weight': 3, 'module.backbone.layers.10.ffn.layers.1.weight': 4}
    assert mmseg_vit_to_timm(sd) == {'blocks.0.norm1.weight': 1, 'patch_embed.proj.bias': 2,
                                     'blocks.10.mlp.fc2.weight': 4}
    timm_keys = {'blocks.3.attn.qkv.weight': 0, 'pos_embed': 1, 'cls_token': 2}
    assert mmseg_vit_to_timm(timm_keys) == timm_keys
    with pytest.raises(ValueError, match='final_norm'):
        mmseg_vit_to_timm({'backbone.ln1.weight': 0, 'backbone.pos_embed': 1})


# ---- ViT-L/16 @ 512 (meta device only) ----

def _macs(h, w, dim, depth, patch, cls_in_blocks, with_attn=True):
    n = h * w + int(cls_in_blocks)
    per_block = n * dim * dim * 12 + (2 * n * n * dim if with_attn else 0)
    return h * w * dim * 3 * patch * patch + depth * per_block


@pytest.mark.parametrize('setr', ['naive', 'mla'])
def test_vit_large_setr_backbone(setr):
    model = ViTFeatures(device='meta', fused_attn=False, **SETR_VIT_CFGS[setr])
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 304_147_456 and abs(n_params / 1e6 - 304.15) <= 0.01  # notes §2.4
    sd = model.state_dict()
    assert sd['pos_embed'].shape == (1, 1025, 1024) and sd['cls_token'].shape == (1, 1, 1024)
    assert not any(k.startswith('norm.') for k in sd) and len(model.blocks) == 24
    lns = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(lns) == 48 and all(m.eps == 1e-6 for m in lns)
    assert model.out_channels == [1024] * 4 and model.patch_size == (16, 16) and model.img_size == (512, 512)
    assert model.out_indices == ((9, 14, 19, 23) if setr == 'naive' else (5, 11, 17, 23))
    assert all(m.p == 0 for m in model.modules() if isinstance(m, nn.Dropout))
    with FlopCounterMode(display=False) as fc:
        outs = model(torch.empty(1, 3, 512, 512, device='meta'))
    assert [o.shape for o in outs] == [(1, 1024, 32, 32)] * 4
    cls_in = setr == 'naive'
    assert fc.get_total_flops() // 2 == _macs(32, 32, 1024, 24, 16, cls_in)  # 361.99 GMac (naive)


def test_flops_count_attention_only_unfused():
    x = torch.randn(1, 3, 64, 96)
    counts = {}
    for fused in (False, True):
        model = ViTFeatures(**TINY, img_size=64, out_indices=(3,), fused_attn=fused)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
        counts[fused] = fc.get_total_flops() // 2
    assert counts[False] == _macs(4, 6, 32, 4, 16, True)
    # torch 2.14 on the CPU: fused SDPA (_scaled_dot_product_flash_attention_for_cpu) is not counted by
    # torch.utils.flop_counter,
    # which is why fused_attn=False exists; should a torch upgrade count it, this flags the switch as unneeded
    assert counts[True] == _macs(4, 6, 32, 4, 16, True, with_attn=False)


# ---- bad input ----

def test_bad_input_and_model():
    model = ViTFeatures(**TINY, img_size=64, out_indices=(3,))
    for bad in [torch.randn(64, 64), torch.randn(3, 64, 64), torch.randn(1, 1, 64, 64),
                torch.zeros(1, 3, 64, 64, dtype=torch.uint8), torch.randn(1, 3, 0, 64)]:
        with pytest.raises(ValueError, match=r'expects a float \(B, 3, H, W\) image batch'):
            model(bad)
    for not_setr in [dict(class_token=False), dict(no_embed_class=True), dict(reg_tokens=1)]:
        with pytest.raises(ValueError, match='one cls token'):
            ViTFeatures(**TINY, img_size=64, out_indices=(3,), **not_setr)
