"""``python -m asmlp download`` and ``python -m asmlp mirror``: get weights into the caches (or ``weights/``) ahead of
use, and put them on the Hub once.

- ``download NAME...``: what :func:`~asmlp.hub.load_pretrained` would use for those zoo models, fetched, checked
  and converted (a strict load) into the caches; a model whose best source failed (e.g. its ADE20K file did not
  load and only the ImageNet backbone did) is reported with the file that failed (:attr:`Downloaded.missed`).
  ``--every-source`` fetches every source of each from where it says (for mirroring: ``weights/<name>/``, files
  dropped in ``weights/`` and the namespace repo do not stand in for it), ``--all`` the whole zoo (a Docker
  Space, a CI cache, a shared cluster cache).
- ``download URL --model NAME``: any URL or share link a person has, checked against that model (the converter's
  strict load) and written to ``weights/<NAME>/`` (``config.json`` + ``model.safetensors``; ``$ASMLP_WEIGHTS_DIR``
  honoured), where the resolver looks first. The download is kept in ``<asmlp cache>/downloads/by-url/`` (a cut
  transfer resumes there, and a second process waits for the first one's file); the same file again (same sha256)
  is not written again, another file needs ``force``. The folder is written under its
  :func:`~asmlp.hub.fetch.target_lock`.
- ``mirror NAME... --namespace USER``: download + convert + :func:`~asmlp.hub.publish.publish_folder` to
  ``USER/<NAME>``, exactly where the resolver looks with ``ASMLP_HUB_NAMESPACE=USER``.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from ..errors import first_line
from . import fetch, records
from .locate import SOURCES_ONLY, Problem
from .native import CONFIG_FILE, WEIGHTS_FILE
from .progress import ProgressCallback
from .resolve import load_pretrained, resolve
from .sources import WeightSource, namespace_source, weight_sources
from .status import WeightStatus

__all__ = ['DownloadError', 'Downloaded', 'ByUrl', 'Mirrored', 'download_models', 'download_report', 'download_url',
           'mirror_models', 'mirror_dir', 'by_url_dir']

RANK = ('ade20k', 'imagenet-backbone', 'demo', 'none')  # a segmenter's weights, best first


class DownloadError(ValueError):
    """A download that cannot be kept (not that model's checkpoint, nothing to mirror, a target that exists)."""


@dataclass(frozen=True)
class Downloaded:
    """One model (``every_source``: one source of it) fetched, checked and loaded: its status, and ``missed``: the
    problems with sources of better weights than those it got (the files that failed), one line each."""
    model: str
    source: Optional[WeightSource]
    status: WeightStatus
    missed: tuple[str, ...]


@dataclass(frozen=True)
class ByUrl:
    """What :func:`download_url` did: ``weights/<model>/`` and its ``config``; ``written`` False when the folder
    already held weights converted from the same file."""
    folder: Path
    config: dict
    written: bool


@dataclass(frozen=True)
class Mirrored:
    model: str
    repo: str
    folder: Path
    status: WeightStatus
    url: Optional[str]       # commit URL (None for a dry run)


def _missed(status: WeightStatus, problems: Iterable[Problem]) -> tuple[str, ...]:
    """The problems of sources that would have given better weights than ``status.kind`` (all of them when no
    weights loaded; a problem of unknown kind counts unless the best kind loaded)."""
    got = RANK.index(status.kind) if status.kind in RANK else len(RANK)
    if got == 0:
        return ()
    return tuple(p.text for p in problems if (RANK.index(p.kind) if p.kind in RANK else -1) < got)


def download_report(names: Iterable[str], *, every_source: bool = False,
                    progress: Optional[ProgressCallback] = None) -> list[Downloaded]:
    """Per model (``every_source``: per source of each model, from where that source says): fetched, checked and
    loaded strictly exactly as :func:`load_pretrained` does (which keeps the files in its caches)."""
    from ..zoo import model_entry
    results = []
    for name in names:
        model_entry(name)
        if every_source:
            for source in weight_sources(name):
                if source.type == 'manual':
                    continue
                got = resolve('segmenter', name, sources=[source], plan=SOURCES_ONLY, progress=progress)
                results.append(Downloaded(name, source, got.status, _missed(got.status, got.problems)))
        else:
            got = resolve('segmenter', name, progress=progress)
            results.append(Downloaded(name, None, got.status, _missed(got.status, got.problems)))
    return results


def download_models(names: Iterable[str], *, every_source: bool = False,
                    progress: Optional[ProgressCallback] = None) -> list[tuple[str, Optional[WeightSource],
                                                                              WeightStatus]]:
    """``(model, source or None, status)`` per model (``every_source``: per source of each model) of
    :func:`download_report`."""
    return [(d.model, d.source, d.status) for d in download_report(names, every_source=every_source,
                                                                    progress=progress)]


def _filename_of(url: str) -> str:
    name = Path(urlsplit(url).path).name
    return name if name and name not in ('.', '..') else 'download.pth'


def by_url_dir(url: str) -> Path:
    """Where :func:`download_url` keeps the download of ``url``: ``<downloads>/by-url/<sha256 of the URL, 16 hex>/``."""
    return fetch.downloads_dir() / 'by-url' / hashlib.sha256(url.encode()).hexdigest()[:16]


def _config(folder: Path) -> Optional[dict]:
    """``folder``'s config.json when the folder holds weights (None when it holds none)."""
    if not (folder / WEIGHTS_FILE).exists():
        return None
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def download_url(url: str, model: str, *, force: bool = False,
                 progress: Optional[ProgressCallback] = None) -> ByUrl:
    """Fetch ``url`` (a URL or a share link), check it is a checkpoint of zoo model ``model`` (strict load) and
    write ``weights/<model>/``. When the folder already holds weights converted from the same file (its
    ``source_sha256``), nothing is written (``written=False``); from another file, :class:`DownloadError` unless
    ``force`` (which also fetches the URL again). :class:`DownloadError` for a file that is not that model's
    (nothing is written, the download is deleted), :class:`~asmlp.hub.fetch.Unavailable` when it cannot be had."""
    from ..checkpoint_io import sha256_file
    from ..convert import convert_file, write_converted
    from ..paths import weights_dir
    from ..zoo import model_entry
    model_entry(model)
    out = weights_dir() / model
    kept = by_url_dir(url) / _filename_of(url)
    if force:
        records.forget(kept)
    got = fetch.fetch_url(url, kept.name, progress=progress, dest_dir=kept.parent)
    sha = got.sha256 or sha256_file(got.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with fetch.target_lock(out):
        existing = _config(out)
        if existing is not None and not force:
            if existing.get('model') == model and existing.get('source_sha256') == sha:
                return ByUrl(out, existing, written=False)
            was = existing.get('source_sha256')
            raise DownloadError(f'{out / WEIGHTS_FILE} exists (converted from '
                                f'{"sha256 " + str(was)[:12] + "…" if was else "another file"}, this file is sha256 '
                                f'{sha[:12]}…); pass --force to replace it')
        try:
            converted, info = convert_file(got.path, model)
        except (ValueError, OSError) as error:  # CheckpointError, ConversionError, CheckpointMismatchError
            records.forget(got.path)
            raise DownloadError(f'{url} is not a checkpoint of {model}: {first_line(error)}; nothing written '
                                f'(deleted the download)') from None
        write_converted(converted, info, out)
    return ByUrl(out, info, written=True)


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
        folder.parent.mkdir(parents=True, exist_ok=True)
        with fetch.target_lock(folder):  # two mirrors of one model at once: one folder written at a time
            if folder.exists():
                shutil.rmtree(folder)
            write_converted(model, _native_config(name, status), folder)
            result = publish_folder(folder, f'{namespace}/{name}', private=private, dry_run=dry_run, api=api)
        done.append(Mirrored(name, result.repo, folder, status, result.url))
    return done
