"""``load_pretrained(name)``: the zoo model with the best weights that can be had, and a status that says which.

Order (the first that works wins; a source that is found but fails is recorded in ``status.problems`` and the
next one is tried):

1. ``weights/<name>/`` — this project's native folder (``config.json`` + ``model.safetensors``), whatever kind
   its config says.
2. ADE20K-trained sources: an official file dropped in ``weights/`` under its official name (or the same stem with
   ``.safetensors``), then ``$ASMLP_HUB_NAMESPACE/<name>`` on the Hub (native format), then the zoo's Hub repos
   (huggingface_hub and its cache; safetensors files are listed first), then official URLs and share links
   (downloaded once into the asmlp cache by :func:`asmlp.hub.fetch.fetch_url`, checked, then converted; a
   download that does not load strictly is deleted and named; the first good one's sha256 is recorded beside it,
   :mod:`asmlp.hub.records`).
3. ImageNet-backbone sources the same way (local file first): the head stays random.
4. ``weights/demo/<name>/`` — a native folder whose config says ``"kind": "demo"``.
5. Nothing: the untrained model, kind ``none``. Not finding weights never raises.

A link that is dead, refused or asks for a login ends in one problem line naming the file, the link and the page
to fetch it from by hand. :func:`prefetch` downloads what ``load_pretrained`` would, without loading (the app does
this before a request's time budget starts); :func:`available_kind` says what is on disk or in the caches without
any network. Foreign formats are converted by :func:`asmlp.convert.convert_file`. Network access goes through
:mod:`asmlp.hub.fetch` (quick probe, negative cache, ``HF_HUB_OFFLINE`` honoured). ``weights/`` is
``$ASMLP_WEIGHTS_DIR`` when set.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch.nn as nn

from ..checkpoint_io import sha256_file
from ..paths import show_path
from . import fetch, net, records
from .availability import available_kind, local_candidates  # noqa: F401  (public here too)
from .native import CONFIG_FILE, WEIGHTS_FILE, load_into, read_config
from .progress import ProgressCallback
from .sources import DOWNLOAD_TYPES, NAMESPACE_ENV, WeightSource, namespace_source, weight_sources
from .status import UNTRAINED_MESSAGE, WeightStatus

__all__ = ['load_pretrained', 'create_segmenter', 'prefetch', 'available_kind', 'local_candidates', 'by_hand']

log = logging.getLogger('asmlp.hub')
_FETCHED = object()  # prefetch: a step found or downloaded its file (nothing loaded)


class _Failed(Exception):
    """A source was found but could not be used (corrupt, wrong model, failed conversion)."""


def _build(name: str) -> nn.Module:
    """The untrained zoo model (tests may replace this to build on the meta device)."""
    from ..zoo import create_segmenter
    return create_segmenter(name)


def _weights_dir() -> Path:
    from ..paths import weights_dir
    return weights_dir()


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def _message(kind: str, display: str, pin_note: str = '') -> str:
    if kind == 'ade20k':
        return f'ADE20K weights: {display}{pin_note}'
    if kind == 'imagenet-backbone':
        return f'ImageNet backbone only — head untrained ({display}{pin_note})'
    return f'demo weights — trained on generated scenes, not ADE20K ({display})'


def _status(name: str, kind: str, display: str, *, sha256: Optional[str], fmt: str, pinned: bool = True,
            pin_note: str = '', problems: Iterable[str] = ()) -> WeightStatus:
    return WeightStatus(model=name, kind=kind, source=display, revision_pinned=pinned, sha256=sha256,
                        message=_message(kind, display, pin_note), format=fmt, problems=tuple(problems))


def _native(name: str, config_path: Path, weights_path: Path, display: str, *, kinds: tuple[str, ...],
            problems: list[str], pinned: bool = True, pin_note: str = '') -> tuple[nn.Module, WeightStatus]:
    try:
        config = read_config(config_path, name, kinds=kinds)
        if not weights_path.is_file():
            raise ValueError(f'{show_path(weights_path)}: missing')
        model = _build(name)
        load_into(model, weights_path, config['kind'])
        sha = sha256_file(weights_path)
    except Exception as error:  # noqa: BLE001  (CheckpointError, ValueError, RuntimeError, OSError, ...)
        raise _Failed(f'{display}: {_one_line(error)}') from None
    return model, _status(name, config['kind'], display, sha256=sha, fmt='native', pinned=pinned,
                          pin_note=pin_note, problems=problems)


def _convert(name: str, path: Path, source: WeightSource, display: str, *, problems: list[str], pinned: bool = True,
             pin_note: str = '', expect_prefix: Optional[str] = None,
             expect_sha256: Optional[str] = None) -> tuple[nn.Module, WeightStatus]:
    try:
        from ..convert import convert_file
    except ImportError as error:
        raise _Failed(f'{display}: no converter for {source.format} ({_one_line(error)})') from None
    try:
        model, meta = convert_file(path, name)
    except Exception as error:  # noqa: BLE001  (CheckpointError, ValueError, KeyError, RuntimeError, ...)
        raise _Failed(f'{display}: {_one_line(error)}') from None
    meta = meta or {}
    kind = meta.get('kind') or source.kind
    if kind not in ('ade20k', 'imagenet-backbone'):
        raise _Failed(f'{display}: the converter reported kind {kind!r}')
    sha = meta.get('source_sha256') or sha256_file(path)
    if expect_prefix and not sha.startswith(expect_prefix):
        raise _Failed(f'{display}: sha256 {sha[:12]}… does not start with {expect_prefix}, the official file\'s; '
                      f'not the file it is named after (delete it to download again)')
    if expect_sha256 and sha != expect_sha256:
        raise _Failed(f'{display}: sha256 {sha[:12]}… is not the zoo\'s {expect_sha256[:12]}…; not the file it is '
                      f'named after (delete it to download again)')
    return model, _status(name, kind, display, sha256=sha, fmt=meta.get('source_format') or source.format,
                          pinned=pinned, pin_note=pin_note, problems=problems)


def _pin_note(source: WeightSource) -> str:
    if source.type != 'hub':
        return ''
    return f' (pinned, ref {source.revision})' if source.commit else ' (unpinned)'


def _hub(name: str, source: WeightSource, *, download: bool, problems: list[str], tried: set,
         progress: Optional[ProgressCallback] = None, fetch_only: bool = False):
    key = (source.repo, source.hub_revision, source.filename)
    if key in tried:
        return None
    tried.add(key)
    display = source.display
    try:
        files = {}
        wanted = [*source.extra_files, source.filename]  # the small files first: no big download for nothing
        if source.format == 'native' and CONFIG_FILE not in wanted:
            wanted.insert(0, CONFIG_FILE)
        for filename in wanted:
            files[filename] = _fetch_hub(source, filename, download, progress)
    except fetch.Unavailable as why:
        problems.append(f'{display}: {why}')
        return None
    if fetch_only:
        return _FETCHED
    pinned, pin_note = source.pinned, _pin_note(source)
    if source.format == 'native':
        return _native(name, files[CONFIG_FILE].path, files[source.filename].path, display,
                       kinds=('ade20k', 'imagenet-backbone'), problems=problems, pinned=pinned, pin_note=pin_note)
    return _convert(name, files[source.filename].path, source, display, problems=problems, pinned=pinned,
                    pin_note=pin_note)


def _fetch_hub(source: WeightSource, filename: str, download: bool,
               progress: Optional[ProgressCallback]) -> 'fetch.Fetched':
    if not download:
        return fetch.from_hf_cache(source.repo, filename, source.hub_revision, why='download=False')
    return fetch.fetch_hub_file(source.repo, filename, source.revision, commit=source.commit, progress=progress)


def by_hand(source: WeightSource, why) -> str:
    """One line: the file, the link and why it failed, and where to fetch it by hand."""
    page = source.page or source.url
    why = str(why)
    if source.url and why.startswith(source.url):
        why = why[len(source.url):].lstrip(': ')
    return (f'{source.filename} from {source.url}: {why} — fetch it by hand from {page} into '
            f'{show_path(_weights_dir())}/')


def _sha_note(source: WeightSource, path: Path, sha: str) -> str:
    """How the bytes are known to be the right ones: the zoo's sha256, or the record of the first good download
    (``python -m asmlp pin --from-downloads`` moves it into the zoo)."""
    if source.sha256:
        return f' (sha256 {sha[:12]}…, matches the zoo)'
    record = records.read_record(path)
    if record and record['sha256'] == sha:
        return f' (sha256 {sha[:12]}…, recorded at its first download)'
    return f' (sha256 {sha[:12]}…)'


def _url(name: str, source: WeightSource, *, download: bool, problems: list[str],
         progress: Optional[ProgressCallback] = None, fetch_only: bool = False):
    cached = fetch.downloads_dir() / source.filename
    if not download and not cached.is_file():
        problems.append(f'{source.url}: not downloaded yet (download=False)')
        return None
    try:
        got = fetch.fetch_url(source.url, source.filename, sha256=source.sha256, sha256_prefix=source.sha256_prefix,
                              progress=progress)
    except fetch.Unavailable as why:
        problems.append(by_hand(source, why) if source.type == 'sharepoint' else str(why))
        return None
    except fetch.CorruptDownload as why:
        raise _Failed(by_hand(source, why) if source.type == 'sharepoint' else str(why)) from None
    if fetch_only:
        return _FETCHED
    try:
        model, status = _convert(name, got.path, source, source.url, problems=problems,
                                 expect_prefix=source.sha256_prefix if got.from_cache else None,  # checked when
                                 expect_sha256=source.sha256 if got.from_cache else None)         # downloaded
    except _Failed as error:  # the bytes are not this model's checkpoint: they do not stay in the cache
        records.forget(got.path)
        raise _Failed(f'{error}; deleted {show_path(got.path)}') from None
    # the first strict load of this file (just downloaded, or downloaded by prefetch) records its sha256
    try:
        records.write_record(got.path, sha256=status.sha256, url=source.url, model=name,
                             source_format=status.format or source.format)
    except OSError as error:  # a read-only cache: the weights are good, only the record is missing
        log.warning('%s: could not record the sha256 of %s: %s', name, got.path, error)
    note = _sha_note(source, got.path, status.sha256)
    return model, _status(name, status.kind, source.url, sha256=status.sha256, fmt=status.format,
                          pin_note=note, problems=problems)


def _local_file(name: str, source: WeightSource, *, problems: list[str], seen: set, fetch_only: bool = False):
    for path in local_candidates(source):
        if path.is_file() and path not in seen:
            seen.add(path)
            if fetch_only:
                return _FETCHED
            official = path.name == source.filename  # a re-saved .safetensors has other bytes
            return _convert(name, path, source, show_path(path), problems=problems,
                            expect_prefix=source.sha256_prefix if official else None,
                            expect_sha256=source.sha256 if official else None)
    return None


def _plan(name: str, sources: list[WeightSource], download: bool, problems: list[str],
          progress: Optional[ProgressCallback] = None, fetch_only: bool = False) -> list[Callable]:
    tried_hub: set = set()
    seen_local: set = set()
    local_dir = _weights_dir() / name
    demo_dir = _weights_dir() / 'demo' / name
    steps: list[Callable] = []

    def native_dir(folder: Path, kinds: tuple[str, ...]):
        def step():
            if not (folder / CONFIG_FILE).exists() and not (folder / WEIGHTS_FILE).exists():
                return None
            if fetch_only:
                return _FETCHED
            return _native(name, folder / CONFIG_FILE, folder / WEIGHTS_FILE, show_path(folder) + '/', kinds=kinds,
                           problems=problems)
        return step

    steps.append(native_dir(local_dir, ('ade20k', 'imagenet-backbone')))
    for kind in ('ade20k', 'imagenet-backbone'):
        of_kind = [s for s in sources if s.kind == kind]
        for s in of_kind:
            if s.type in (*DOWNLOAD_TYPES, 'manual'):
                steps.append(lambda s=s: _local_file(name, s, problems=problems, seen=seen_local,
                                                     fetch_only=fetch_only))
        if kind == 'ade20k':
            steps.append(lambda: _probe_origins(sources, download))

            def namespace():
                try:
                    source = namespace_source(name)
                except ValueError as error:
                    problems.append(str(error))
                    return None
                return None if source is None else _hub(name, source, download=download, problems=problems,
                                                        tried=tried_hub, progress=progress, fetch_only=fetch_only)
            steps.append(namespace)
        for s in of_kind:
            if s.type == 'hub':
                steps.append(lambda s=s: _hub(name, s, download=download, problems=problems, tried=tried_hub,
                                              progress=progress, fetch_only=fetch_only))
        for s in of_kind:
            if s.type in DOWNLOAD_TYPES:
                steps.append(lambda s=s: _url(name, s, download=download, problems=problems, progress=progress,
                                              fetch_only=fetch_only))
    steps.append(native_dir(demo_dir, ('demo',)))
    return steps


def _probe_origins(sources: list[WeightSource], download: bool) -> None:
    """Probe the Hub endpoint and the download hosts this model may need, all at once (see net.check_many)."""
    if not download or fetch.offline():
        return None
    urls = [s.url for s in sources
            if s.type in DOWNLOAD_TYPES and not (fetch.downloads_dir() / s.filename).is_file()]
    if namespace_source_set() or any(s.type == 'hub' and not _pinned_and_cached(s) for s in sources):
        urls.insert(0, fetch.hub_endpoint())
    if len(urls) > 1:
        net.check_many(urls)
    return None


def _pinned_and_cached(source: WeightSource) -> bool:
    if not source.pinned:
        return False
    try:
        fetch.from_hf_cache(source.repo, source.filename, source.commit)
        return True
    except fetch.Unavailable:
        return False


def namespace_source_set() -> bool:
    return bool(os.environ.get(NAMESPACE_ENV, '').strip())


def _hint(sources: list[WeightSource]) -> str:
    manual = [s for s in sources if s.type == 'manual']
    if not sources:
        return 'this model has no published weights'
    if manual and all(s.type == 'manual' for s in sources):
        return f'download {manual[0].filename} by hand from {manual[0].page} into {show_path(_weights_dir())}/'
    return ''


def load_pretrained(name: str, *, download: bool = True, sources: Optional[Iterable[WeightSource]] = None,
                    progress: Optional[ProgressCallback] = None) -> tuple[nn.Module, WeightStatus]:
    """The zoo model ``name`` (in eval mode) with the best weights available, and their :class:`WeightStatus`.

    ``download=False`` uses only files already on disk (``weights/``, the Hugging Face cache, the asmlp download
    cache). ``sources`` replaces the zoo's list (tests, experiments). Unknown names raise ValueError; missing or
    broken weights never raise: the untrained model comes back with kind ``none`` and the reasons in
    ``status.problems`` (broken files also in ``status.message``, and a share link that failed too: the file, the
    link and the page to fetch it from by hand). ``progress`` hears every download's
    :class:`~asmlp.hub.progress.DownloadProgress`.
    """
    from ..zoo import model_entry
    model_entry(name)  # ValueError for unknown names, listing the known ones
    sources = list(weight_sources(name) if sources is None else sources)
    problems: list[str] = []
    failures: list[str] = []
    for step in _plan(name, sources, download, problems, progress):
        try:
            found = step()
        except _Failed as error:
            log.warning('%s: skipping weights: %s', name, error)
            problems.append(str(error))
            failures.append(str(error))
            continue
        if found is not None:
            model, status = found
            return model.eval(), status
    message = UNTRAINED_MESSAGE
    if failures:
        message += f' (unusable weights: {failures[0]}' + (f'; +{len(failures) - 1} more' if len(failures) > 1
                                                           else '') + ')'
    elif problems:
        share = [p for p in problems if ' — fetch it by hand from ' in p]
        message += (f' ({share[0]})' if share else
                    f' (none of its {len(problems)} source(s) could be reached or found in a cache; see '
                    f'weights/README.md)')
    else:
        hint = _hint(sources)
        if hint:
            message += f' ({hint})'
    status = WeightStatus(model=name, kind='none', source=None, revision_pinned=False, sha256=None, message=message,
                          format=None, problems=tuple(problems))
    return _build(name).eval(), status



def prefetch(name: str, *, progress: Optional[ProgressCallback] = None,
             sources: Optional[Iterable[WeightSource]] = None) -> list[str]:
    """Download the file :func:`load_pretrained` would use for ``name`` (in its order), without loading anything:
    the first step that finds a file on disk or in a cache, or downloads one, ends it. Returns the problems met
    on the way (one line each); never raises for missing weights. The app calls this before a request's time
    budget starts (a download is not inference time)."""
    from ..zoo import model_entry
    model_entry(name)
    sources = list(weight_sources(name) if sources is None else sources)
    problems: list[str] = []
    for step in _plan(name, sources, True, problems, progress, fetch_only=True):
        try:
            if step() is not None:
                break
        except _Failed as error:
            problems.append(str(error))
    return problems


def create_segmenter(name: str, num_classes: Optional[int] = None, pretrained: bool = False) -> nn.Module:
    """The zoo segmenter ``name``: random weights (:func:`asmlp.zoo.create_segmenter`; ``num_classes`` overrides
    the heads' 150), or with ``pretrained=True`` the best weights :func:`load_pretrained` finds (in eval mode).

    Pretrained weights are not guaranteed: without any, the model stays untrained (a warning says so). Call
    ``load_pretrained`` to get the status that says what was loaded (ADE20K, ImageNet backbone only, demo, none).
    """
    from .. import zoo
    if not pretrained:
        return zoo.create_segmenter(name, num_classes)
    if num_classes not in (None, 150):
        raise ValueError(f'pretrained weights have 150 ADE20K classes; num_classes={num_classes} needs '
                         f'pretrained=False')
    model, status = load_pretrained(name)
    if not status.pretrained:
        log.warning('%s: %s', name, status.message)
    return model
