"""The published ADE20K val mIoU of a model's weights, to print beside the measured one: the checkpoint's own
numbers from ``data/ade20k_published.json`` when the resolved weight source is one of the files listed there, else
the zoo entry's ``published`` numbers (with their source)."""
from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Optional

from ..zoo import model_entry

__all__ = ['published_miou']


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files('asmlp').joinpath('data/ade20k_published.json').read_text())


def recorded_demo_miou(source: Optional[str]) -> Optional[dict]:
    """A demo folder's own recorded number: ``heldout.miou`` of its ``config.json`` (7 scene classes, lossless
    arrays at 128x128, single scale), x100."""
    from pathlib import Path
    try:
        config = json.loads((Path(source) / 'config.json').read_text())
        miou = float(config['heldout']['miou']) * 100
    except (TypeError, OSError, ValueError, KeyError):
        return None
    return {'mIoU': round(miou, 2), 'weights': source,
            'source': f'recorded heldout.miou of the demo weights ({source}config.json: '
                      f'{config["heldout"].get("scenes")} held-out scenes, scene classes, lossless arrays)'}


def published_miou(name: str, source: Optional[str], aug: str, kind: Optional[str] = None) -> dict:
    """``{'mIoU': float | None, 'source': str, 'weights': str | None}`` for zoo model ``name`` whose weights came
    from ``source`` (a path, repo@revision or URL; None when untrained), evaluated with ``aug``; for demo weights
    (``kind`` 'demo', single scale) the number recorded with them; none for untrained or ImageNet-backbone-only
    weights."""
    if kind == 'demo' and aug == 'none' and (recorded := recorded_demo_miou(source)) is not None:
        return recorded
    key = 'miou_ms' if aug == 'ms-flip' else 'miou_ss'
    if kind in ('none', 'imagenet-backbone'):  # the paper's number belongs to trained weights, not to these
        paper = model_entry(name).get('published', {})
        return {'mIoU': None, 'weights': None,
                'source': f'none for untrained weights (the trained model: {paper.get(key) or "-"}, '
                          f'{paper.get("source") or "no source"})'}
    for row in _table().get(name, []):
        if source and row['weights'] in source:
            return {'mIoU': row[key], 'source': row['source'], 'weights': row['weights']}
    entry = model_entry(name).get('published', {})
    return {'mIoU': entry.get(key), 'source': entry.get('source'), 'weights': None}
