"""The COCO evaluation loop: per detector, its weights (refused when untrained unless allowed), this process's shard
``indices[rank::world]`` of the images (no duplicates), each image's detections encoded as mmdet does (boxes, RLE
masks), one gather of every detector's results to rank 0, then, on rank 0 only, the results json in dataset order
(the same bytes as one process) and COCOeval (:mod:`.coco_metric`) beside the published numbers.

A detector is anything with ``predict(image_rgb_uint8 HxWx3) -> Instances``-like (``boxes`` xyxy in image pixels,
``scores``, ``labels`` 0..79 in the order of the sorted COCO category ids, ``masks`` (N, H, W) bool); a provider
``name -> (detector, status)`` supplies them (default: the zoo, :func:`zoo_detector`). ``status`` is a
:class:`~asmlp.hub.WeightStatus` (``kind``, ``message``, ``source``, ``sha256``).
``$ASMLP_EVAL_FAULT=RANK:N[:raise|kill|hang]`` makes process RANK fail after N images (tests).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch

from .coco_dataset import CocoDataError, CocoFolder
from .coco_metric import ImageResult, coco_json, encode_instances, evaluate_json
from .distributed import Procs, shard
from .run import REFUSED_KINDS, Refused, inject_fault

__all__ = ['Detector', 'Provider', 'CocoOptions', 'zoo_detector', 'check_detector_names',
           'check_images', 'evaluate_detectors', 'gather_to_main', 'published_ap']


class Detector(Protocol):
    def predict(self, image: np.ndarray) -> Any:
        """Instances-like: ``boxes`` (N, 4) xyxy, ``scores`` (N,), ``labels`` (N,) 0..79, ``masks`` (N, H, W)."""


Provider = Callable[[str], tuple[Detector, Any]]


@dataclass
class CocoOptions:
    limit: Optional[int] = None
    precision: str = 'fp32'
    allow_untrained: bool = False
    progress: bool = True
    save_results: Optional[Path] = None


def check_detector_names(names: list[str]) -> list[str]:
    """The detector names, validated against the zoo (ValueError naming unknown ones)."""
    from ..engine.choices import check_names
    from ..detectors import detector_entry
    return check_names(names, detector_entry, 'detector', 'COCO detector names')


def zoo_detector(name: str) -> tuple[Detector, Any]:
    """Zoo detector ``name`` with its weights through the resolver (:func:`asmlp.hub.load_detector`; the untrained
    model, kind ``none``, when there are none)."""
    from ..hub import load_detector
    return load_detector(name)


def published_ap(name: str, status: Any) -> dict:
    """The published box / mask AP for the weights of ``status``: a zoo weight source's own ``reported`` numbers
    when ``status.source`` is that file (e.g. a 1x checkpoint), else the entry's ``published`` ones (the AS-MLP
    paper's Table 5); none for untrained weights (the numbers belong to trained ones)."""
    from ..detectors import detector_entry
    try:
        entry = detector_entry(name)
    except ValueError:
        entry = {}
    paper = dict(entry.get('published') or {})
    if status.kind in REFUSED_KINDS:
        return {'box_ap': None, 'mask_ap': None,
                'source': f'none for untrained weights (the trained model: {paper.get("box_ap") or "-"} / '
                          f'{paper.get("mask_ap") or "-"}, {paper.get("source") or "no source"})'}
    for weights in entry.get('weights', ()):
        file = weights.get('filename') or str(weights.get('url') or '').rsplit('/', 1)[-1]
        if status.source and file and file in status.source and weights.get('reported'):
            paper = weights['reported']
            break
    return {'box_ap': paper.get('box_ap'), 'mask_ap': paper.get('mask_ap'), 'source': paper.get('source'),
            'schedule': paper.get('schedule')}


def weights_label(status: Any) -> str:
    return {'none': 'untrained (random)', 'imagenet-backbone': 'ImageNet backbone only (random heads)',
            'coco': 'COCO weights'}.get(status.kind, status.message)


def check_images(data: CocoFolder, limit: Optional[int]) -> list[int]:
    """The indices to evaluate (the first ``limit``); CocoDataError naming missing image files."""
    indices = list(range(len(data) if limit is None else min(limit, len(data))))
    missing = data.missing_images(indices)
    if missing:
        more = f' and {len(missing) - 3} more' if len(missing) > 3 else ''
        raise CocoDataError(f'{len(missing)} of {len(indices)} images listed in {data.annotation_path.name} are '
                            f'missing: {", ".join(map(str, missing[:3]))}{more}')
    return indices


def gather_to_main(procs: Procs, obj: Any) -> Optional[list[Any]]:
    """Every process's ``obj`` on rank 0, in rank order (one gather); None on the other ranks."""
    if not procs.distributed:
        return [obj]
    out = [None] * procs.world if procs.main else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out


def _detect_shard(name: str, detector: Detector, data: CocoFolder, indices: list[int], options: CocoOptions,
                  procs: Procs, device: torch.device) -> dict:
    from ..precision import autocast
    mine = shard(indices, procs)
    results: list[tuple[int, ImageResult]] = []
    bar = None
    if options.progress and procs.main:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(mine), desc=name + (f' (rank 0 of {procs.world})' if procs.distributed else ''),
                   unit='img', dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for i in mine:
            inject_fault(procs, len(results))
            image = data.load(i)
            with torch.inference_mode(), autocast(device, options.precision):
                instances = detector.predict(image)
            try:
                results.append((i, encode_instances(instances, *image.shape[:2], num_classes=len(data.cat_ids))))
            except ValueError as e:
                raise ValueError(f'{name} on {data.info(i)["file_name"]}: {e}') from None
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return {'results': results, 'seconds': time.perf_counter() - start}


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def evaluate_detectors(names: list[str], data: CocoFolder, options: CocoOptions, procs: Procs,
                       device: torch.device, provider: Provider = zoo_detector) -> Optional[dict]:
    """Evaluate each detector on the first ``options.limit`` images of ``data`` (this process's shard), gather the
    results to rank 0 once and return the report there (None on the other ranks)."""
    indices = check_images(data, options.limit)
    parts = []
    for name in names:
        detector, status = provider(name)
        if status.kind in REFUSED_KINDS and not options.allow_untrained:
            raise Refused(f'{name}: {status.message}; its AP would be meaningless (pass --allow-untrained to '
                          f'evaluate it anyway, or put its COCO weights in weights/: see weights/README.md)')
        if isinstance(detector, torch.nn.Module):
            procs.check_same_weights(name, detector, status.sha256, status.source)
            detector = detector.to(device).eval()
        parts.append((name, status, _detect_shard(name, detector, data, indices, options, procs, device)))
        del detector
    gathered = gather_to_main(procs, [(p['results'], p['seconds']) for _, _, p in parts])
    if gathered is None:
        return None
    img_ids = [data.img_ids[i] for i in indices]
    models = []
    for k, (name, status, _) in enumerate(parts):
        results = sorted((r for rank_parts in gathered for r in rank_parts[k][0]), key=lambda r: r[0])
        if [i for i, _ in results] != indices:
            raise RuntimeError(f'{name}: the processes returned {len(results)} image results for {len(indices)} '
                               f'images (each image must be evaluated exactly once)')
        seconds = max(rank_parts[k][1] for rank_parts in gathered)
        results_json = coco_json([(data.img_ids[i], result) for i, result in results], data.cat_ids)
        files = {}
        if options.save_results is not None:
            for iou_type, entries in results_json.items():
                files[iou_type] = str(options.save_results / f'{name}.{iou_type}.json')
                _write_json(Path(files[iou_type]), entries)
        metrics = evaluate_json(data.coco, results_json, img_ids, data.cat_ids)
        models.append({
            'model': name,
            'weights': {'kind': status.kind, 'label': weights_label(status), 'source': status.source,
                        'sha256': status.sha256, 'message': status.message},
            'precision': options.precision, 'device': device.type,
            'images': len(results), 'detections': len(results_json['bbox']),
            'seconds': round(seconds, 3),
            'images_per_second': round(len(results) / seconds, 3) if seconds > 0 and results else None,
            'bbox': metrics.get('bbox'), 'segm': metrics.get('segm'),
            'published': published_ap(name, status),
            'results_files': files,
        })
    return {'data': {'root': str(data.root), 'images': len(indices), 'notes': list(data.notes)},
            'processes': procs.world,
            'protocol': 'mmdet 2.11 CocoDataset.evaluate: pycocotools COCOeval, bbox and segm, maxDets [100, 300, '
                        '1000], IoU .50:.05:.95; AP at 100 detections, AP50/AP75/APs/m/l at 1000; segm results keep '
                        'their box (box areas for APs/m/l); category ids = the sorted ids of the annotation file',
            'models': models}
