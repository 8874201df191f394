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
from .cli import register_cli, run_download, run_mirror, run_pin, run_publish
from .resolve import available_kind, create_segmenter, load_pretrained, prefetch
from .sources import WeightSource, weight_sources
from .status import WeightStatus

__all__ = ['load_pretrained', 'create_segmenter', 'prefetch', 'available_kind', 'WeightStatus', 'WeightSource',
           'weight_sources', 'register_cli', 'run_pin', 'run_publish', 'run_download', 'run_mirror']
