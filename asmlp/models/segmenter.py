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

from ..preprocess import ADE20K_SCALE, check_rgb_image, preprocess
from .label_maps import blended_argmax, resize_logits, resized_argmax

__all__ = ['InferenceConfig', 'Segmenter']


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
        return resize_logits(self.decode_head(self.extract_features(img)), img.shape[-2:])

    def crop_boxes(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """mmseg ``slide_inference``'s crops of an image (y1, y2, x1, x2): every ``stride`` pixels, the last one
        aligned to the edge; one box covering the image in 'whole' mode."""
        if self.inference.mode == 'whole':
            return [(0, height, 0, width)]
        (crop_h, crop_w), (stride_h, stride_w) = self.inference.crop_size, self.inference.stride
        grids_h = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
        grids_w = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
        boxes = []
        for i in range(grids_h):
            for j in range(grids_w):
                y2, x2 = min(i * stride_h + crop_h, height), min(j * stride_w + crop_w, width)
                boxes.append((max(y2 - crop_h, 0), y2, max(x2 - crop_w, 0), x2))
        return boxes

    def slide_inference(self, img: torch.Tensor) -> torch.Tensor:
        """mmseg ``slide_inference``: average the logits of overlapping crops (:meth:`crop_boxes`)."""
        batch, _, height, width = img.shape
        logits = count = None
        for y1, y2, x1, x2 in self.crop_boxes(height, width):
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
        if tuple(x.shape[-2:]) != (height, width):  # mmseg: logits at the input's size, then at the image's
            return resized_argmax(self(x), (height, width))[0].cpu().numpy()
        pieces = []  # each crop's logits before their last resize, fused into one banded resize + sum + argmax
        for y1, y2, x1, x2 in self.crop_boxes(height, width):
            crop = x[:, :, y1:y2, x1:x2]
            logits, size = self.decode_head.forward_lowres(self.extract_features(crop))
            if size is not None and tuple(size) != tuple(crop.shape[-2:]):
                logits = resize_logits(logits, size)  # a head resize to another size: done as is
            pieces.append((logits, (y1, y2, x1, x2)))
        return blended_argmax(pieces, (height, width))[0].cpu().numpy()


def _zero_outside(x: torch.Tensor, y1: int, y2: int, x1: int, x2: int) -> None:
    """Zero all of ``x`` (..., H, W) but the box [y1:y2, x1:x2]."""
    x[..., :y1, :].zero_()
    x[..., y2:, :].zero_()
    x[..., y1:y2, :x1].zero_()
    x[..., y1:y2, x2:].zero_()


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format
