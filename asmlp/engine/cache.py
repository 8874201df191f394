"""The model cache: models loaded on first use and kept in an LRU bounded by count and bytes.

Keyed by (name, device); ``max_bytes`` counts parameters + buffers (the newest model always stays). A model loaded
without the weights it should have (a source unreachable or broken: its status lists problems and it is not
ADE20K-trained) is looked up again after ``retry_after`` seconds. Every cached model gets the time-budget hook
(:func:`asmlp.engine.budget.install_deadline`).
"""
from __future__ import annotations

import gc
import logging
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ..errors import first_line
from .budget import install_deadline

__all__ = ['Loaded', 'ModelCache', 'load_segmenter', 'load_detector', 'release_gpu']

log = logging.getLogger('asmlp.engine')


@dataclass
class Loaded:
    model: torch.nn.Module
    status: Any  # asmlp.hub.WeightStatus
    params: int
    nbytes: int = 0          # parameters + buffers
    degraded: bool = False   # loaded without the weights it should have (a source failed): looked up again later
    loaded_at: float = 0.0   # time.monotonic()


def _load_safely(name: str, load: Callable, build: Callable, untrained: str):
    """``load(name)``, with the net for what the resolver did not foresee (e.g. an unwritable cache): the model
    degrades to ``build(name)``, untrained, with a status that says why, and the other models of a request run.
    Untrained models are built from a seed derived from the name: the same model on every load."""
    from ..hub import WeightStatus
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(name.encode()))
        try:
            return load(name)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001  (the net for what the resolver did not foresee)
            why = f'{type(error).__name__}: {first_line(error)}'
            log.warning('%s: loading weights failed: %s', name, why)
            torch.manual_seed(zlib.crc32(name.encode()))
            status = WeightStatus(model=name, kind='none', source=None, revision_pinned=False, sha256=None,
                                  message=f'{untrained} (loading weights failed: {why})',
                                  problems=(f'loading weights failed: {why}',))
            return build(name), status


def load_segmenter(name: str):
    """``(model, WeightStatus)`` of the zoo model ``name`` with the best weights the resolver finds
    (:func:`asmlp.hub.load_pretrained`, which reports missing or broken weights in the status); a fault the
    resolver did not foresee degrades it to untrained (:func:`_load_safely`)."""
    from ..hub import load_pretrained
    from ..hub.status import UNTRAINED_MESSAGE
    from ..zoo import build_segmenter
    return _load_safely(name, load_pretrained, build_segmenter, UNTRAINED_MESSAGE)


def load_detector(name: str):
    """``(model, WeightStatus)`` of the COCO detector ``name`` (``data/coco.json``) with the best weights the
    resolver finds (:func:`asmlp.hub.load_detector`: COCO, then the demo folder), as :func:`load_segmenter`."""
    from ..detectors import create_detector
    from ..hub import load_detector as resolve_detector
    from ..hub.status import UNTRAINED_DETECTOR_MESSAGE
    return _load_safely(name, resolve_detector, create_detector, UNTRAINED_DETECTOR_MESSAGE)


def _degraded(status) -> bool:
    return bool(getattr(status, 'problems', ())) and getattr(status, 'kind', None) not in ('ade20k', 'imagenet', 'coco')


def _model_bytes(model: torch.nn.Module) -> int:
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def release_gpu() -> None:
    """Free what an out-of-memory error or an evicted model left on the GPU."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelCache:
    """``loader(name) -> (model, status)`` results on their devices, LRU-bounded (see the module docstring)."""

    def __init__(self, loader: Callable[[str], tuple[torch.nn.Module, Any]] = load_segmenter, *,
                 max_models: int = 4, max_bytes: int = 3 * 2**30, retry_after: float = 60.0):
        self.loader = loader
        self.max_models, self.max_bytes, self.retry_after = max_models, max_bytes, retry_after
        self._cache: OrderedDict[tuple[str, str], Loaded] = OrderedDict()
        self._lock = threading.RLock()

    def _fresh(self, hit: Optional[Loaded]) -> bool:
        return hit is not None and not (hit.degraded and time.monotonic() - hit.loaded_at >= self.retry_after)

    def needs_load(self, name: str, device) -> bool:
        """Whether :meth:`get` would load ``name`` on ``device`` (not cached, or cached degraded and due for a look)."""
        return not self._fresh(self._cache.get((name, str(torch.device(device)))))

    def get(self, name: str, device) -> Loaded:
        device = torch.device(device)
        key = (name, str(device))
        with self._lock:
            hit = self._cache.get(key)
            if self._fresh(hit):
                self._cache.move_to_end(key)
                return hit
            if hit is not None:
                self.drop(key)  # its weights were missing because of a fault: look again
            while len(self._cache) >= self.max_models:
                self.drop(next(iter(self._cache)))  # room first: the peak is the cache plus the new model
            model, status = self.loader(name)
            model = install_deadline(model.eval().to(device))
            loaded = Loaded(model, status, sum(p.numel() for p in model.parameters()), _model_bytes(model),
                            _degraded(status), time.monotonic())
            self._cache[key] = loaded
            while len(self._cache) > 1 and (len(self._cache) > self.max_models or self.nbytes() > self.max_bytes):
                self.drop(next(iter(self._cache)))
            return loaded

    def drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._cache.pop(key, None)
        if key[1].startswith('cuda'):
            release_gpu()

    def names(self) -> list[str]:
        return [name for name, _ in list(self._cache)]

    def contains(self, name: str, device) -> bool:
        return (name, str(torch.device(device))) in self._cache

    def nbytes(self) -> int:
        return sum(loaded.nbytes for loaded in list(self._cache.values()))

    def clear(self) -> None:
        with self._lock:
            keys = list(self._cache)
        for key in keys:
            self.drop(key)

    def after_fork(self) -> None:
        self._lock = threading.RLock()
