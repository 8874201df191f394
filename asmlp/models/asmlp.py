"""AS-MLP: An Axial Shifted MLP Architecture for Vision (Lian et al., arXiv 2107.08391, ICLR 2022).

A re-implementation of the official code (github.com/svip-lab/AS-MLP ``models/as_mlp.py`` and the segmentation
backbone of github.com/svip-lab/AS-MLP-Semantic-Segmentation), registered with timm:

* ``timm.create_model('asmlp_tiny')`` is the ImageNet classifier; its ``state_dict`` has exactly the official
  checkpoint keys and shapes (257 tensors for T, 497 for S/B);
* ``timm.create_model('asmlp_tiny', features_only=True)`` is the segmentation backbone: the four pre-downsample
  stage maps, each through its own ``GroupNorm(1, C)`` (``norm0..norm3``, the official seg keys), NCHW at
  strides 4/8/16/32.

Official semantics kept here (svip-lab/AS-MLP ``models/as_mlp.py``, svip-lab/AS-MLP-Semantic-Segmentation
``mmseg/models/backbones/asmlp.py``): ``GroupNorm(1, C)`` for every norm
(the docstrings of the official code say LayerNorm, the code builds GroupNorm), all projections are 1x1 convs,
the W-shift branch is ``conv2_1`` and the H-shift branch ``conv2_2``, summed (parallel), patch merging at the
end of stages 0-2, any input size padded like the official segmentation backbone (right/bottom zeros to a
multiple of 4, odd sizes padded before each merge). Shift size 5 for every variant (paper §4.2, all
experiments; the official Small segmentation config says 3).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import ConvMlp, DropPath, GroupNorm1, register_notrace_function, register_notrace_module, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model

from ..ops import axial_shift_mlp, axial_shift_pair, fused_token_mixing_applies
from ..paths import downloads_dir, weights_dir

__all__ = ['ASMLP', 'ASMLPFeatures', 'checkpoint_filter_fn', 'official_checkpoint_name']


@register_notrace_module  # FX: a leaf (its forward picks the kernel from the tensors' device and dtype)
class AxialShift(nn.Module):
    """Token mixer: ``conv3(norm2(GELU(conv2_1(shift_W(h))) + GELU(conv2_2(shift_H(h)))))``,
    ``h = GELU(norm1(conv1(x)))``."""

    def __init__(self, dim: int, shift_size: int = 5, dilation: int = 1, bias: bool = True):
        super().__init__()
        self.shift_size = shift_size
        self.dilation = dilation
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=bias)
        self.conv2_1 = nn.Conv2d(dim, dim, 1, bias=bias)  # W (dim 3) shift branch
        self.conv2_2 = nn.Conv2d(dim, dim, 1, bias=bias)  # H (dim 2) shift branch
        self.conv3 = nn.Conv2d(dim, dim, 1, bias=bias)
        self.actn = nn.GELU()
        self.norm1 = GroupNorm1(dim)
        self.norm2 = GroupNorm1(dim)

    def _fusable(self) -> bool:
        """Whether both branches are what ``asmlp.ops.axial_shift_mlp`` fuses: plain 1x1 convs, exact GELU."""
        convs = (self.conv2_1, self.conv2_2)
        return (type(self.actn) is nn.GELU and self.actn.approximate == 'none'
                and all(type(c) is nn.Conv2d and c.kernel_size == (1, 1) and c.stride == (1, 1) and c.groups == 1
                        and c.padding == (0, 0) and c.dilation == (1, 1) for c in convs)
                and (self.conv2_1.bias is None) == (self.conv2_2.bias is None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.actn(self.norm1(self.conv1(x)))
        branch_w, branch_h = self.conv2_1, self.conv2_2
        params = (branch_w.weight, branch_w.bias, branch_h.weight, branch_h.bias)
        if self._fusable() and fused_token_mixing_applies(x, *params):
            # backend "triton" at inference: shifts, both 1x1 convs, GELUs and the sum in one kernel
            mixed = axial_shift_mlp(x, *params, self.shift_size, self.dilation)
        else:
            x_lr, x_td = axial_shift_pair(x, self.shift_size, self.dilation)
            mixed = self.actn(branch_w(x_lr)) + self.actn(branch_h(x_td))
        return self.conv3(self.norm2(mixed))


class AxialShiftedBlock(nn.Module):
    """Pre-norm block: ``x + AxialShift(norm1(x))``, then ``x + Mlp(norm2(x))``."""

    def __init__(
            self,
            dim: int,
            shift_size: int = 5,
            dilation: int = 1,
            mlp_ratio: float = 4.,
            as_bias: bool = True,
            drop: float = 0.,
            drop_path: float = 0.,
    ):
        super().__init__()
        self.norm1 = GroupNorm1(dim)
        self.axial_shift = AxialShift(dim, shift_size, dilation, as_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = GroupNorm1(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.axial_shift(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """4x4 stride-4 conv + GroupNorm; right/bottom zero padding to a multiple of the patch size (official seg)."""

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = GroupNorm1(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % self.patch_size, 0, -height % self.patch_size))
        return self.norm(self.proj(x))


class PatchMerging(nn.Module):
    """2x2 space-to-channel (Swin order x0, x1, x2, x3), GroupNorm(4C), 1x1 conv 4C -> 2C without bias."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = GroupNorm1(4 * dim)
        self.reduction = nn.Conv2d(4 * dim, 2 * dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = F.pad(x, (0, width % 2, 0, height % 2))
        x = torch.cat([x[..., 0::2, 0::2], x[..., 1::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 1::2]], 1)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One stage: ``blocks``, then ``downsample`` (patch merging) for stages 0-2."""

    def __init__(self, dim: int, depth: int, downsample: bool, drop_path: Sequence[float], **block_kwargs):
        super().__init__()
        self.blocks = nn.Sequential(*[
            AxialShiftedBlock(dim, drop_path=drop_path[i], **block_kwargs) for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        return x if self.downsample is None else self.downsample(x)


@register_notrace_function  # FX: one call node (checks on the shape are control flow; FX wraps public names only)
def checked_image(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """``x`` itself, after checking that it is an NCHW batch with ``in_chans`` channels."""
    if x.dim() != 4:
        raise ValueError(f'expected an NCHW image batch, got shape {tuple(x.shape)}')
    if x.shape[1] != in_chans:
        raise ValueError(f'expected {in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)})')
    return x


def _stage_maps(net: nn.Module, x: torch.Tensor, last: int) -> Iterator[torch.Tensor]:
    """Run ``net.patch_embed`` and ``net.layers`` on ``x``, yielding each stage's map before its patch merging.

    The stages compute in channels_last: every 1x1 conv is then a plain NHWC GEMM for oneDNN / cuDNN, with no
    layout reorder around it (1.2-1.6x faster on CPU at 512x512 than NCHW; same arithmetic). The maps are yielded
    in that layout; callers hand them back in the input's memory format (:func:`in_format_of`). With
    ``net.grad_checkpointing`` each stage's blocks run under activation checkpointing (timm's ``checkpoint_seq``).
    """
    x = checked_image(x, net.patch_embed.proj.in_channels)
    x = net.pos_drop(net.patch_embed(x.contiguous(memory_format=torch.channels_last)))
    for i, stage in enumerate(net.layers[:last + 1]):
        if net.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(stage.blocks, x)
        else:
            x = stage.blocks(x)
        yield x
        if stage.downsample is not None and i < last:
            x = stage.downsample(x)


@register_notrace_function  # FX: the layout test is control flow
def in_format_of(feat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``feat`` in the memory format outputs for input ``x`` have: channels_last only for a channels_last input."""
    return feat.contiguous(memory_format=torch.contiguous_format if x.is_contiguous() else torch.channels_last)


class ASMLP(nn.Module):
    """AS-MLP classifier; ``state_dict`` keys equal the official ImageNet checkpoints (``checkpoint['model']``)."""

    def __init__(
            self,
            img_size: int = 224,
            patch_size: int = 4,
            in_chans: int = 3,
            num_classes: int = 1000,
            embed_dim: int = 96,
            depths: Sequence[int] = (2, 2, 6, 2),
            shift_size: int = 5,
            dilation: int = 1,
            mlp_ratio: float = 4.,
            as_bias: bool = True,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.1,
            global_pool: str = 'avg',
    ):
        super().__init__()
        if global_pool not in ('avg', ''):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.img_size = img_size
        self.grad_checkpointing = False
        self.num_layers = len(depths)
        self.embed_dim = embed_dim
        self.num_features = self.head_hidden_size = int(embed_dim * 2 ** (self.num_layers - 1))
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        # stochastic depth rule of the official code
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.layers = nn.ModuleList()
        self.feature_info = []
        for i, depth in enumerate(depths):
            dim = embed_dim * 2 ** i
            self.layers.append(BasicLayer(
                dim, depth, downsample=i < self.num_layers - 1, drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                shift_size=shift_size, dilation=dilation, mlp_ratio=mlp_ratio, as_bias=as_bias, drop=drop_rate,
            ))
            self.feature_info.append(dict(num_chs=dim, reduction=patch_size * 2 ** i, module=f'layers.{i}.blocks'))
        self.norm = GroupNorm1(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # the official init touches only nn.Linear (the head); convs keep PyTorch's default init
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing of each stage's blocks (timm API; less memory in training, same outputs)."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for timm's layer-wise learning-rate decay (the layout of timm's Swin)."""
        return dict(stem=r'^patch_embed', blocks=r'^layers\.(\d+)' if coarse else [
            (r'^layers\.(\d+)\.downsample', (0,)), (r'^layers\.(\d+)\.\w+\.(\d+)', None), (r'^norm', (99999,))])

    def stage_outputs(self, x: torch.Tensor, last: Optional[int] = None) -> Iterator[torch.Tensor]:
        """Yield each stage's map before its patch merging, up to stage ``last`` (all by default)."""
        return _stage_maps(self, x, self.num_layers - 1 if last is None else last)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[int | Sequence[int]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ):
        """timm's intermediate-feature API: the pre-downsample stage maps (no per-stage norms on the classifier)."""
        if output_fmt != 'NCHW':
            raise ValueError("AS-MLP features are NCHW only (output_fmt='NCHW')")
        from timm.models._features import feature_take_indices
        take, max_index = feature_take_indices(self.num_layers, indices)
        last = max_index if (stop_early or intermediates_only) else None
        intermediates, final = [], None
        for i, feat in enumerate(self.stage_outputs(x, last)):
            if i in take:
                intermediates.append(in_format_of(feat, x))
            final = feat
        if intermediates_only:
            return intermediates
        return self.norm(final), intermediates

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        *_, x = self.stage_outputs(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean((2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


class ASMLPFeatures(nn.Module):
    """The official segmentation backbone: pre-downsample stage maps, each through its own GroupNorm ``norm{i}``.

    Built by ``timm.create_model(name, features_only=True)`` from a (possibly pretrained) classifier; its
    ``state_dict`` keys equal the ``backbone.*`` keys of the official mmseg checkpoints.
    """

    def __init__(self, model: ASMLP, out_indices: Sequence[int] = (0, 1, 2, 3), **_unused_feature_cfg):
        super().__init__()
        out_indices = tuple(i % model.num_layers for i in out_indices)
        if len(set(out_indices)) != len(out_indices):
            raise ValueError(f'out_indices must be distinct stages 0..{model.num_layers - 1}, got {out_indices}')
        self.out_indices = out_indices
        self.last = max(out_indices)
        self.grad_checkpointing = model.grad_checkpointing
        self.patch_embed = model.patch_embed
        self.pos_drop = model.pos_drop
        self.layers = model.layers[:self.last + 1]
        if self.layers[-1].downsample is not None:
            self.layers[-1].downsample = None  # its output is never used
        for i in out_indices:
            self.add_module(f'norm{i}', GroupNorm1(model.feature_info[i]['num_chs']))
        from timm.models import FeatureInfo
        self.feature_info = FeatureInfo(model.feature_info, out_indices)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = _stage_maps(self, x, self.last)
        return [in_format_of(getattr(self, f'norm{i}')(feat), x)
                for i, feat in enumerate(maps) if i in self.out_indices]


def official_checkpoint_name(variant: str) -> str:
    """File name of the official ImageNet checkpoint (official README / train_scripts/test.sh)."""
    return f'{variant}_patch4_shift5_224.pth'


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Map an official AS-MLP checkpoint (ImageNet ``{'model': ...}`` or mmseg ``{'state_dict': ...}``) to ``model``.

    Unwraps ``model`` / ``state_dict``, strips ``module.`` and ``backbone.`` prefixes, drops the segmentation
    heads and the parameter-free buffers, and keeps only keys the model has when they do not all fit.
    """
    for key in ('model', 'state_dict'):
        if key in state_dict and isinstance(state_dict[key], dict):
            state_dict = state_dict[key]
    out = {}
    for key, value in state_dict.items():
        for prefix in ('module.', 'backbone.'):
            key = key.removeprefix(prefix)
        if key.startswith(('decode_head.', 'auxiliary_head.')):
            continue
        out[key] = value
    if isinstance(model, ASMLP):
        # an mmseg backbone carries norm0..norm3 that the classifier does not have
        out = {k: v for k, v in out.items() if not (k[:4] == 'norm' and k[4:5].isdigit())}
    return out


def _resolve_local_weights(variant: str) -> Path:
    """The official ImageNet file in ``weights/`` (``.safetensors`` preferred), or a clear, immediate error."""
    stem = Path(official_checkpoint_name(variant)).stem
    candidates = [weights_dir() / f'{stem}.safetensors', weights_dir() / f'{stem}.pth',
                  downloads_dir() / f'{stem}.pth']  # fetched by `python -m asmlp download` (verified there)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f'No ImageNet weights for {variant}: looked for {", ".join(str(p) for p in candidates)}. The official '
        f'checkpoints are only on OneDrive (links in the README of https://github.com/svip-lab/AS-MLP): fetch '
        f'them with `python -m asmlp download upernet_{variant}`, or download {official_checkpoint_name(variant)} '
        f'by hand into {weights_dir()} (or set ASMLP_WEIGHTS_DIR), or pass '
        f"pretrained_cfg_overlay=dict(file='/path/to/checkpoint').")


def _create_asmlp(variant: str, pretrained: bool = False, **kwargs) -> nn.Module:
    if pretrained:
        overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {})
        if not (overlay.get('file') or overlay.get('state_dict')):
            overlay['file'] = str(_resolve_local_weights(variant))
        kwargs['pretrained_cfg_overlay'] = overlay
    if kwargs.get('features_only'):
        kwargs.setdefault('feature_cls', ASMLPFeatures)
        kwargs.setdefault('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(ASMLP, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **kwargs)


def _cfg(**kwargs) -> dict:
    return {
        'url': '', 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 224 / 256, 'interpolation': 'bicubic', 'fixed_input_size': False,
        'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225),
        'first_conv': 'patch_embed.proj', 'classifier': 'head', 'license': 'unspecified',
        'origin_url': 'https://github.com/svip-lab/AS-MLP', 'paper_ids': 'arXiv:2107.08391',
        'paper_name': 'AS-MLP: An Axial Shifted MLP Architecture for Vision', **kwargs,
    }


# Pretrained tags: the official ImageNet-1k checkpoints (official README). ``file`` names the official file; the
# path is resolved at creation (``_resolve_local_weights``: ``weights/`` or ``$ASMLP_WEIGHTS_DIR``, a clear error
# without it), since the files are only on OneDrive and cannot be downloaded unattended.
default_cfgs = generate_default_cfgs({
    f'{variant}.in1k': _cfg(file=official_checkpoint_name(variant))
    for variant in ('asmlp_tiny', 'asmlp_small', 'asmlp_base')
})


@register_model
def asmlp_tiny(pretrained: bool = False, **kwargs) -> ASMLP:
    """AS-MLP-T: C=96, depths 2-2-6-2, shift 5 (81.3% top-1, 28M params, 4.4 GMACs; paper Table 1)."""
    model_args = dict(embed_dim=96, depths=(2, 2, 6, 2), shift_size=5, drop_path_rate=0.2)
    return _create_asmlp('asmlp_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def asmlp_small(pretrained: bool = False, **kwargs) -> ASMLP:
    """AS-MLP-S: C=96, depths 2-2-18-2, shift 5 (83.1% top-1, 50M params, 8.5 GMACs; paper Table 1)."""
    model_args = dict(embed_dim=96, depths=(2, 2, 18, 2), shift_size=5, drop_path_rate=0.3)
    return _create_asmlp('asmlp_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def asmlp_base(pretrained: bool = False, **kwargs) -> ASMLP:
    """AS-MLP-B: C=128, depths 2-2-18-2, shift 5 (83.3% top-1, 88M params, 15.2 GMACs; paper Table 1)."""
    model_args = dict(embed_dim=128, depths=(2, 2, 18, 2), shift_size=5, drop_path_rate=0.5)
    return _create_asmlp('asmlp_base', pretrained=pretrained, **dict(model_args, **kwargs))
