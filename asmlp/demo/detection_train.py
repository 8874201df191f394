"""Seeded CPU training of a demo detector (Mask R-CNN nano) on generated synth-coco scenes.

The losses are mmdet 2.11's for Mask R-CNN (github.com/open-mmlab/mmdetection v2.11.0:
``mmdet/models/dense_heads/anchor_head.py`` ``loss``, ``mmdet/models/roi_heads/bbox_heads/bbox_head.py`` ``loss``,
``mmdet/models/roi_heads/mask_heads/fcn_mask_head.py`` ``loss``; ``configs/_base_/models/mask_rcnn_r50_fpn.py``):

* RPN: sigmoid cross-entropy of the sampled anchors (positive = foreground) and L1 of the positive anchors'
  deltas (stds 1), both summed over the batch and divided by the number of sampled anchors;
* R-CNN: softmax cross-entropy over the 81 classes (background last) of the sampled RoIs (mean), L1 of the
  positive RoIs' deltas of their class (stds 0.1, 0.1, 0.2, 0.2), summed and divided by the number of sampled RoIs;
* mask: per-pixel sigmoid cross-entropy of each positive RoI's class channel against its 28x28 target (mean).

Proposals for the R-CNN come from the RPN's own (detached) outputs through the inference selection
(:func:`asmlp.models.detection.rpn_head.select_proposals`) with the training settings. The heads start from mmdet's
initialisation (:func:`init_heads`); the backbone from timm's. Targets: :mod:`.detection_targets`.
"""
from __future__ import annotations

import io
import math
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from .detection_recipes import DETECTION_RECIPES, DetectionRecipe, train_scene_seed
from .detection_targets import (RCNN_ASSIGNER, RPN_ASSIGNER, add_gt_as_proposals, bbox2delta, mask_targets,
                                max_iou_assign, random_sample)
from .train import round_to_storage

__all__ = ['TrainingScene', 'SceneBatch', 'make_scene', 'make_batch', 'init_heads', 'detection_losses',
           'DetectionTrainResult', 'train_detector', 'param_groups']


@dataclass(frozen=True)
class TrainingScene:
    """One scene as the evaluation reads it: ``image`` HxWx3 uint8 RGB after the JPEG round trip of a written
    synth-coco set; ``boxes`` (n, 4) float32 x1, y1, x2, y2; ``labels`` (n,) int64 contiguous 0..79; ``masks``
    (n, H, W) uint8."""
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


@dataclass(frozen=True)
class SceneBatch:
    """Padded, normalised images (B, 3, Hp, Wp) and per image the resized ``img_shape`` and its targets (tensors)."""
    images: torch.Tensor
    img_shapes: list[tuple[int, int]]
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    masks: list[torch.Tensor]


def _jpeg_round_trip(image: np.ndarray) -> np.ndarray:
    """The image as ``write_synthetic_coco`` stores it (Pillow JPEG) and ``evaluate-coco`` reads it (OpenCV)."""
    from ..evaluation.coco_synthetic import JPEG_QUALITY
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=JPEG_QUALITY, subsampling=0)
    bgr = cv2.imdecode(np.frombuffer(buffer.getvalue(), dtype=np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def make_scene(seed: Sequence[int], size: Sequence[int]) -> TrainingScene:
    """The synth-coco scene of generator seed ``seed`` at ``size`` (H, W) with its targets."""
    from pycocotools import mask as mask_util

    from ..evaluation.coco_dataset import coco_categories
    from ..evaluation.coco_synthetic import generate_coco_scene
    height, width = int(size[0]), int(size[1])
    scene = generate_coco_scene(tuple(seed), (height, width))
    label_of = {c['id']: k for k, c in enumerate(coco_categories())}
    anns = scene.annotations
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)], np.float32).reshape(-1, 4)
    labels = np.array([label_of[a['category_id']] for a in anns], np.int64)
    masks = np.zeros((len(anns), height, width), np.uint8)
    for k, a in enumerate(anns):
        masks[k] = mask_util.decode(mask_util.frPyObjects(a['segmentation'], height, width)).max(axis=2)
    return TrainingScene(_jpeg_round_trip(scene.image), boxes, labels, masks)


def make_batch(scenes: Sequence[TrainingScene], scale: Sequence[int]) -> SceneBatch:
    """The scenes through the detectors' test pipeline (:func:`asmlp.models.detection.preprocess_image`: keep-ratio
    resize into ``scale``, normalise, pad to 32), targets resized with them (masks nearest, as mmdet's ``Resize``)."""
    from ..models.detection import preprocess_image
    images, shapes, boxes, labels, masks = [], [], [], [], []
    for scene in scenes:
        img, meta = preprocess_image(scene.image, tuple(scale))
        images.append(img)
        shapes.append(tuple(meta.img_shape))
        boxes.append(torch.from_numpy(scene.boxes * meta.scale_factor[None, :]))
        labels.append(torch.from_numpy(scene.labels))
        new_h, new_w = meta.img_shape
        resized = scene.masks if (new_h, new_w) == tuple(meta.ori_shape) else np.stack(
            [cv2.resize(m, (new_w, new_h), interpolation=cv2.INTER_NEAREST) for m in scene.masks]
        ).reshape(-1, new_h, new_w)
        masks.append(torch.from_numpy(np.ascontiguousarray(resized)))
    if len({tuple(i.shape) for i in images}) != 1:
        raise ValueError(f'scenes of one batch must pad to one shape, got {sorted({tuple(i.shape) for i in images})}')
    return SceneBatch(torch.cat(images), shapes, boxes, labels, masks)


@torch.no_grad()
def init_heads(model: nn.Module) -> nn.Module:
    """mmdet 2.11's initialisation of the neck and heads (``init_weights`` of ``FPN``, ``RPNHead``,
    ``ConvFCBBoxHead`` / ``BBoxHead``, ``FCNMaskHead``): FPN convs Xavier-uniform; RPN convs N(0, 0.01); box head
    fcs Xavier-uniform, ``fc_cls`` N(0, 0.01), ``fc_reg`` N(0, 0.001); mask head convs, deconv and logits Kaiming
    (fan_out, ReLU); all biases 0. Uses torch's global RNG."""
    def fill(module, init, *args, **kwargs):
        init(module.weight, *args, **kwargs)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

    for m in model.neck.modules():
        if isinstance(m, nn.Conv2d):
            fill(m, nn.init.xavier_uniform_)
    for m in (model.rpn_head.rpn_conv, model.rpn_head.rpn_cls, model.rpn_head.rpn_reg):
        fill(m, nn.init.normal_, 0, 0.01)
    head = model.roi_head.bbox_head
    for fc in head.shared_fcs:
        fill(fc, nn.init.xavier_uniform_)
    for conv in head.shared_convs:
        fill(conv.conv, nn.init.kaiming_normal_, mode='fan_out', nonlinearity='relu')
    fill(head.fc_cls, nn.init.normal_, 0, 0.01)
    fill(head.fc_reg, nn.init.normal_, 0, 0.001)
    for m in model.roi_head.mask_head.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fill(m, nn.init.kaiming_normal_, mode='fan_out', nonlinearity='relu')
    return model


def _rpn_losses(model: nn.Module, cls_scores, bbox_preds, anchors: torch.Tensor, batch: SceneBatch,
                recipe: DetectionRecipe, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    logits, targets, pred_deltas, target_deltas = [], [], [], []
    for i, gt in enumerate(batch.boxes):
        score = torch.cat([c[i].permute(1, 2, 0).reshape(-1) for c in cls_scores])
        delta = torch.cat([b[i].permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds])
        assign = max_iou_assign(anchors, gt, **RPN_ASSIGNER)
        pos, neg = random_sample(assign, recipe.rpn_samples, recipe.rpn_pos_fraction, generator)
        logits += [score[pos], score[neg]]
        targets += [score.new_ones(pos.numel()), score.new_zeros(neg.numel())]
        pred_deltas.append(delta[pos])
        target_deltas.append(bbox2delta(anchors[pos], gt[assign.gt_inds[pos] - 1]))
    logits, targets = torch.cat(logits), torch.cat(targets)
    num_samples = max(logits.numel(), 1)
    loss_cls = F.binary_cross_entropy_with_logits(logits, targets, reduction='sum') / num_samples
    loss_bbox = F.l1_loss(torch.cat(pred_deltas), torch.cat(target_deltas), reduction='sum') / num_samples
    return loss_cls, loss_bbox


@torch.no_grad()
def _proposals(model: nn.Module, cls_scores, bbox_preds, level_anchors: Sequence[torch.Tensor], batch: SceneBatch,
               recipe: DetectionRecipe) -> list[torch.Tensor]:
    from ..models.detection.rpn_head import RPNTestConfig, select_proposals
    cfg = RPNTestConfig(nms_pre=recipe.proposal_nms_pre, max_per_img=recipe.proposal_max, iou_threshold=0.7)
    out = []
    for i, img_shape in enumerate(batch.img_shapes):
        scores = [c[i].detach().permute(1, 2, 0).reshape(-1).sigmoid() for c in cls_scores]
        deltas = [b[i].detach().permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds]
        proposals, _ = select_proposals(scores, deltas, level_anchors, img_shape, model.rpn_head.bbox_coder, cfg)
        out.append(proposals)
    return out


def detection_losses(model: nn.Module, batch: SceneBatch, recipe: DetectionRecipe,
                     generator: torch.Generator) -> dict[str, torch.Tensor]:
    """mmdet's five Mask R-CNN losses of one batch (see the module docstring); ``generator`` draws the samples."""
    feats = model.extract_feat(batch.images)
    rpn = model.rpn_head
    cls_scores, bbox_preds = rpn(feats)
    level_anchors = rpn.anchor_generator.grid_anchors([tuple(c.shape[-2:]) for c in cls_scores], batch.images.device)
    rpn_cls, rpn_bbox = _rpn_losses(model, cls_scores, bbox_preds, torch.cat(level_anchors), batch, recipe, generator)

    roi_head = model.roi_head
    bbox_head = roi_head.bbox_head
    background = bbox_head.num_classes
    rois, labels, pos_rois, pos_labels, box_targets, mask_goals = [], [], [], [], [], []
    for i, proposals in enumerate(_proposals(model, cls_scores, bbox_preds, level_anchors, batch, recipe)):
        gt, gt_labels = batch.boxes[i], batch.labels[i]
        assign = max_iou_assign(proposals, gt, gt_labels, **RCNN_ASSIGNER)
        boxes, assign = add_gt_as_proposals(proposals, gt, gt_labels, assign)
        pos, neg = random_sample(assign, recipe.rcnn_samples, recipe.rcnn_pos_fraction, generator)
        pos_gt = assign.gt_inds[pos] - 1
        sampled = torch.cat([boxes[pos], boxes[neg]])
        rois.append(torch.cat([sampled.new_full((sampled.shape[0], 1), i), sampled], dim=1))
        labels.append(torch.cat([gt_labels[pos_gt], gt_labels.new_full((neg.numel(),), background)]))
        pos_rois.append(rois[-1][:pos.numel()])
        pos_labels.append(gt_labels[pos_gt])
        box_targets.append(bbox2delta(boxes[pos], gt[pos_gt], bbox_head.bbox_coder.means, bbox_head.bbox_coder.stds))
        mask_goals.append(mask_targets(batch.masks[i], boxes[pos], pos_gt))
    rois, labels, pos_rois, pos_labels = torch.cat(rois), torch.cat(labels), torch.cat(pos_rois), torch.cat(pos_labels)
    cls_score, bbox_pred = bbox_head(roi_head.bbox_roi_extractor(feats, rois))
    rcnn_cls = F.cross_entropy(cls_score, labels)
    is_pos = labels < background
    pos_deltas = bbox_pred.view(bbox_pred.shape[0], -1, 4)[is_pos, labels[is_pos]]
    rcnn_bbox = F.l1_loss(pos_deltas, torch.cat(box_targets), reduction='sum') / max(rois.shape[0], 1)
    if pos_rois.shape[0]:
        mask_logits = roi_head.mask_head(roi_head.mask_roi_extractor(feats, pos_rois))
        picked = mask_logits[torch.arange(pos_rois.shape[0]), pos_labels]
        loss_mask = F.binary_cross_entropy_with_logits(picked, torch.cat(mask_goals))
    else:  # no positives in the batch (no objects): nothing to learn for the masks
        loss_mask = cls_score.sum() * 0
    return {'rpn_cls': rpn_cls, 'rpn_bbox': rpn_bbox, 'rcnn_cls': rcnn_cls, 'rcnn_bbox': rcnn_bbox,
            'mask': loss_mask}


@dataclass
class DetectionTrainResult:
    """The trained detector (eval mode, weights rounded to their fp16 storage) and how it went."""
    model: nn.Module
    name: str
    recipe: DetectionRecipe
    seed: int
    steps_done: int
    seconds: float
    final_losses: dict[str, float]
    stopped_early: bool
    threads: int

    @property
    def final_loss(self) -> float:
        return sum(self.final_losses.values()) if self.final_losses else float('nan')

    def info(self) -> dict:
        r = self.recipe
        return {'steps': r.steps, 'steps_done': self.steps_done, 'stopped_early': self.stopped_early,
                'seed': self.seed, 'batch_size': r.batch_size, 'lr': r.lr, 'weight_decay': r.weight_decay,
                'warmup_steps': r.warmup_steps, 'grad_clip': r.grad_clip, 'rpn_samples': r.rpn_samples,
                'rpn_pos_fraction': r.rpn_pos_fraction, 'proposal_nms_pre': r.proposal_nms_pre,
                'proposal_max': r.proposal_max, 'rcnn_samples': r.rcnn_samples,
                'rcnn_pos_fraction': r.rcnn_pos_fraction, 'size': list(r.size), 'optimizer': 'AdamW',
                'schedule': 'linear warm-up, cosine to 0', 'seconds': round(self.seconds, 1),
                'final_loss': round(self.final_loss, 4),
                'final_losses': {k: round(v, 4) for k, v in self.final_losses.items()},
                'threads': self.threads, 'torch': torch.__version__, 'cpu': platform.processor() or platform.machine()}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay for biases, norms and Swin's relative position tables (the Swin / AS-MLP detection
    configs' ``paramwise_cfg``)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or 'relative_position_bias_table' in name else decay).append(p)
    return [{'params': decay, 'weight_decay': weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]


def _lr_factor(step: int, recipe: DetectionRecipe) -> float:
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(recipe.steps - recipe.warmup_steps, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_demo_detector(name: str, seed: int) -> nn.Module:
    """The detector ``name`` at its training init: torch seeded with ``seed``, timm's backbone init, mmdet's heads."""
    from ..detectors import create_detector
    torch.manual_seed(seed)
    return init_heads(create_detector(name))


def train_detector(name: str, *, steps: Optional[int] = None, seed: int = 0, max_minutes: Optional[float] = None,
                   threads: Optional[int] = 2, progress: bool = True,
                   recipe: Optional[DetectionRecipe] = None) -> DetectionTrainResult:
    """Train the demo detector ``name`` from its seeded init on scenes ``train_scene_seed(seed, i)``.

    ``steps`` overrides the recipe's (the warm-up shrinks to a tenth of them when longer). ``max_minutes`` stops
    early (``stopped_early``: the weights then depend on the machine's speed). ``threads``: torch threads while
    training (None: the current setting; restored afterwards). The same name, recipe, seed, torch version and thread
    count give the same weights.
    """
    recipe = recipe or DETECTION_RECIPES[name]
    if steps is not None:
        if steps < 1:
            raise ValueError(f'steps must be >= 1, got {steps}')
        recipe = replace(recipe, steps=steps, warmup_steps=min(recipe.warmup_steps, max(steps // 10, 1)))
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(name, recipe, seed, max_minutes, progress)
    finally:
        torch.set_num_threads(previous)


def _train(name: str, recipe: DetectionRecipe, seed: int, max_minutes: Optional[float],
           progress: bool) -> DetectionTrainResult:
    model = build_demo_detector(name, seed).train()
    scale = model.img_scale
    optimizer = torch.optim.AdamW(param_groups(model, recipe.weight_decay), lr=recipe.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, recipe))
    generator = torch.Generator().manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=recipe.steps, desc=name, unit='step', dynamic_ncols=True)
    start = time.perf_counter()
    deadline = None if max_minutes is None else start + 60 * max_minutes
    smooth: dict[str, float] = {}
    step, stopped = 0, False

    def scenes_of(index: int) -> list[TrainingScene]:
        return [make_scene(train_scene_seed(seed, index * recipe.batch_size + k), recipe.size)
                for k in range(recipe.batch_size)]

    # the next batch's scenes are generated while this one trains (a pure function of the seeds: same weights)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix='asmlp-demo-scenes')
    upcoming = pool.submit(scenes_of, 0)
    try:
        for step in range(recipe.steps):
            if deadline is not None and time.perf_counter() > deadline:
                stopped = True
                break
            scenes = upcoming.result()
            if step + 1 < recipe.steps:
                upcoming = pool.submit(scenes_of, step + 1)
            losses = detection_losses(model, make_batch(scenes, scale), recipe, generator)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            schedule.step()
            for k, v in losses.items():
                smooth[k] = v.item() if k not in smooth else 0.95 * smooth[k] + 0.05 * v.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f'{sum(smooth.values()):.3f}', refresh=False)
        else:
            step = recipe.steps
    finally:
        upcoming.cancel()
        pool.shutdown(wait=True)
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    round_to_storage(model)
    return DetectionTrainResult(model=model, name=name, recipe=recipe, seed=seed, steps_done=step, seconds=seconds,
                                final_losses=smooth, stopped_early=stopped, threads=torch.get_num_threads())
