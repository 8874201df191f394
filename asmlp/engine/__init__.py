"""The engine: what the app, the CLI and scripts run models with, without any UI.

One part per job, composed by :class:`Engine` (``engine.py``):

- ``choices.py``: devices, precisions, name checks, the inference size to propose (data only: no torch);
- ``devices.py``: :func:`resolve_device`, :func:`resolve_precision`, :func:`check_model_names`;
- ``cache.py``: :class:`ModelCache`, models loaded on first use into an LRU bounded by count and bytes;
- ``admission.py``: the admission :class:`Gate` (one request runs, a bounded FIFO waits, the rest are busy) and the
  explicit :class:`Request` a caller holds across its steps;
- ``budget.py``: :class:`Budget`, model work on an ``asmlp-inference`` thread under the request's time budget,
  stopped at the next module boundary (a forward pre-hook) once spent;
- ``segment.py``: :class:`Segmentation`, one model's segmentation with the GPU out-of-memory ladder, and
  :class:`Timings`, the MS+flip estimate;
- ``detect.py``: :class:`Detection`, one COCO detector's instances of an image (the detectors share the cache);
- ``measure.py``: :class:`Measurement`, latency, GMACs, parameters and memory beside the papers' numbers;
- ``timing.py``: :class:`Timing` and :func:`summarize` (median, p10, p90).

``import asmlp.engine`` is light: each name is imported on first use (``choices`` and ``admission`` need no torch).
"""
from __future__ import annotations

from ..lazy import lazy_getattr

_LAZY = {  # public name -> the module that defines it
    'DEVICES': '.choices', 'PRECISIONS': '.choices', 'NAME_RE': '.choices', 'check_names': '.choices',
    'default_short_side': '.choices', 'check_detector_names': '.choices', 'is_detector': '.choices',
    'resolve_device': '.devices', 'resolve_precision': '.devices', 'check_model_names': '.devices',
    'Gate': '.admission', 'Ticket': '.admission', 'Request': '.admission',
    'Budget': '.budget', 'install_deadline': '.budget',
    'ModelCache': '.cache', 'Loaded': '.cache', 'load_segmenter': '.cache', 'load_detector': '.cache',
    'Detection': '.detect', 'detect_one': '.detect',
    'Segmentation': '.segment', 'Timings': '.segment',
    'Measurement': '.measure',
    'Timing': '.timing', 'summarize': '.timing',
    'Engine': '.engine', 'DEFAULT_MODELS': '.engine',
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
