"""What weights a zoo model has on disk or in the caches, found without loading anything and without network (the
app's model list and presets use it before torch is imported)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..paths import weights_dir
from . import fetch
from .native import CONFIG_FILE, WEIGHTS_FILE
from .sources import DOWNLOAD_TYPES, WeightSource, namespace_source, weight_sources

__all__ = ['available_kind', 'local_candidates', 'source_available']


def local_candidates(source: WeightSource) -> list[Path]:
    """Where a by-hand / URL source's file may have been dropped: ``weights/<filename>`` (or ``.safetensors``)."""
    folder = weights_dir()
    names = [source.filename]
    stem, dot, _ = source.filename.rpartition('.')
    if dot and not source.filename.endswith('.safetensors'):
        names.append(f'{stem}.safetensors')
    return [folder / n for n in names]


def available_kind(name: str) -> Optional[str]:
    """The best weight kind ``name`` has on disk or in the caches, found without loading and without network
    (``ade20k``, ``imagenet-backbone``, ``demo``; None when there is none): ``weights/<name>/``, official files in
    ``weights/``, the asmlp download cache, the Hugging Face cache (``$ASMLP_HUB_NAMESPACE`` and the zoo's repos),
    ``weights/demo/<name>/``."""
    rank = {'ade20k': 0, 'demo': 1, 'imagenet-backbone': 2}
    kinds = []
    for folder, allowed in ((weights_dir() / name, ('ade20k', 'imagenet-backbone')),
                            (weights_dir() / 'demo' / name, ('demo',))):
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
        except (OSError, ValueError):
            continue
        if (folder / WEIGHTS_FILE).is_file() and isinstance(config, dict) and config.get('kind') in allowed:
            kinds.append(config['kind'])
    sources = weight_sources(name)
    try:
        namespace = namespace_source(name)
    except ValueError:
        namespace = None
    kinds += [source.kind for source in ([namespace] if namespace else []) + sources if source_available(source)]
    return min(kinds, key=rank.__getitem__, default=None)


def source_available(source: WeightSource) -> bool:
    """Whether ``source``'s file is here without network: in the Hugging Face cache (hub sources), dropped in
    ``weights/``, or in the asmlp download cache (URL and share-link sources)."""
    if source.type == 'hub':
        try:
            fetch.from_hf_cache(source.repo, source.filename, source.hub_revision)
            return True
        except fetch.Unavailable:
            return False
    return any(p.is_file() for p in local_candidates(source)) or (
        source.type in DOWNLOAD_TYPES and (fetch.downloads_dir() / source.filename).is_file())
