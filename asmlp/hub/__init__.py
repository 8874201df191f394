"""Pretrained weights: where each zoo model's come from, getting them (fast when offline), pinning, publishing.

- :func:`load_pretrained` (``resolve.py``): ``(model, WeightStatus)`` from the best source available;
  :func:`create_segmenter` (``pretrained=True``: that model), :func:`prefetch` (download only),
  :func:`available_kind` (what is on disk or cached, no network).
- :class:`WeightStatus` (``status.py``): kind ``ade20k`` / ``imagenet-backbone`` / ``demo`` / ``none``, source,
  pin state, sha256, a message for people.
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

import importlib

_LAZY = {  # public name -> the module that defines it (imported on first use: the app's page needs no torch)
    'register_cli': '.cli', 'run_download': '.cli', 'run_mirror': '.cli', 'run_pin': '.cli', 'run_publish': '.cli',
    'create_segmenter': '.resolve', 'load_pretrained': '.resolve', 'prefetch': '.resolve',
    'available_kind': '.availability', 'WeightSource': '.sources', 'weight_sources': '.sources',
    'WeightStatus': '.status',
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
