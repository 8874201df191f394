"""The ``detect`` format: one model's detections as data — the app's ``/detect`` API and ``predict --task
instances`` write it.

Per detection: ``bbox`` [x, y, w, h] in image pixels (COCO's results format, mmdet's ``xyxy2xywh`` of the float
box), ``score``, ``category_id`` (COCO's 1..90) and ``category`` (its name), ``label`` (the detector's 0..79),
``segmentation``: the mask as COCO RLE (``counts`` a str; :func:`asmlp.evaluation.coco_metric.encode_instances`,
the evaluation's encoder), ``color``: the colour the panels draw it in. Detections at or above the score threshold,
best first (the panels' order). Per model (:func:`detection_record`): what ran, the weights, and those detections.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..detectors import coco_classes
from .coco_metric import encode_instances, to_coco_json

__all__ = ['above', 'captions', 'detections_data', 'detection_record', 'overlay']


def above(instances: Any, threshold: float) -> Any:
    """The instances scoring at least ``threshold``, best first (stable for equal scores)."""
    from dataclasses import replace
    order = np.argsort(-instances.scores, kind='stable')
    order = order[instances.scores[order] >= threshold]
    return replace(instances, boxes=instances.boxes[order], scores=instances.scores[order],
                   labels=instances.labels[order], masks=instances.masks[order])


def captions(instances: Any) -> list[str]:
    """``"<class name> <score>"`` of each instance (score to two decimals)."""
    names = [c['name'] for c in coco_classes()]
    return [f'{names[label]} {score:.2f}' for label, score in zip(instances.labels.tolist(),
                                                                   instances.scores.tolist())]


def overlay(image: np.ndarray, instances: Any, threshold: float, opacity: float = 0.5) -> np.ndarray:
    """``image`` with the instances at or above ``threshold`` drawn (:func:`asmlp.viz_instances.draw_instances`,
    colour ``i`` for the ``i``-th best)."""
    from ..viz_instances import draw_instances
    kept = above(instances, threshold)
    return draw_instances(image, kept.boxes, kept.masks, captions(kept), opacity)


def detections_data(instances: Any, threshold: float) -> list[dict]:
    """The detections at or above ``threshold`` in the ``detect`` format (module docstring), best first."""
    from ..viz_instances import instance_colors
    kept = above(instances, threshold)
    height, width = kept.image_size
    classes = coco_classes()
    result = encode_instances(kept, height, width, num_classes=len(classes))
    boxes, segms = to_coco_json(0, result, [c['category_id'] for c in classes])
    # encode_instances groups the detections by label, stably: back to the best-first order of ``kept``
    grouped = np.argsort(kept.labels, kind='stable')
    entries = [None] * len(kept)
    colors = instance_colors(len(kept))
    for position, index in enumerate(grouped.tolist()):
        box = boxes[position]
        label = int(result.labels[position])
        entries[index] = {'bbox': [round(v, 2) for v in box['bbox']], 'score': round(box['score'], 4),
                          'category_id': box['category_id'], 'category': classes[label]['name'], 'label': label,
                          'segmentation': segms[position]['segmentation'],
                          'color': '#%02x%02x%02x' % tuple(int(c) for c in colors[index])}
    return entries


def detection_record(detection: Any, threshold: float) -> dict:
    """One model's answer in the ``detect`` format: ``model``, ``title``, ``weights`` (the status message) and
    ``weights_kind``, ``seconds``, ``device``, ``precision``, ``image_size`` and ``input_size`` ([H, W]),
    ``score_threshold`` and ``detections`` (:func:`detections_data`) of an :class:`asmlp.engine.Detection`."""
    return {'model': detection.name, 'title': detection.title, 'weights': detection.status.message,
            'weights_kind': detection.status.kind, 'seconds': round(detection.seconds, 4),
            'device': detection.device, 'precision': detection.precision,
            'image_size': list(detection.instances.image_size), 'input_size': list(detection.input_size),
            'score_threshold': float(threshold), 'detections': detections_data(detection.instances, threshold)}
