"""Counted metrics of zoo models (parameters, GMACs, activation memory; :func:`asmlp.metrics.segmenter_metrics`),
cached on disk so that ``python -m asmlp info`` answers in seconds without importing torch.

A count is deterministic for a zoo entry, an input size and the code that builds and counts the model. The cache key
holds all three: the entry's JSON, the size, the package version and a fingerprint of the counting code's source
files (so a changed model file is recounted even before a version bump). ``refresh=True`` recounts. An unwritable
cache only costs the recount.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import __version__
from .paths import atomic_write, cache_dir
from .zoo import model_entry

PACKAGE = Path(__file__).resolve().parent
COUNTING_CODE = ('metrics.py', 'memory.py', 'zoo.py', 'models', 'ops')  # what builds and counts a model


def code_fingerprint(extra: tuple[str, ...] = ()) -> str:
    """sha256 of the source files that decide the counts (``extra``: more of them, relative to the package)."""
    digest = hashlib.sha256(__version__.encode())
    for entry in (*COUNTING_CODE, *extra):
        path = PACKAGE / entry
        for file in sorted(path.rglob('*.py')) if path.is_dir() else [path]:
            digest.update(file.relative_to(PACKAGE).as_posix().encode() + b'\0' + file.read_bytes())
    return digest.hexdigest()


def counts_path(name: str, size: tuple[int, int]) -> Path:
    height, width = size
    key = json.dumps({'entry': model_entry(name), 'size': [height, width], 'code': code_fingerprint()},
                     sort_keys=True)
    return cache_dir() / 'counts' / f'{name}_{height}x{width}_{hashlib.sha256(key.encode()).hexdigest()[:16]}.json'


def cached_segmenter_metrics(name: str, size: tuple[int, int] = (512, 2048), refresh: bool = False) -> dict:
    """:func:`asmlp.metrics.segmenter_metrics` of ``name`` at ``size`` (H, W), from the cache when it holds them."""
    def count() -> dict:
        from .metrics import segmenter_metrics
        return segmenter_metrics(name, tuple(size))
    return _cached(counts_path(name, tuple(size)), count, refresh)


def _cached(path: Path, count, refresh: bool) -> dict:
    """The JSON row at ``path``, else (or with ``refresh``) ``count()``, written there atomically."""
    if not refresh:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    row = count()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(row)))
    except OSError:
        pass
    return row


def cached_classifier_metrics(name: str, refresh: bool = False) -> dict:
    """:func:`asmlp.classifiers.classifier_metrics` of ``name`` (at 224x224), from the cache when it holds them.
    The key adds the classifier's entry, ``classifiers.py`` and timm's version (Swin and DeiT are timm's code)."""
    from importlib.metadata import version

    from .classifiers import classifier_entry
    key = json.dumps({'entry': classifier_entry(name), 'timm': version('timm'),
                      'code': code_fingerprint(('classifiers.py',))}, sort_keys=True)
    path = cache_dir() / 'counts' / f'imagenet_{name}_224_{hashlib.sha256(key.encode()).hexdigest()[:16]}.json'

    def count() -> dict:
        from .classifiers import classifier_metrics
        return classifier_metrics(name)
    return _cached(path, count, refresh)
