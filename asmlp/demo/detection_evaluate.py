"""Held-out box and mask AP of a demo detector through the ``evaluate-coco`` code path, on written synth-coco sets.

:func:`write_heldout` writes a set as ``python -m asmlp synth-coco DIR --count N --seed S`` does;
:func:`evaluate_detector` runs :func:`asmlp.evaluation.coco_run.evaluate_detectors` (the loop, encoding and
pycocotools COCOeval of ``python -m asmlp evaluate-coco``) on it with the given model as the detector.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import torch.nn as nn

from .detection_recipes import HELDOUT_SETS, SCENE_SIZE, HeldoutSet

__all__ = ['AP_KEYS', 'write_heldout', 'demo_status', 'evaluate_detector', 'evaluate_heldout']

AP_KEYS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')


def write_heldout(folder: str | os.PathLike, heldout: HeldoutSet) -> Path:
    """Write ``heldout`` into ``folder`` (``val2017/`` + ``annotations/instances_val2017.json``)."""
    from ..evaluation.coco_synthetic import write_synthetic_coco
    write_synthetic_coco(folder, heldout.scenes, heldout.seed, SCENE_SIZE)
    return Path(folder)


def demo_status(name: str, source: Optional[str] = None, sha256: Optional[str] = None, kind: str = 'demo'):
    """A :class:`~asmlp.hub.WeightStatus` for demo detector weights (``kind`` ``none`` for a random init)."""
    from ..hub.status import WeightStatus
    message = ('demo weights — trained on generated scenes, not COCO' + (f' ({source})' if source else '')
               if kind == 'demo' else 'untrained (random weights)')
    return WeightStatus(model=name, kind=kind, source=source, revision_pinned=sha256 is not None, sha256=sha256,
                        message=message)


def _summary(metrics: Optional[dict]) -> dict:
    """Percent AP numbers of one iou type (None where undefined or with no detections)."""
    metrics = metrics or {}
    return {key: None if metrics.get(key) is None else round(metrics[key], 2) for key in AP_KEYS}


def evaluate_detector(model: nn.Module, name: str, data: str | os.PathLike, status: Any = None,
                      limit: Optional[int] = None) -> dict:
    """``{'images', 'detections', 'bbox': {AP...}, 'segm': {AP...}}`` of ``model`` on the COCO folder ``data`` (fp32,
    CPU, one process), computed by ``evaluate-coco``'s loop."""
    import torch

    from ..evaluation.coco_dataset import CocoFolder
    from ..evaluation.coco_run import CocoOptions, evaluate_detectors
    from ..evaluation.distributed import Procs
    status = status or demo_status(name)
    options = CocoOptions(limit=limit, allow_untrained=True, progress=False)
    report = evaluate_detectors([name], CocoFolder(data), options, Procs(), torch.device('cpu'),
                                lambda _: (model, status))
    (entry,) = report['models']
    return {'images': entry['images'], 'detections': entry['detections'], 'bbox': _summary(entry['bbox']),
            'segm': _summary(entry['segm'])}


def evaluate_heldout(model: nn.Module, name: str, sets: Sequence[HeldoutSet] = HELDOUT_SETS,
                     status: Any = None) -> dict:
    """``{set name: {'command', 'scenes', 'seed', 'images', 'detections', 'bbox', 'segm'}}`` on each held-out set,
    written into a temporary folder."""
    out = {}
    for heldout in sets:
        with tempfile.TemporaryDirectory(prefix='asmlp-heldout-') as tmp:
            result = evaluate_detector(model, name, write_heldout(tmp, heldout), status)
        out[heldout.name] = {'command': heldout.command(), 'scenes': heldout.scenes, 'seed': heldout.seed, **result}
    return out
