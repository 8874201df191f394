"""Encoder-decoder segmenter with mmseg's structure (``backbone``, optional ``neck``, ``decode_head``,
``auxiliary_head``) and its test-time inference (mmseg ``EncoderDecoder``: ``whole`` and ``slide`` modes).

``whole``: the image goes through at once (the backbones pad it to what they need), the decode head's logits are
resized bilinearly to the image. ``slide``: crops of ``crop_size`` every ``stride`` pixels, logits of overlapping
crops averaged (SETR's ADE20K setting: crop 512, stride 341). Auxiliary heads are training-only: they are kept so
checkpoints load one to one and parameter counts match the papers, but inference never runs them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..preprocess import ADE20K_SCALE, check_rgb_image, preprocess
from .lowres_conv import interpolation_matrix

__all__ = ['InferenceConfig', 'Segmenter', 'resized_argmax']


@dataclass(frozen=True)
class InferenceConfig:
    """mmseg ``test_cfg``: ``mode`` 'whole' or 'slide' (with ``crop_size`` and ``stride`` as (H, W)); ``short_side``:
    the test resize's short side (ADE20K: 512, mmseg's img_scale (2048, 512); the demo models: 128, their training
    size), what the app proposes as the inference size."""
    mode: str = 'whole'
    crop_size: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)
    short_side: int = 512

    def __post_init__(self):
        if self.mode not in ('whole', 'slide'):
            raise ValueError(f"inference mode must be 'whole' or 'slide', got {self.mode!r}")
        if min(*self.crop_size, *self.stride) < 1:
            raise ValueError(f'crop_size and stride must be >= 1, got {self.crop_size} / {self.stride}')
        if not isinstance(self.short_side, int) or not 32 <= self.short_side <= 2048:
            raise ValueError(f'short_side must be an int within 32..2048, got {self.short_side!r}')


class Segmenter(nn.Module):
    """``backbone`` (image -> list of NCHW maps) + optional ``neck`` + ``decode_head`` (+ ``auxiliary_head``).

    State-dict keys follow mmseg's ``EncoderDecoder``: ``backbone.*``, ``neck.*``, ``decode_head.*`` and
    ``auxiliary_head.*`` for one auxiliary head or ``auxiliary_head.<i>.*`` for several.
    """

    def __init__(
            self,
            backbone: nn.Module,
            decode_head: nn.Module,
            auxiliary_head: Optional[nn.Module | Sequence[nn.Module]] = None,
            neck: Optional[nn.Module] = None,
            inference: InferenceConfig = InferenceConfig(),
            in_chans: int = 3,
    ):
        super().__init__()
        self.backbone = backbone
        if neck is not None:
            self.neck = neck
        self.decode_head = decode_head
        if isinstance(auxiliary_head, (list, tuple)):  # mmseg: one head as is, several as a ModuleList
            auxiliary_head = auxiliary_head[0] if len(auxiliary_head) == 1 else nn.ModuleList(auxiliary_head) or None
        if auxiliary_head is not None:
            self.auxiliary_head = auxiliary_head
        self.inference = inference
        self.in_chans = in_chans
        self.num_classes = decode_head.num_classes

    def extract_features(self, img: torch.Tensor) -> list[torch.Tensor]:
        feats = self.backbone(img)
        return self.neck(feats) if hasattr(self, 'neck') else feats

    def encode_decode(self, img: torch.Tensor) -> torch.Tensor:
        """Decode-head logits for ``img``, resized (bilinear, align_corners=False) to ``img``'s size; in float32 at
        least (under autocast the head's low-resolution logits are widened before the resize, not after)."""
        return _resize(self.decode_head(self.extract_features(img)), img.shape[-2:])

    def slide_inference(self, img: torch.Tensor) -> torch.Tensor:
        """mmseg ``slide_inference``: average the logits of overlapping crops (the last crop is aligned to the edge)."""
        (crop_h, crop_w), (stride_h, stride_w) = self.inference.crop_size, self.inference.stride
        batch, _, height, width = img.shape
        grids_h = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
        grids_w = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
        logits = count = None
        for i in range(grids_h):
            for j in range(grids_w):
                y2, x2 = min(i * stride_h + crop_h, height), min(j * stride_w + crop_w, width)
                y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
                crop = self.encode_decode(img[:, :, y1:y2, x1:x2])
                if logits is None:  # float32 at least, laid out like the crops; the first crop is copied in
                    dtype = torch.promote_types(crop.dtype, torch.float32)
                    logits = torch.empty((batch, self.num_classes, height, width), dtype=dtype,
                                         device=crop.device, memory_format=_memory_format(crop))
                    _zero_outside(logits, y1, y2, x1, x2)
                    logits[:, :, y1:y2, x1:x2] = crop
                    count = img.new_zeros((1, 1, height, width), dtype=dtype)
                else:
                    logits[:, :, y1:y2, x1:x2] += crop
                count[:, :, y1:y2, x1:x2] += 1
        return logits.div_(count)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) for a normalised image batch, by the model's inference mode."""
        self._check_input(img)
        if self.inference.mode == 'slide':
            return self.slide_inference(img)
        return self.encode_decode(img)

    def _check_input(self, img: torch.Tensor) -> None:
        if not isinstance(img, torch.Tensor) or img.dim() != 4:
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f'expected an NCHW image batch, got {shape}')
        if img.shape[1] != self.in_chans:
            raise ValueError(f'expected {self.in_chans} input channels, got {img.shape[1]} (shape {tuple(img.shape)})')
        if min(img.shape[-2:]) < 1:
            raise ValueError(f'image sizes must be >= 1, got {tuple(img.shape[-2:])}')

    @torch.inference_mode()
    def predict(self, image: np.ndarray, scale: Optional[tuple[int, int]] = ADE20K_SCALE) -> np.ndarray:
        """Label map (H, W, int64 class indices 0..num_classes-1) for an RGB uint8 HxWx3 image.

        The image is resized into ``scale`` (mmseg's ADE20K test resize; None keeps its size), normalised, run by
        the inference mode, and the logits are resized back to the original size before the argmax (as mmseg:
        'whole' logits go to the input's size, then to the image's -- one step when the two are equal).
        """
        height, width = check_rgb_image(image).shape[:2]
        param = next(self.parameters())
        x = preprocess(image, scale).to(device=param.device, dtype=param.dtype)
        x = x.contiguous(memory_format=torch.channels_last)  # the fast layout for oneDNN and cuDNN
        self._check_input(x)
        if self.inference.mode == 'slide':
            logits = self.slide_inference(x)
        else:
            logits = self.decode_head(self.extract_features(x))
            if tuple(x.shape[-2:]) != (height, width):
                logits = _resize(logits, x.shape[-2:])
        return resized_argmax(logits, (height, width))[0].cpu().numpy()


def resized_argmax(logits: torch.Tensor, size, band_bytes: int = 4 << 20) -> torch.Tensor:
    """``_resize(logits, size).argmax(1)`` without materialising the resized logits on the CPU: bands of output rows
    (``band_bytes`` of float32 logits each, cache-sized) are resized along H by the rows of the interpolation matrix
    that :func:`asmlp.models.lowres_conv.interpolation_matrix` takes from ``F.interpolate``, along W by
    ``F.interpolate`` (the H scale of a band is 1, exactly the identity), then reduced. (N, H, W) int64."""
    size = tuple(int(s) for s in size)
    if tuple(logits.shape[-2:]) == size or logits.device.type != 'cpu':
        return _resize(logits, size).argmax(1)
    batch, classes, h, w = logits.shape
    height, width = size
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    rows = interpolation_matrix(h, height, False).to(logits.dtype)
    flat = logits.permute(0, 2, 3, 1).reshape(batch, h, w * classes)  # a view for channels_last logits
    band = max(1, band_bytes // (width * classes * logits.element_size()))
    labels = torch.empty((batch, height, width), dtype=torch.int64, device=logits.device)
    with torch.autocast(logits.device.type, enabled=False):  # blend in float32 even inside a bf16 autocast
        for y0 in range(0, height, band):
            y1 = min(height, y0 + band)
            used = (rows[y0:y1] != 0).any(0).nonzero()
            i0, i1 = int(used[0]), int(used[-1]) + 1
            along_h = torch.matmul(rows[y0:y1, i0:i1], flat[:, i0:i1]).view(batch, y1 - y0, w, classes)
            resized = F.interpolate(along_h.permute(0, 3, 1, 2), size=(y1 - y0, width), mode='bilinear',
                                    align_corners=False)
            torch.argmax(resized, 1, out=labels[:, y0:y1])
    return labels


def _resize(logits: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize (align_corners=False) to ``size``, in float32 at least (under autocast, low-resolution logits
    are widened before they are resized, not after); a map already of that size is returned as is."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.interpolate(logits, size=tuple(size), mode='bilinear', align_corners=False)


def _zero_outside(x: torch.Tensor, y1: int, y2: int, x1: int, x2: int) -> None:
    """Zero all of ``x`` (..., H, W) but the box [y1:y2, x1:x2]."""
    x[..., :y1, :].zero_()
    x[..., y2:, :].zero_()
    x[..., y1:y2, :x1].zero_()
    x[..., y1:y2, x2:].zero_()


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format
