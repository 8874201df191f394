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

__all__ = ['InferenceConfig', 'Segmenter']


@dataclass(frozen=True)
class InferenceConfig:
    """mmseg ``test_cfg``: ``mode`` 'whole' or 'slide' (with ``crop_size`` and ``stride`` as (H, W))."""
    mode: str = 'whole'
    crop_size: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)

    def __post_init__(self):
        if self.mode not in ('whole', 'slide'):
            raise ValueError(f"inference mode must be 'whole' or 'slide', got {self.mode!r}")
        if min(*self.crop_size, *self.stride) < 1:
            raise ValueError(f'crop_size and stride must be >= 1, got {self.crop_size} / {self.stride}')


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
        """Decode-head logits for ``img``, resized (bilinear, align_corners=False) to ``img``'s size."""
        logits = self.decode_head(self.extract_features(img))
        return F.interpolate(logits, size=img.shape[-2:], mode='bilinear', align_corners=False)

    def slide_inference(self, img: torch.Tensor) -> torch.Tensor:
        """mmseg ``slide_inference``: average the logits of overlapping crops (the last crop is aligned to the edge)."""
        (crop_h, crop_w), (stride_h, stride_w) = self.inference.crop_size, self.inference.stride
        batch, _, height, width = img.shape
        grids_h = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
        grids_w = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
        logits = img.new_zeros((batch, self.num_classes, height, width))
        count = img.new_zeros((1, 1, height, width))
        for i in range(grids_h):
            for j in range(grids_w):
                y2, x2 = min(i * stride_h + crop_h, height), min(j * stride_w + crop_w, width)
                y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
                logits[:, :, y1:y2, x1:x2] += self.encode_decode(img[:, :, y1:y2, x1:x2])
                count[:, :, y1:y2, x1:x2] += 1
        return logits / count

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes, H, W) for a normalised image batch, by the model's inference mode."""
        if not isinstance(img, torch.Tensor) or img.dim() != 4:
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f'expected an NCHW image batch, got {shape}')
        if img.shape[1] != self.in_chans:
            raise ValueError(f'expected {self.in_chans} input channels, got {img.shape[1]} (shape {tuple(img.shape)})')
        if min(img.shape[-2:]) < 1:
            raise ValueError(f'image sizes must be >= 1, got {tuple(img.shape[-2:])}')
        if self.inference.mode == 'slide':
            return self.slide_inference(img)
        return self.encode_decode(img)

    @torch.inference_mode()
    def predict(self, image: np.ndarray, scale: Optional[tuple[int, int]] = ADE20K_SCALE) -> np.ndarray:
        """Label map (H, W, int64 class indices 0..num_classes-1) for an RGB uint8 HxWx3 image.

        The image is resized into ``scale`` (mmseg's ADE20K test resize; None keeps its size), normalised, run by
        the inference mode, and the logits are resized back to the original size before the argmax.
        """
        height, width = check_rgb_image(image).shape[:2]
        param = next(self.parameters())
        x = preprocess(image, scale).to(device=param.device, dtype=param.dtype)
        logits = self(x)
        logits = F.interpolate(logits.float(), size=(height, width), mode='bilinear', align_corners=False)
        return logits.argmax(1)[0].cpu().numpy()
