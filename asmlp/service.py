"""What the app does, without the UI: load zoo models into a bounded cache, segment an image with several models,
and measure them (latency, GMACs, parameters, peak memory) beside the papers' numbers."""
from __future__ import annotations

import functools
import statistics
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from . import viz
from .precision import autocast, cpu_bf16_supported
from .zoo import list_models, model_entry

DEFAULT_MODELS = ('upernet_asmlp_tiny', 'upernet_swin_tiny', 'setr_pup_vit_small')  # light T/S ones for a CPU
_KIND_RANK = {'ade20k': 0, 'demo': 1, 'imagenet-backbone': 2}
DEVICES = ('auto', 'cpu', 'gpu')
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')


def resolve_device(choice: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'gpu' without CUDA is an error with a clear message."""
    if choice not in DEVICES:
        raise ValueError(f'device must be one of {DEVICES}, got {choice!r}')
    if choice == 'gpu' and not torch.cuda.is_available():
        raise ValueError('no CUDA GPU is available on this machine; choose CPU or auto')
    return torch.device('cuda' if choice != 'cpu' and torch.cuda.is_available() else 'cpu')


def resolve_precision(choice: str, device: torch.device) -> str:
    """'auto' -> fp16 on GPU, bf16 on CPUs with native bf16, else fp32."""
    if choice not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {choice!r}')
    if choice != 'auto':
        if device.type == 'cpu' and choice == 'fp16':
            raise ValueError('fp16 runs on GPU only; on CPU choose bf16 or fp32')
        return choice
    if device.type == 'cuda':
        return 'fp16'
    return 'bf16' if cpu_bf16_supported() else 'fp32'


def check_model_names(names) -> list[str]:
    """Zoo names from the UI or an API client, validated (unknown names raise ValueError naming them)."""
    if isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(names or []))
    if not names:
        raise ValueError('choose at least one model')
    for name in names:
        model_entry(name)
    return names


def weights_on_disk(name: str) -> Optional[str]:
    """The best weight kind found on disk for ``name`` without loading anything (None when there is none):
    ``weights/<name>/`` or an official file in ``weights/`` (what its source says), ``weights/demo/<name>/``."""
    import json

    from .hub.resolve import local_candidates
    from .hub.sources import weight_sources
    from .paths import weights_dir

    kinds = []
    for folder in (weights_dir() / name, weights_dir() / 'demo' / name):
        try:
            config = json.loads((folder / 'config.json').read_text())
        except (OSError, ValueError):
            continue
        if (folder / 'model.safetensors').is_file() and config.get('kind') in _KIND_RANK:
            kinds.append(config['kind'])
    for source in weight_sources(name):
        if any(path.is_file() for path in local_candidates(source)):
            kinds.append(source.kind)
    return min(kinds, key=_KIND_RANK.__getitem__, default=None)


def default_models() -> list[str]:
    """One AS-MLP, one Swin and one SETR model: per family the one with the best weights on disk, else the light
    T/S default."""
    chosen = []
    for default in DEFAULT_MODELS:
        family = model_entry(default)['family']
        ranked = [(_KIND_RANK[kind], name) for name in list_models()
                  if model_entry(name)['family'] == family and (kind := weights_on_disk(name))]
        chosen.append(min(ranked)[1] if ranked else default)
    return chosen


@dataclass
class Loaded:
    model: torch.nn.Module
    status: Any  # asmlp.hub.WeightStatus
    params: int


@dataclass
class Segmentation:
    name: str
    title: str
    labels: np.ndarray
    status: Any
    seconds: float
    device: str
    precision: str
    input_size: tuple[int, int]
    legend: list[dict] = field(default_factory=list)


class Engine:
    """Zoo models loaded on first use and kept in an LRU cache of at most ``max_models`` (per device)."""

    def __init__(self, max_models: int = 4, loader: Optional[Callable] = None):
        self.max_models = max_models
        self._loader = loader
        self._cache: OrderedDict[tuple[str, str], Loaded] = OrderedDict()
        self._lock = threading.RLock()

    def _load(self, name: str):
        if self._loader is not None:
            return self._loader(name)
        from .hub import load_pretrained
        return load_pretrained(name)

    def get(self, name: str, device: torch.device) -> Loaded:
        key = (name, str(device))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            model, status = self._load(name)
            model = model.eval().to(device)
            loaded = Loaded(model, status, sum(p.numel() for p in model.parameters()))
            self._cache[key] = loaded
            while len(self._cache) > self.max_models:
                self._cache.popitem(last=False)
            return loaded

    def cached(self) -> list[str]:
        return [name for name, _ in self._cache]

    def is_cached(self, name: str, device: torch.device) -> bool:
        return (name, str(device)) in self._cache

    def segment(self, image: np.ndarray, names, device: str = 'auto', precision: str = 'auto',
                short_side: int = 512, progress: Optional[Callable[[float, str], None]] = None) -> list[Segmentation]:
        """Label maps at the image's size, one per model; inference size: short side ``short_side``
        (long side capped at 4x, mmseg's 2048:512). ``progress(fraction, text)`` hears what happens."""
        names = check_model_names(names)
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        if not 32 <= int(short_side) <= 2048:
            raise ValueError(f'inference short side must be within 32..2048, got {short_side}')
        scale = (4 * int(short_side), int(short_side))
        results = []
        for i, name in enumerate(names):
            if progress is not None:
                verb = 'Running' if self.is_cached(name, dev) else 'Loading (first use) and running'
                progress(i / len(names), f'{verb} {model_entry(name)["title"]}')
            loaded = self.get(name, dev)
            start = time.perf_counter()
            with autocast(dev, prec):
                labels = loaded.model.predict(image, scale=scale)
            seconds = time.perf_counter() - start
            results.append(Segmentation(
                name=name, title=model_entry(name)['title'], labels=labels, status=loaded.status, seconds=seconds,
                device=dev.type, precision=prec, input_size=_inference_size(image, scale), legend=viz.legend(labels)))
        return results

    def measure(self, image: np.ndarray, names, device: str = 'auto', precision: str = 'auto',
                short_side: int = 512, runs: int = 5) -> list[dict]:
        """Per model: warm latency (median and p10-p90 of ``runs``), GMACs at the inference size and at the
        papers' 512x2048, parameters, peak memory of one forward, and the published numbers."""
        from .metrics import peak_memory_mb
        from .preprocess import preprocess

        names = check_model_names(names)
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        scale = (4 * int(short_side), int(short_side))
        x = preprocess(image, scale).to(dev)
        rows = []
        for name in names:
            loaded = self.get(name, dev)

            def forward():
                with torch.inference_mode(), autocast(dev, prec):
                    loaded.model(x)
                if dev.type == 'cuda':
                    torch.cuda.synchronize()
            forward()  # warm-up
            times = _time_runs(forward, runs, dev)
            at_size = _cached_metrics(name, tuple(x.shape[-2:]))
            paper = _cached_metrics(name, (512, 2048))
            deciles = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
            rows.append(dict(
                name=name, device=dev.type, precision=prec, input=f'{x.shape[-2]}x{x.shape[-1]}',
                latency_ms=statistics.median(times), p10_ms=deciles[0], p90_ms=deciles[-1], runs=len(times),
                gmacs=at_size['gmacs'], gmacs_512x2048=paper['gmacs'], params=at_size['params'],
                peak_memory_mb=peak_memory_mb(forward, dev), paper_params=paper['paper_params'],
                paper_gmacs=paper['paper_gmacs'], paper_miou_ss=paper['paper_miou_ss'],
                paper_miou_ms=paper['paper_miou_ms']))
        return rows


def _inference_size(image: np.ndarray, scale: tuple[int, int]) -> tuple[int, int]:
    from .preprocess import rescale_size
    return rescale_size(*image.shape[:2], scale)


def _time_runs(fn: Callable[[], None], runs: int, device: torch.device) -> list[float]:
    """Milliseconds per call; CUDA events on GPU."""
    times = []
    for _ in range(max(1, runs)):
        if device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


@functools.lru_cache(maxsize=256)
def _cached_metrics(name: str, size: tuple[int, int]) -> dict:
    from .metrics import segmenter_metrics
    return segmenter_metrics(name, size)
