"""Pretrained weights: where each zoo model's come from, getting them (fast when offline), pinning, publishing.

- :func:`load_pretrained` (``resolve.py``): ``(model, WeightStatus)`` from the best source available.
- :class:`WeightStatus` (``status.py``): kind ``ade20k`` / ``imagenet-backbone`` / ``demo`` / ``none``, source,
  pin state, sha256, a message for people.
- ``sources.py``: the zoo's ``weights`` lists (:class:`WeightSource`, :func:`weight_sources`) and
  ``$ASMLP_HUB_NAMESPACE``.
- ``net.py``: the reachability probe and its negative cache; ``fetch.py``: Hub files and URL downloads.
- ``native.py``: this project's ``config.json`` + ``model.safetensors`` folders.
- ``pin.py`` (``python -m asmlp pin``), ``publish.py`` (``python -m asmlp publish``), ``cli.py``
  (:func:`register_cli`).
"""
from .cli import register_cli, run_pin, run_publish
from .resolve import load_pretrained
from .sources import WeightSource, weight_sources
from .status import WeightStatus

__all__ = ['load_pretrained', 'WeightStatus', 'WeightSource', 'weight_sources', 'register_cli', 'run_pin',
           'run_publish']
