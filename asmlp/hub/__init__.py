"""Pretrained weights: where each zoo model's come from, getting them (fast when offline), pinning, publishing.

- :func:`load_pretrained` / :func:`load_detector` (``resolve.py``): ``(model, WeightStatus)`` of a segmenter / a
  COCO detector from the best source available;
  :func:`prefetch` (download only), :func:`weights_on_disk` / :func:`available_kind` (``availability.py``: what
  is on disk or cached, no network); :func:`create_segmenter` (random weights, or ``pretrained=True``).
- One resolver for every kind of model: ``locate.py`` finds files (:class:`~asmlp.hub.locate.Located`, no loading),
  ``kinds.py`` registers the kinds (segmenters, detectors: ``loaders.py``; classifiers: :mod:`asmlp.classifiers`) and
  their loaders, :func:`~asmlp.hub.resolve.resolve` joins them (sha256 checks, records, status, the untrained
  fallback).
- :class:`WeightStatus` (``status.py``): kind ``ade20k`` / ``imagenet-backbone`` / ``demo`` / ``none``, source,
  pin state, sha256, a message for people (every message is written there).
- ``sources.py``: the zoo's ``weights`` lists (:class:`WeightSource`, :func:`weight_sources`) and
  ``$ASMLP_HUB_NAMESPACE``.
- ``net.py``: the reachability probe and its negative cache; ``fetch.py``: Hub files, URL and share-link downloads
  (``sharepoint.py``: a share link's download forms; ``progress.py``: what people see; ``records.py``: the
  sha256 of the first good download).
- ``native.py``: this project's ``config.json`` + ``model.safetensors`` folders.
- ``pin.py`` (``python -m asmlp pin``), ``publish.py`` (``python -m asmlp publish``), ``download.py``
  (``python -m asmlp download`` and ``mirror``), ``cli.py`` (:func:`register_cli`).
"""
from __future__ import annotations

from ..lazy import lazy_getattr

_LAZY = {  # public name -> the module that defines it (imported on first use: the app's page needs no torch)
    'register_cli': '.cli', 'run_download': '.cli', 'run_mirror': '.cli', 'run_pin': '.cli', 'run_publish': '.cli',
    'create_segmenter': '.resolve', 'load_pretrained': '.resolve', 'prefetch': '.resolve',
    'load_detector': '.resolve', 'prefetch_detector': '.resolve',
    'available_kind': '.availability', 'weights_on_disk': '.availability',
    'WeightSource': '.sources', 'weight_sources': '.sources',
    'WeightStatus': '.status', 'fetch_url': '.fetch',
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
