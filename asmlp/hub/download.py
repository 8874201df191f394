"""``python -m asmlp download`` and ``python -m asmlp mirror``: get weights into the caches (or ``weights/``) ahead of
use, and put them on the Hub once.

- ``download NAME...``: what :func:`~asmlp.hub.load_pretrained` would use for those zoo models, fetched, checked
  and converted (a strict load) into the caches; ``--every-source`` fetches every source of each (for mirroring),
  ``--all`` the whole zoo (a Docker Space, a CI cache, a shared cluster cache).
- ``download URL --model NAME``: any URL or share link a person has, checked against that model (the converter's
  strict load) and written to ``weights/<NAME>/`` (``config.json`` + ``model.safetensors``; ``$ASMLP_WEIGHTS_DIR``
  honoured), where the resolver looks first.
- ``mirror NAME... --namespace USER``: download + convert + :func:`~asmlp.hub.publish.publish_folder` to
  ``USER/<NAME>``, exactly where the resolver looks with ``ASMLP_HUB_NAMESPACE=USER``.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from . import fetch
from .native import CONFIG_FILE, WEIGHTS_FILE
from .progress import ProgressCallback
from .resolve import load_pretrained
from .sources import WeightSource, namespace_source, weight_sources
from .status import WeightStatus

__all__ = ['DownloadError', 'Mirrored', 'download_models', 'download_url', 'mirror_models', 'mirror_dir']


class DownloadError(ValueError):
    """A download that cannot be kept (not that model's checkpoint, nothing to mirror, a target that exists)."""


@dataclass(frozen=True)
class Mirrored:
    model: str
    repo: str
    folder: Path
    status: WeightStatus
    url: Optional[str]       # commit URL (None for a dry run)


def download_models(names: Iterable[str], *, every_source: bool = False,
                    progress: Optional[ProgressCallback] = None) -> list[tuple[str, Optional[WeightSource],
                                                                              WeightStatus]]:
    """``(model, source or None, status)`` per model (``every_source``: per source of each model): each fetched,
    checked and loaded strictly exactly as :func:`load_pretrained` does (which keeps the files in its caches)."""
    from ..zoo import model_entry
    results = []
    for name in names:
        model_entry(name)
        if every_source:
            for source in weight_sources(name):
                if source.type == 'manual':
                    continue
                _, status = load_pretrained(name, sources=[source], progress=progress)
                results.append((name, source, status))
        else:
            _, status = load_pretrained(name, progress=progress)
            results.append((name, None, status))
    return results


def _filename_of(url: str) -> str:
    name = Path(urlsplit(url).path).name
    return name if name and name not in ('.', '..') else 'download.pth'


def download_url(url: str, model: str, *, force: bool = False,
                 progress: Optional[ProgressCallback] = None) -> tuple[Path, dict]:
    """Fetch ``url`` (a URL or a share link), check it is a checkpoint of zoo model ``model`` (strict load) and
    write ``weights/<model>/``; returns ``(folder, config)``. :class:`DownloadError` for a file that is not that
    model's (nothing is written), :class:`~asmlp.hub.fetch.Unavailable` when it cannot be had."""
    from ..convert import convert_file, write_converted
    from ..paths import weights_dir
    from ..zoo import model_entry
    model_entry(model)
    out = weights_dir() / model
    if (out / WEIGHTS_FILE).exists() and not force:
        raise DownloadError(f'{out / WEIGHTS_FILE} exists; pass --force to replace it')
    staging = fetch.downloads_dir()
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='.by-url-', dir=staging) as tmp:
        got = fetch.fetch_url(url, _filename_of(url), progress=progress, dest_dir=Path(tmp))
        try:
            converted, info = convert_file(got.path, model)
        except (ValueError, OSError) as error:  # CheckpointError, ConversionError, CheckpointMismatchError
            text = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            raise DownloadError(f'{url} is not a checkpoint of {model}: {text}; nothing written (deleted the '
                                f'download)') from None
        write_converted(converted, info, out)
    return out, info


def mirror_dir(name: str) -> Path:
    """Where ``mirror`` writes the folder it uploads: ``<asmlp cache>/mirror/<name>/``."""
    return fetch.downloads_dir().parent / 'mirror' / name


def _native_config(name: str, status: WeightStatus) -> dict:
    from ..convert import CONVERTER_VERSION
    config = {'model': name, 'kind': status.kind, 'source_format': status.format, 'source_sha256': status.sha256,
              'converter_version': CONVERTER_VERSION}
    if status.format == 'native' and status.source:  # a native folder: keep where its weights came from
        try:
            original = json.loads((Path(status.source) / CONFIG_FILE).read_text())
            config.update({k: original[k] for k in ('source_format', 'source_sha256') if k in original})
        except (OSError, ValueError):
            pass
    return config


def mirror_models(names: Iterable[str], namespace: str, *, private: bool = False, dry_run: bool = False,
                  progress: Optional[ProgressCallback] = None, api: Any = None) -> list[Mirrored]:
    """For each model: its best weights (:func:`load_pretrained`), written as a native folder and published to
    ``namespace/<name>``. :class:`DownloadError` for a model without trained weights to mirror."""
    from ..convert import write_converted
    from .publish import publish_folder
    namespace = namespace.strip().strip('/')
    if not namespace or '/' in namespace:
        raise DownloadError(f'--namespace must be a Hub user or organisation name, got {namespace!r}')
    done = []
    for name in names:
        model, status = load_pretrained(name, progress=progress)
        if status.kind not in ('ade20k', 'imagenet-backbone'):
            raise DownloadError(f'{name}: nothing to mirror: {status.message}')
        own = namespace_source(name)
        if own is not None and status.source == own.display:
            raise DownloadError(f'{name}: its weights already come from {own.repo} (ASMLP_HUB_NAMESPACE)')
        folder = mirror_dir(name)
        if folder.exists():
            shutil.rmtree(folder)
        write_converted(model, _native_config(name, status), folder)
        result = publish_folder(folder, f'{namespace}/{name}', private=private, dry_run=dry_run, api=api)
        done.append(Mirrored(name, result.repo, folder, status, result.url))
    return done
