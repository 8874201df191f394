"""Decode heads of UperNet and SETR in plain PyTorch, with mmsegmentation's module layout.

Re-implemented from the descriptions and module structure of mmsegmentation (github.com/open-mmlab/mmsegmentation,
``mmseg/models/decode_heads/{uper_head,psp_head,fcn_head,setr_up_head,setr_mla_head}.py`` and
``mmseg/models/necks/mla_neck.py``, the >= 0.17 re-implementation of SETR) so that the ``decode_head.*``,
``auxiliary_head.*`` and ``neck.*`` tensors of mmseg checkpoints load one to one (strip the prefix):

* ``UPerHead``: UperNet (Xiao et al., arXiv 1807.10221), a PSPNet pyramid pooling module on the last map plus an FPN;
  the decode head of the Swin and AS-MLP segmenters. ``FCNHead`` is their auxiliary head (and SETR-MLA's).
* ``SETRUPHead``, ``MLANeck``, ``SETRMLAHead``: the Naive / PUP / MLA decoders of SETR (Zheng et al., arXiv 2012.15840).

Every conv-BN-ReLU is a ``ConvModule`` (keys ``*.conv.weight``, ``*.bn.*``; no conv bias). Differences from the
transformers ``UperNetHead`` / ``UperNetFCNHead``: those name the norm ``batch_norm`` and the classifier
``classifier`` (here ``bn`` and ``conv_seg``) and have no dropout. Heads return logits at their native resolution
(UPerHead: the size of its first input map; SETR heads: input size times the product of their up-scales); resizing to
the image is the segmenter's job. Losses and training-only logic of mmseg are not reproduced.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .label_maps import widened
from .lowres_conv import conv_of_resized, lowres_enabled, use_lowres

__all__ = ['ConvModule', 'BaseDecodeHead', 'UPerHead', 'FCNHead', 'SETRUPHead', 'MLANeck', 'SETRMLAHead']


class ConvModule(nn.Module):
    """``conv`` (no bias) -> ``bn`` (BatchNorm2d) -> ReLU, mmcv's ``ConvModule`` with a BN norm and ReLU act."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)  # as mmcv ConvModule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


def _token_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channels of every pixel (token) of an NCHW map."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be a positive int, got {value!r}')


class BaseDecodeHead(nn.Module):
    """What the heads share with mmseg's ``BaseDecodeHead``: input selection, ``dropout`` and ``conv_seg``.

    ``in_index`` is an int (the head reads ``features[in_index]``, whose channel count is the int ``in_channels``)
    or a tuple (the head reads ``[features[i] for i in in_index]``, channels ``in_channels[k]`` for the k-th).
    """

    def __init__(
            self,
            in_channels: int | Sequence[int],
            channels: int,
            num_classes: int,
            in_index: int | Sequence[int],
            dropout_ratio: float,
            align_corners: bool,
    ):
        super().__init__()
        if isinstance(in_index, int):
            if not isinstance(in_channels, int):
                raise ValueError(f'in_index={in_index} selects one map, so in_channels must be an int, '
                                 f'got {in_channels!r}')
            _check_positive(in_channels=in_channels)
        else:
            in_index = tuple(in_index)
            if not in_index or isinstance(in_channels, int) or len(in_channels) != len(in_index):
                raise ValueError(f'in_index={in_index} selects {len(in_index)} maps, so in_channels must be a '
                                 f'sequence of {len(in_index)} ints, got {in_channels!r}')
            in_channels = tuple(in_channels)
            _check_positive(**{f'in_channels[{i}]': c for i, c in enumerate(in_channels)})
        _check_positive(channels=channels, num_classes=num_classes)
        if not 0 <= dropout_ratio < 1:
            raise ValueError(f'dropout_ratio must be in [0, 1), got {dropout_ratio}')
        self.in_channels = in_channels
        self.channels = channels
        self.num_classes = num_classes
        self.in_index = in_index
        self.align_corners = align_corners
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()

    def _select(self, features: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Pick the input map(s) given by ``in_index`` from ``features``, checking their channel counts."""
        if isinstance(features, torch.Tensor):
            raise ValueError(f'{type(self).__name__} expects a list of feature maps, got a single tensor')
        multi = not isinstance(self.in_index, int)
        indices = self.in_index if multi else (self.in_index,)
        channels = self.in_channels if multi else (self.in_channels,)
        if not all(-len(features) <= i < len(features) for i in indices):
            raise ValueError(f'{type(self).__name__} reads in_index={self.in_index}, got {len(features)} feature maps')
        maps = [features[i] for i in indices]
        for i, x, c in zip(indices, maps, channels):
            if x.ndim != 4 or x.shape[1] != c:
                raise ValueError(f'{type(self).__name__}: features[{i}] must be (N, {c}, H, W), '
                                 f'got {tuple(x.shape)}')
        return maps if multi else maps[0]

    def _resize(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=self.align_corners)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(x))

    def forward_lowres(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, Optional[list[int]]]:
        """``(logits, size)``: the head's logits before a final bilinear resize to ``size`` that it leaves to the
        caller (None: no such resize, ``forward`` returns ``logits``). A segmenter can then fuse that resize into
        its own (:func:`asmlp.models.label_maps.blended_argmax`)."""
        return self(features), None

    def _finish(self, logits: torch.Tensor, size: Optional[list[int]]) -> torch.Tensor:
        return logits if size is None else self._resize(widened(logits), size)


class UPerHead(BaseDecodeHead):
    """UperNet head: pyramid pooling on the last map, FPN top-down path, fused at the first map's resolution.

    Reads ``[features[i] for i in in_index]`` (fine to coarse); logits are at the size of the first selected map.
    """

    def __init__(
            self,
            in_channels: Sequence[int] = (96, 192, 384, 768),
            channels: int = 512,
            pool_scales: Sequence[int] = (1, 2, 3, 6),
            num_classes: int = 150,
            in_index: Sequence[int] = (0, 1, 2, 3),
            dropout_ratio: float = 0.1,
            align_corners: bool = False,
    ):
        if isinstance(in_index, int):
            raise ValueError('UPerHead needs a sequence in_index (one entry per pyramid level)')
        super().__init__(in_channels, channels, num_classes, in_index, dropout_ratio, align_corners)
        _check_positive(**{f'pool_scales[{i}]': s for i, s in enumerate(pool_scales)})
        top = self.in_channels[-1]
        self.psp_modules = nn.ModuleList([
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvModule(top, channels, 1)) for scale in pool_scales])
        self.bottleneck = ConvModule(top + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList([ConvModule(c, channels, 1) for c in self.in_channels[:-1]])
        self.fpn_convs = nn.ModuleList([ConvModule(channels, channels, 3, padding=1) for _ in self.in_channels[:-1]])
        self.fpn_bottleneck = ConvModule(len(self.in_channels) * channels, channels, 3, padding=1)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [self._resize(psp(x), x.shape[2:]) for psp in self.psp_modules]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        inputs = self._select(features)
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        laterals.append(self.psp_forward(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down: add the upsampled coarser level
            laterals[i - 1] = laterals[i - 1] + self._resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[2:]
        if not self.training and use_lowres(outs[1:], self.channels, 3, size):
            return self.cls_seg(self._bottleneck_lowres(outs))
        outs = [outs[0]] + [self._resize(x, size) for x in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))

    def _bottleneck_lowres(self, outs: list[torch.Tensor]) -> torch.Tensor:
        """``fpn_bottleneck(cat([outs[0], *resized outs[1:]]))`` with the coarse maps' share of the 3x3 conv computed
        at their own resolutions (:mod:`asmlp.models.lowres_conv`; ~3x fewer MACs in the head at 512x512)."""
        block = self.fpn_bottleneck
        weights = block.conv.weight.split([x.shape[1] for x in outs], dim=1)
        first = F.conv2d(outs[0], weights[0], padding=1)
        rest = conv_of_resized(outs[1:], weights[1:], outs[0].shape[2:], self.align_corners)
        return block.activate(block.bn(first + rest.to(first.dtype)))


class FCNHead(BaseDecodeHead):
    """FCN head: ``num_convs`` k x k ConvModules (``convs``), optional ``conv_cat`` of input and output, ``conv_seg``.

    Reads ``features[in_index]``; logits at that map's size. ``num_convs=0`` (``convs`` is an Identity) needs
    ``channels == in_channels``; with ``concat_input=False`` the head is then a bare 1x1 classifier.
    """

    def __init__(
            self,
            in_channels: int,
            channels: int = 256,
            num_convs: int = 1,
            kernel_size: int = 3,
            concat_input: bool = False,
            num_classes: int = 150,
            in_index: int = 2,
            dropout_ratio: float = 0.1,
            align_corners: bool = False,
    ):
        if not isinstance(in_index, int):
            raise ValueError(f'FCNHead reads one map, in_index must be an int, got {in_index!r}')
        super().__init__(in_channels, channels, num_classes, in_index, dropout_ratio, align_corners)
        if not isinstance(num_convs, int) or num_convs < 0:
            raise ValueError(f'num_convs must be an int >= 0, got {num_convs!r}')
        if num_convs == 0 and channels != in_channels:
            raise ValueError(f'num_convs=0 needs channels == in_channels, got {channels} and {in_channels}')
        _check_positive(kernel_size=kernel_size)
        self.concat_input = concat_input
        pad = kernel_size // 2
        if num_convs == 0:
            self.convs = nn.Identity()
        else:
            self.convs = nn.Sequential(*[
                ConvModule(in_channels if i == 0 else channels, channels, kernel_size, padding=pad)
                for i in range(num_convs)])
        if concat_input:
            self.conv_cat = ConvModule(in_channels + channels, channels, kernel_size, padding=pad)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._select(features)
        out = self.convs(x)
        if self.concat_input:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls_seg(out)


class SETRUPHead(BaseDecodeHead):
    """SETR Naive / PUP head: token LayerNorm ``norm``, ``num_convs`` x (ConvModule k x k, bilinear x up_scale).

    Reads ``features[in_index]`` (a ViT map, N x C x H/16 x W/16); logits at ``up_scale ** num_convs`` times its size.
    Naive: ``num_convs=1, up_scale=4, kernel_size=1``; PUP: ``num_convs=4, up_scale=2, kernel_size=3``.
    """

    def __init__(
            self,
            in_channels: int = 1024,
            channels: int = 256,
            num_convs: int = 1,
            up_scale: int = 4,
            kernel_size: int = 1,
            num_classes: int = 150,
            in_index: int = -1,
            norm_eps: float = 1e-6,
            dropout_ratio: float = 0.,
            align_corners: bool = False,
    ):
        if not isinstance(in_index, int):
            raise ValueError(f'SETRUPHead reads one map, in_index must be an int, got {in_index!r}')
        super().__init__(in_channels, channels, num_classes, in_index, dropout_ratio, align_corners)
        _check_positive(num_convs=num_convs, up_scale=up_scale)
        if kernel_size not in (1, 3):
            raise ValueError(f'kernel_size must be 1 or 3 (as in mmseg), got {kernel_size!r}')
        self.norm = nn.LayerNorm(in_channels, eps=norm_eps)
        self.up_convs = nn.ModuleList([
            nn.Sequential(
                ConvModule(in_channels if i == 0 else channels, channels, kernel_size, padding=kernel_size // 2),
                nn.Upsample(scale_factor=up_scale, mode='bilinear', align_corners=align_corners),
            ) for i in range(num_convs)])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self._finish(*self.forward_lowres(features))

    def forward_lowres(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, Optional[list[int]]]:
        x = _token_norm(self.norm, self._select(features))
        if self.training or not lowres_enabled():
            for up_conv in self.up_convs:
                x = up_conv(x)
            return self.cls_seg(x), None
        # Inference: each conv reads the previous upsampling without it being materialised
        # (:mod:`asmlp.models.lowres_conv`), and the 1x1 classifier runs before the last upsampling. Both are exact:
        # convs and resizes are linear, and bilinear weights sum to 1 (so even the classifier's bias commutes).
        pending = None  # x stands for resize(x, pending) when set
        for block, upsample in self.up_convs:
            if pending is None:
                x = block(x)
            elif use_lowres([x], self.channels, block.conv.kernel_size[0], pending):
                x = block.activate(block.bn(conv_of_resized([x], [block.conv.weight], pending, self.align_corners)))
            else:
                x = block(self._resize(x, pending))
            pending = [s * int(upsample.scale_factor) for s in x.shape[2:]]  # integral scales (symbolic sizes stay)
        return self.cls_seg(x), pending


class MLANeck(nn.Module):
    """SETR multi-level feature aggregation neck (mmseg ``MLANeck`` + ``MLAModule``).

    Takes all ``len(in_channels)`` maps ``x_0..x_{L-1}`` (shallow to deep): ``p_i = channel_proj[i](norm[i](x_i))``
    with a token LayerNorm, top-down cumulative sums ``m_j = p_{L-1} + ... + p_{L-1-j}``, ``out_j =
    feat_extract[j](m_j)``. As in mmseg the outputs stay in that deep-first order: ``out[0]`` sees only the deepest
    map and ``out[L-1]`` the sum of all (the official SETR code returns them the other way round).
    """

    def __init__(self, in_channels: Sequence[int] = (1024,) * 4, out_channels: int = 256, norm_eps: float = 1e-6):
        super().__init__()
        self.in_channels = tuple(in_channels)
        if not self.in_channels:
            raise ValueError('MLANeck needs at least one input level')
        _check_positive(out_channels=out_channels, **{f'in_channels[{i}]': c for i, c in enumerate(self.in_channels)})
        self.out_channels = out_channels
        self.norm = nn.ModuleList([nn.LayerNorm(c, eps=norm_eps) for c in self.in_channels])
        self.mla = nn.Module()
        self.mla.channel_proj = nn.ModuleList([ConvModule(c, out_channels, 1) for c in self.in_channels])
        self.mla.feat_extract = nn.ModuleList([
            ConvModule(out_channels, out_channels, 3, padding=1) for _ in self.in_channels])

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(features, torch.Tensor) or len(features) != len(self.in_channels):
            raise ValueError(f'MLANeck expects a list of {len(self.in_channels)} feature maps, '
                             f'got a {type(features).__name__} of length {len(features)}')
        for i, (x, c) in enumerate(zip(features, self.in_channels)):
            if x.ndim != 4 or x.shape[1] != c:
                raise ValueError(f'MLANeck: features[{i}] must be (N, {c}, H, W), got {tuple(x.shape)}')
        projected = [proj(_token_norm(norm, x)) for norm, proj, x in zip(self.norm, self.mla.channel_proj, features)]
        outs, acc = [], None
        for p, conv in zip(reversed(projected), self.mla.feat_extract):
            acc = p if acc is None else acc + p
            outs.append(conv(acc))
        return outs


class SETRMLAHead(BaseDecodeHead):
    """SETR-MLA head: per level ``up_convs[i]`` = two 3x3 ConvModules (in -> mla -> mla) and bilinear x up_scale,
    concatenated (``channels = len(in_channels) * mla_channels``) and classified by a 1x1 ``conv_seg``.

    Reads ``[features[i] for i in in_index]`` (the ``MLANeck`` outputs); logits at ``up_scale`` times their size.
    """

    def __init__(
            self,
            in_channels: Sequence[int] = (256,) * 4,
            channels: int = 512,
            mla_channels: int = 128,
            up_scale: int = 4,
            num_classes: int = 150,
            in_index: Sequence[int] = (0, 1, 2, 3),
            dropout_ratio: float = 0.,
            align_corners: bool = False,
    ):
        if isinstance(in_index, int):
            raise ValueError('SETRMLAHead needs a sequence in_index (one entry per MLA level)')
        super().__init__(in_channels, channels, num_classes, in_index, dropout_ratio, align_corners)
        _check_positive(mla_channels=mla_channels, up_scale=up_scale)
        if channels != len(self.in_channels) * mla_channels:
            raise ValueError(f'channels must equal len(in_channels) * mla_channels = '
                             f'{len(self.in_channels) * mla_channels}, got {channels}')
        self.up_convs = nn.ModuleList([
            nn.Sequential(
                ConvModule(c, mla_channels, 3, padding=1),
                ConvModule(mla_channels, mla_channels, 3, padding=1),
                nn.Upsample(scale_factor=up_scale, mode='bilinear', align_corners=align_corners),
            ) for c in self.in_channels])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self._finish(*self.forward_lowres(features))

    def forward_lowres(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, Optional[list[int]]]:
        inputs = self._select(features)
        if not self.training and lowres_enabled() and all(x.shape[2:] == inputs[0].shape[2:] for x in inputs):
            # Inference: classify before upsampling (exact: the 1x1 conv commutes with a bilinear resize).
            low = torch.cat([up[1](up[0](x)) for up, x in zip(self.up_convs, inputs)], dim=1)
            return self.cls_seg(low), [s * int(self.up_convs[0][2].scale_factor) for s in low.shape[2:]]
        return self.cls_seg(torch.cat([up(x) for up, x in zip(self.up_convs, inputs)], dim=1)), None
