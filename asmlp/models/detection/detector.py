"""Two-stage detector (backbone + FPN + RPN + RoI head) with mmdet 2.11's ``TwoStageDetector`` layout and test.

mmdet ``mmdet/models/detectors/two_stage.py`` (github.com/open-mmlab/mmdetection v2.11.0): state-dict keys
``backbone.*``, ``neck.*``, ``rpn_head.*``, ``roi_head.*`` as in the official checkpoints of
svip-lab/AS-MLP-Object-Detection and SwinTransformer/Swin-Transformer-Object-Detection. ``simple_test`` of one
padded image: features, RPN proposals (:mod:`.rpn_head`), the RoI head's boxes and masks (:mod:`.roi_heads`), in
original image pixels. ``forward`` is mmdet's ``forward_dummy`` (what ``tools/analysis_tools/get_flops.py``
counts): backbone, neck, the RPN head on every level, then the box head(s) on 1000 RoIs and the mask head(s) on 100.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .fpn import FPN
from .instances import Instances
from .preprocess import COCO_SCALE, ImageMeta, preprocess_image
from .roi_heads import CascadeRoIHead, StandardRoIHead
from .rpn_head import RPNHead

__all__ = ['TwoStageDetector']


class TwoStageDetector(nn.Module):
    """``backbone`` (image -> 4 NCHW maps at strides 4..32), ``neck`` (FPN, 5 maps), ``rpn_head``, ``roi_head``."""

    def __init__(self, backbone: nn.Module, neck: FPN, rpn_head: RPNHead, roi_head: StandardRoIHead | CascadeRoIHead,
                 img_scale: tuple[int, int] = COCO_SCALE):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.rpn_head = rpn_head
        self.roi_head = roi_head
        self.img_scale = tuple(img_scale)

    @property
    def num_classes(self) -> int:
        head = self.roi_head.bbox_head
        return (head[-1] if isinstance(head, nn.ModuleList) else head).num_classes

    def extract_feat(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.neck(self.backbone(img))

    def forward(self, img: torch.Tensor) -> tuple:
        """mmdet's ``forward_dummy``: RPN outputs and the RoI head(s) on fixed RoIs (for counting, no NMS)."""
        feats = self.extract_feat(img)
        return self.rpn_head(feats), self.roi_head.forward_dummy(feats)

    def simple_test(self, img: torch.Tensor, meta: ImageMeta) -> Instances:
        """Instances of the single padded, normalised image ``img`` (1, 3, Hp, Wp) described by ``meta``."""
        if img.dim() != 4 or img.shape[0] != 1:
            raise ValueError(f'expected one image (1, 3, H, W), got shape {tuple(img.shape)}')
        feats = self.extract_feat(img)
        proposals, _ = self.rpn_head.get_proposals(feats, meta.img_shape)
        dets, labels, masks = self.roi_head.simple_test(feats, proposals, meta)
        return Instances(boxes=dets[:, :4].float().cpu().numpy(), scores=dets[:, 4].float().cpu().numpy(),
                         labels=labels.cpu().numpy(), masks=masks.cpu().numpy())

    @torch.inference_mode()
    def predict(self, image: np.ndarray) -> Instances:
        """Instances of an RGB uint8 HxWx3 image: mmdet's test pipeline (:mod:`.preprocess`) and ``simple_test``."""
        img, meta = preprocess_image(image, self.img_scale)
        param = next(self.parameters())
        return self.simple_test(img.to(param.device, param.dtype), meta)
