"""The COCO detector zoo: Mask R-CNN and Cascade Mask R-CNN on AS-MLP and Swin, built from ``data/coco.json``.

The table has two parts. ``architectures``: the two detectors as the official configs define them (neck, RPN with
its anchors, RoI head with its box and mask heads as component types plus keyword arguments, ``test_cfg``, test
``img_scale``; sources: svip-lab/AS-MLP-Object-Detection and SwinTransformer/Swin-Transformer-Object-Detection
``configs/_base_/models/*``). ``detectors``: every detector of the AS-MLP paper's Table 5 with its backbone, the
official config it follows, the numbers ``published`` for it (Table 5's 3x box / mask AP, params, FLOPs at
1280x800, with the repositories' README numbers) and its weight sources, or ``weights_note`` when none were ever
released; and the two demo detectors (``"demo": true``, the ``mask_rcnn_nano`` architecture), which
:func:`list_detectors` lists only when asked. The table is data; the code here maps component types to
constructors. Weights are not loaded here (:func:`asmlp.convert_detection.load_detector_file`).

:func:`detector_metrics` counts parameters and GMACs (on the meta device) the way mmdet's
``tools/analysis_tools/get_flops.py`` did: input (1, 3, 1280, 800), ``forward_dummy`` (box head(s) on 1000 RoIs,
mask head(s) on 100, no NMS).
"""
from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the table is read without torch; the models are imported when one is built
    from .models.detection import TwoStageDetector

__all__ = ['list_detectors', 'detector_entry', 'architecture_entry', 'coco_classes', 'build_detector',
           'create_detector', 'detector_metrics', 'FLOPS_SIZE']

FLOPS_SIZE = (1280, 800)  # (H, W): mmdet get_flops.py's default --shape, the input of the published FLOPs


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath('data/coco.json').read_text())


def list_detectors(include_demo: bool = False) -> list[str]:
    """Names of the zoo detectors in the table's order (AS-MLP then Swin; Mask R-CNN then Cascade; small to large):
    Table 5's; with ``include_demo`` also the demo detectors (``"demo": true``, trained by this project on generated
    scenes: :mod:`asmlp.demo`)."""
    return [name for name, entry in _table()['detectors'].items() if include_demo or not entry.get('demo')]


def detector_entry(name: str) -> dict[str, Any]:
    """A copy of the entry of ``name``; ValueError for unknown names, listing the known ones."""
    table = _table()['detectors']
    if not isinstance(name, str) or name not in table:
        raise ValueError(f'unknown detector {name!r}; known detectors: {", ".join(table)}')
    return copy.deepcopy(table[name])


def architecture_entry(name: str) -> dict[str, Any]:
    """A copy of the architecture (``mask_rcnn`` / ``cascade_mask_rcnn``) of detector ``name``."""
    return copy.deepcopy(_table()['architectures'][detector_entry(name)['architecture']])


@functools.lru_cache(maxsize=1)
def _classes() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(resources.files(__package__).joinpath('data/coco_classes.json').read_text())['classes'])


def coco_classes() -> list[dict[str, Any]]:
    """The 80 COCO classes in label order: ``{'label': 0..79, 'name': ..., 'category_id': 1..90}``."""
    return [dict(c) for c in _classes()]


def _components() -> dict[str, Any]:
    from .models.detection.bbox_heads import ConvFCBBoxHead, shared_2fc_bbox_head
    from .models.detection.fpn import FPN
    from .models.detection.mask_head import FCNMaskHead
    return {'FPN': FPN, 'ConvFCBBoxHead': ConvFCBBoxHead, 'Shared2FCBBoxHead': shared_2fc_bbox_head,
            'FCNMaskHead': FCNMaskHead}


def _build(spec: dict[str, Any], **extra) -> Any:
    return _components()[spec['type']](**{**spec['kwargs'], **extra})


def build_detector(entry: dict[str, Any], arch: dict[str, Any]) -> TwoStageDetector:
    """A detector with random weights from a ``detectors`` entry and an ``architectures`` entry of the table's
    schema (tests build smaller ones this way)."""
    from .models.detection.anchors import AnchorGenerator
    from .models.detection.bbox_heads import RCNNTestConfig
    from .models.detection.detector import TwoStageDetector
    from .models.detection.roi_heads import CascadeRoIHead, StandardRoIHead
    from .models.detection.rpn_head import RPNHead, RPNTestConfig
    from .zoo import BACKBONES

    spec = entry['backbone']
    backbone = BACKBONES[spec['type']](spec['name'], **spec['kwargs'])
    neck = _build(arch['neck'], in_channels=entry['neck_in_channels'])
    rpn = arch['rpn_head']
    rpn_head = RPNHead(**rpn['kwargs'], anchor_generator=AnchorGenerator(**rpn['anchors']),
                       cfg=RPNTestConfig(**arch['test_cfg']['rpn']))
    roi = arch['roi_head']
    rcnn_cfg = RCNNTestConfig(**arch['test_cfg']['rcnn'])
    if roi['type'] == 'StandardRoIHead':
        roi_head = StandardRoIHead(_build(roi['bbox_head']), _build(roi['mask_head']), rcnn_cfg,
                                   roi['featmap_strides'])
    elif roi['type'] == 'CascadeRoIHead':
        roi_head = CascadeRoIHead([_build(s) for s in roi['bbox_head']], [_build(s) for s in roi['mask_head']],
                                  rcnn_cfg, roi['featmap_strides'])
    else:
        raise ValueError(f'unknown RoI head type {roi["type"]!r}')
    return TwoStageDetector(backbone, neck, rpn_head, roi_head, img_scale=tuple(arch['img_scale']))


def create_detector(name: str) -> TwoStageDetector:
    """The zoo detector ``name`` with random weights, in eval mode (build under ``torch.device('meta')`` to count
    without memory). Trained weights: :func:`asmlp.convert_detection.load_detector_file`."""
    return build_detector(detector_entry(name), architecture_entry(name)).eval()


def detector_metrics(name: str, size: tuple[int, int] = FLOPS_SIZE) -> dict:
    """Parameters and GMACs of ``name`` at ``size`` (H, W) beside the published numbers (Table 5).

    Counted on the meta device with :func:`asmlp.metrics.count_gmacs` over ``forward`` (mmdet's ``forward_dummy``:
    backbone, FPN, RPN head on all levels, box head(s) on 1000 RoIs, mask head(s) on 100). torch's flop counter
    counts the matmuls of Swin's window attention, which mmcv's hook-based counter (``get_flops``) did not:
    ``attention_gmacs`` is that part (the ``bmm`` calls, the only ones in these models). mmcv did count norms,
    activations and pooling, which are not multiply-accumulates here; neither counts RoIAlign or NMS.
    ``params_off`` / ``gmacs_off``: counted / published - 1 (None where nothing is published: the demo detectors).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .metrics import count_gmacs, count_params
    entry = detector_entry(name)
    height, width = size
    with torch.device('meta'):
        model = create_detector(name)
    ops = FlopCounterMode(display=False)

    def forward(m, x):
        with ops:  # nested inside count_gmacs's counter: the same forward, seen op by op
            return m(x)
    gmacs = count_gmacs(model, (1, 3, height, width), forward=forward)
    attention = ops.get_flop_counts().get('Global', {}).get(torch.ops.aten.bmm, 0) / 2 / 1e9
    params = count_params(model)
    published = entry['published']
    return dict(
        name=name, family=entry['family'], size=entry['size'], title=entry['title'],
        architecture=entry['architecture'], input=[height, width], params=params, gmacs=gmacs,
        attention_gmacs=attention, paper_params=published['params'], paper_gmacs=published['gmacs'],
        paper_box_ap=published['box_ap'], paper_mask_ap=published['mask_ap'], paper_source=published['source'],
        params_off=params / published['params'] - 1 if published['params'] else None,
        gmacs_off=gmacs / published['gmacs'] - 1 if published['gmacs'] else None,
        weights=len(entry['weights']), count_note=entry.get('count_note'),
    )
