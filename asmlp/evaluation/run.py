"""The evaluation loop: per model, its weights (refused when untrained unless allowed), this process's shard of the
images, per-image sums (written as they come, keyed by image name, so an interrupted run can resume with any
number of processes), one all_reduce of the int64 sums, and the summary beside the published numbers.

Per-image records: ``<out>.parts/<model>.<aug>.rank<r>.jsonl``, a header line with the settings, then one line per
image (``{"name", "areas": [[class, I, U, P, L], ...]}`` for the classes with a non-empty union, or ``{"name",
"bad"}`` for a skipped sample). ``$ASMLP_EVAL_FAULT=RANK:N[:raise|kill|hang]`` makes process RANK fail after N
images (tests).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..ade20k import CLASSES
from ..models.tta import aug_scales, img_scale, segment
from .dataset import ADE20KFolder, BadSample, encode_labels
from .distributed import Procs, shard
from .metrics import NUM_CLASSES, Totals, intersect_and_union
from .published import published_miou

__all__ = ['EvalOptions', 'Refused', 'evaluate_models', 'weights_label', 'FAULT_ENV', 'inject_fault']

FAULT_ENV = 'ASMLP_EVAL_FAULT'
REFUSED_KINDS = ('none', 'imagenet-backbone')


class Refused(ValueError):
    """A model whose weights would make the numbers meaningless (untrained, or an ImageNet backbone with a random
    head), without ``--allow-untrained``."""


@dataclass
class EvalOptions:
    aug: str = 'none'
    limit: Optional[int] = None
    precision: str = 'fp32'
    allow_untrained: bool = False
    skip_bad: bool = False
    resume: bool = False
    out: Optional[Path] = None
    save_predictions: Optional[Path] = None
    progress: bool = True
    short_side: Optional[int] = None  # None: each model's zoo inference.short_side


def weights_label(status) -> str:
    """What the weights are, in a few words for the table."""
    return {'ade20k': 'ADE20K weights', 'demo': 'demo weights (trained on generated scenes, not ADE20K)',
            'imagenet-backbone': 'ImageNet backbone only (random head)',
            'none': 'untrained (random)'}.get(status.kind, status.kind)


def _parts_dir(out: Path) -> Path:
    return out.with_name(out.name + '.parts')


def _settings(name: str, status, options: EvalOptions, short: int) -> dict:
    return {'model': name, 'aug': options.aug, 'precision': options.precision, 'short_side': short,
            'weights_sha256': status.sha256, 'weights_kind': status.kind}


def _read_records(files: list[Path], settings: dict) -> dict[str, dict]:
    """name -> record of every complete line of ``files`` (a torn last line is ignored); files with other settings
    are an error."""
    done = {}
    for path in files:
        lines = path.read_text().split('\n')
        try:
            header = json.loads(lines[0])
        except ValueError:
            continue
        if header.get('settings') != settings:
            raise ValueError(f'--resume: {path} was written with other settings ({header.get("settings")}; now '
                             f'{settings}); remove it or write to another --out')
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the torn line of an interrupted write (or the empty end)
            done[record['name']] = record
    return done


def _areas_of(record: dict) -> np.ndarray:
    areas = np.zeros((4, NUM_CLASSES), dtype=np.int64)
    for c, *values in record['areas']:
        areas[:, c] = values
    return areas


def _record(name: str, areas: np.ndarray) -> dict:
    used = np.flatnonzero(areas[1])
    return {'name': name, 'areas': [[int(c), *map(int, areas[:, c])] for c in used]}


def inject_fault(procs: Procs, done: int) -> None:
    """``$ASMLP_EVAL_FAULT=RANK:N[:raise|kill|hang]``: process RANK fails (an error), dies (SIGKILL) or hangs
    after N images."""
    spec = os.environ.get(FAULT_ENV, '')
    if not spec:
        return
    rank, after, *how = spec.split(':')
    if procs.rank != int(rank) or done < int(after):
        return
    how = how[0] if how else 'raise'
    if how == 'kill':
        import signal
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == 'hang':
        while True:
            time.sleep(60)
    raise RuntimeError(f'injected fault ({FAULT_ENV}={spec}) after {done} images')


def _autocast(device: torch.device, precision: str):
    from ..precision import autocast
    return autocast(device, precision)


def evaluate_one(name: str, data: ADE20KFolder, indices: list[int], options: EvalOptions, procs: Procs,
                 device: torch.device) -> dict:
    """This process's share of the evaluation of zoo model ``name``: the summed areas, images, skipped samples."""
    from .. import load_pretrained
    model, status = load_pretrained(name)
    if status.kind in REFUSED_KINDS and not options.allow_untrained:
        raise Refused(f'{name}: {status.message}; its mIoU would be meaningless (pass --allow-untrained to '
                      f'evaluate it anyway, or put its ADE20K weights in weights/: see weights/README.md)')
    procs.check_same_weights(name, model, status.sha256, status.source)
    model = model.to(device).eval()
    short = int(options.short_side or model.inference.short_side)
    settings = _settings(name, status, options, short)
    mine = shard(indices, procs)
    done: dict[str, dict] = {}
    part = None
    if options.out is not None:
        parts = _parts_dir(options.out)
        parts.mkdir(parents=True, exist_ok=True)
        pattern = f'{name}.{options.aug}.rank*.jsonl'
        if options.resume:
            done = _read_records(sorted(parts.glob(pattern)), settings)
        procs.barrier()  # everyone has read the old records before anyone writes
        if not options.resume and procs.main:
            for old in parts.glob(pattern):
                old.unlink()
        procs.barrier()
        part = parts / f'{name}.{options.aug}.rank{procs.rank}.jsonl'
    pred_dir = options.save_predictions / name if options.save_predictions else None
    if pred_dir is not None:
        pred_dir.mkdir(parents=True, exist_ok=True)

    totals, skipped, computed = Totals(), [], 0
    bar = None
    if options.progress and procs.main:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(mine), desc=f'{name} {options.aug}' + (f' (rank 0 of {procs.world})'
                                                                   if procs.distributed else ''),
                   unit='img', dynamic_ncols=True)
    start = time.perf_counter()
    log = None
    try:
        if part is not None:
            fresh = not part.exists() or part.stat().st_size == 0
            log = part.open('a')
            if fresh:
                log.write(json.dumps({'settings': settings}) + '\n')
            elif not part.read_bytes().endswith(b'\n'):
                log.write('\n')  # end the torn line of the interrupted run
        for i in mine:
            image_name = data.names[i]
            record = done.get(image_name)
            if record is not None and ('areas' in record or options.skip_bad):
                if 'bad' in record:
                    skipped.append({'name': image_name, 'problem': record['bad']})
                else:
                    totals.add(_areas_of(record))
                if bar is not None:
                    bar.update(1)
                continue
            inject_fault(procs, computed)
            try:
                sample = data.load(i)
            except BadSample as bad:
                if not options.skip_bad:
                    raise
                skipped.append({'name': image_name, 'problem': str(bad)})
                if log is not None:
                    log.write(json.dumps({'name': image_name, 'bad': str(bad)}) + '\n')
                    log.flush()
                continue
            with torch.inference_mode(), _autocast(device, options.precision):
                labels = segment(model, sample.image, options.aug, short)
            areas = intersect_and_union(labels, sample.label)
            if pred_dir is not None:
                from PIL import Image
                Image.fromarray(encode_labels(labels)).save(pred_dir / f'{image_name}.png')
            if log is not None:
                log.write(json.dumps(_record(image_name, areas)) + '\n')
                log.flush()
            totals.add(areas)
            computed += 1
            if bar is not None:
                bar.update(1)
    finally:
        if log is not None:
            log.close()
        if bar is not None:
            bar.close()
    return {'name': name, 'status': status, 'short_side': short, 'areas': totals.areas, 'images': totals.images,
            'computed': computed, 'skipped': skipped, 'seconds': time.perf_counter() - start}


def evaluate_models(names: list[str], data: ADE20KFolder, options: EvalOptions, procs: Procs,
                    device: torch.device) -> dict:
    """Evaluate every model on the first ``options.limit`` images of ``data`` (this process's shard of them),
    combine the processes' sums (one all_reduce) and return the report (the same on every process)."""
    indices = list(range(len(data) if options.limit is None else min(options.limit, len(data))))
    parts = [evaluate_one(name, data, indices, options, procs, device) for name in names]
    counts = np.stack([np.concatenate([p['areas'].ravel(), [p['images'], p['computed']]]) for p in parts])
    counts = procs.sum_int64(counts, device)  # the only reduction: the int64 sums of every model at once
    meta = procs.gather([(p['skipped'], p['seconds']) for p in parts])
    models = []
    for k, p in enumerate(parts):
        areas = counts[k, :4 * NUM_CLASSES].reshape(4, NUM_CLASSES)
        images, computed = int(counts[k, -2]), int(counts[k, -1])
        skipped = sorted((s for rank_meta in meta for s in rank_meta[k][0]), key=lambda s: s['name'])
        seconds = max(rank_meta[k][1] for rank_meta in meta)
        status = p['status']
        summary = Totals(areas=areas, images=images).summary(CLASSES)
        models.append({
            'model': p['name'],
            'weights': {'kind': status.kind, 'label': weights_label(status), 'source': status.source,
                        'sha256': status.sha256, 'message': status.message},
            'aug': options.aug, 'precision': options.precision, 'device': device.type,
            'test_scales': aug_scales(p['short_side']) if options.aug == 'ms-flip' else [img_scale(p['short_side'])],
            'flip': options.aug == 'ms-flip',
            'images': images, 'images_computed': computed, 'skipped': skipped,
            'seconds': round(seconds, 3),
            'images_per_second': round(computed / seconds, 3) if seconds > 0 and computed else None,
            'aAcc': summary['aAcc'], 'mIoU': summary['mIoU'], 'mAcc': summary['mAcc'],
            'classes_scored': summary['classes_scored'],
            'published': published_miou(p['name'], status.source, options.aug, status.kind),
            'per_class': summary['per_class'],
            'areas': areas.tolist(),
        })
    return {'data': {'root': str(data.root), 'images': len(indices), 'notes': list(data.notes)},
            'processes': procs.world,
            'protocol': 'mmseg 0.x: keep-ratio resize into (4s, s) with s the model\'s test short side, '
                        + ('scales x (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), each unflipped and flipped, softmax '
                           'averaged' if options.aug == 'ms-flip' else 'single scale')
                        + '; mIoU = nanmean over classes of dataset-summed int64 intersection / union, label 0 '
                          '("other") and 255 ignored',
            'models': models}
