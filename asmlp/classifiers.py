"""ImageNet-1K classifiers: AS-MLP-T/S/B, Swin-T/S/B and DeiT-S/B as timm models, from ``data/imagenet.json``.

Each entry names the timm model (``timm.name``, pretrained tag ``timm.tag``: its eval transform and class count),
the numbers ``published`` for it (AS-MLP Table 1, Swin Table 1, DeiT Table 1: params, GFLOPs = GMACs, top-1,
V100 throughput) with their source, and its weights: the AS-MLP entries reference the official ImageNet files
the UperNet-AS-MLP zoo entries already list (``weights_from``: that zoo entry's sources of that format; links and
sha256 stay in one place), the timm ones list ``hub`` sources ``timm/<name>.<tag>``. Weights are found by the
project's resolver (local ``weights/`` files, the asmlp download cache and its sha256 records, the Hugging Face
cache, the fast offline probe of :mod:`asmlp.hub.fetch`) and handed to timm with
``pretrained_cfg_overlay=dict(file=...)`` (``.safetensors``) or ``dict(state_dict=...)`` (a ``.pth`` read by
:func:`asmlp.checkpoint_io.load_checkpoint`, never unpickled), never through timm's own unpinned download.

:func:`asmlp.zoo.list_models` stays the segmenters; :func:`list_classifiers` lists these. torch and timm are
imported only when a model is built.
"""
from __future__ import annotations

import copy
import functools
import json
import logging
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .paths import show_path

if TYPE_CHECKING:
    import torch.nn as nn

    from .hub.sources import WeightSource
    from .hub.status import WeightStatus

__all__ = ['list_classifiers', 'classifier_entry', 'classifier_sources', 'create_classifier', 'load_classifier',
           'classifier_metrics', 'timm_name', 'weights_on_disk', 'prefetch_classifier', 'NO_WEIGHTS_MESSAGE']

DEFAULT_CLASSIFIERS = ('asmlp_tiny', 'swin_tiny', 'deit_small')  # equal size, the paper's comparison

log = logging.getLogger('asmlp.classifiers')
NO_WEIGHTS_MESSAGE = 'no weights — untrained, the classes it names are meaningless'


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath('data/imagenet.json').read_text())


def list_classifiers() -> list[str]:
    """Names of the ImageNet classifiers, in the table's order (AS-MLP, Swin, DeiT; small to large)."""
    return list(_table())


def classifier_entry(name: str) -> dict[str, Any]:
    """A copy of the entry of ``name``; ValueError for unknown names, listing the known ones."""
    table = _table()
    if not isinstance(name, str) or name not in table:
        raise ValueError(f'unknown classifier {name!r}; known classifiers: {", ".join(table)}')
    return copy.deepcopy(table[name])


def timm_name(name: str) -> str:
    """The timm model name with its pretrained tag, e.g. ``swin_tiny_patch4_window7_224.ms_in1k``."""
    spec = classifier_entry(name)['timm']
    return f'{spec["name"]}.{spec["tag"]}'


def classifier_sources(name: str) -> list[WeightSource]:
    """The weight sources of ``name`` in order of preference: its own ``weights``, or the sources of format
    ``weights_from.format`` of the zoo entry ``weights_from.model`` (the same records, not copies)."""
    from .hub.sources import WeightSource, weight_sources
    entry = classifier_entry(name)
    if 'weights_from' in entry:
        ref = entry['weights_from']
        return [s for s in weight_sources(ref['model']) if s.format == ref['format']]
    return [WeightSource.from_json(s) for s in entry.get('weights', [])]


def create_classifier(name: str, **kwargs) -> nn.Module:
    """The untrained timm model of ``name`` (with its pretrained tag's config: transform, classes); ``kwargs``
    go to ``timm.create_model`` (e.g. a smaller ``depth`` in tests). Build under ``torch.device('meta')`` to
    count without memory."""
    import timm

    from . import models  # noqa: F401  (registers the AS-MLP models with timm)
    entry = classifier_entry(name)
    return timm.create_model(timm_name(name), pretrained=False, **{**entry['timm']['kwargs'], **kwargs})


# ------------------------------------------------------------------------------------------------ finding the file

def _sha256(path: Path) -> str:
    """The file's sha256; a Hugging Face cache snapshot links to a blob named by it (LFS files)."""
    from .checkpoint_io import sha256_file
    blob = Path(path).resolve().name
    if len(blob) == 64 and all(c in '0123456789abcdef' for c in blob):
        return blob
    return sha256_file(path)


class _Found:
    def __init__(self, path: Path, source: WeightSource, display: str, *, pinned: bool, note: str = '',
                 downloaded: bool = False):
        self.path, self.source, self.display, self.pinned, self.note = Path(path), source, display, pinned, note
        self.downloaded = downloaded  # from the asmlp download cache: its sha256 is recorded at the first load


def _find_hub(source: WeightSource, download: bool, problems: list[str]) -> Optional[_Found]:
    from .hub import fetch
    try:
        if download:
            got = fetch.fetch_hub_file(source.repo, source.filename, source.revision, commit=source.commit)
        else:
            got = fetch.from_hf_cache(source.repo, source.filename, source.hub_revision, why='download=False')
    except fetch.Unavailable as why:
        problems.append(f'{source.display}: {why}')
        return None
    note = f' (pinned, ref {source.revision})' if source.pinned else ' (unpinned)'
    return _Found(got.path, source, source.display, pinned=source.pinned, note=note)


def _find_file(source: WeightSource, download: bool, problems: list[str]) -> Optional[_Found]:
    from .hub import fetch
    from .hub.resolve import by_hand, local_candidates
    from .hub.sources import DOWNLOAD_TYPES
    for path in local_candidates(source):  # weights/<official name> (or its .safetensors)
        if path.is_file():
            return _Found(path, source, show_path(path), pinned=True)
    if source.type not in DOWNLOAD_TYPES:
        problems.append(by_hand(source, 'not in weights/'))
        return None
    cached = fetch.downloads_dir() / source.filename
    if not download and not cached.is_file():
        problems.append(f'{source.url}: not downloaded yet (download=False)')
        return None
    try:
        got = fetch.fetch_url(source.url, source.filename, sha256=source.sha256, sha256_prefix=source.sha256_prefix)
    except fetch.Unavailable as why:
        problems.append(by_hand(source, why) if source.type == 'sharepoint' else str(why))
        return None
    except fetch.CorruptDownload as why:
        problems.append(str(why))
        return None
    return _Found(got.path, source, source.url, pinned=True, downloaded=True)


def _timm_load(name: str, found: _Found, kwargs: dict) -> tuple[nn.Module, str]:
    """timm's strict load of the found file; returns the model and the file's sha256."""
    import timm

    from . import models  # noqa: F401
    from .checkpoint_io import load_checkpoint
    sha = _sha256(found.path)
    official = found.path.name == found.source.filename
    if official and found.source.sha256 and sha != found.source.sha256:
        raise ValueError(f'sha256 {sha[:12]}… is not the zoo\'s {found.source.sha256[:12]}…; not the file it is '
                         f'named after (delete it to download again)')
    if official and found.source.sha256_prefix and not sha.startswith(found.source.sha256_prefix):
        raise ValueError(f'sha256 {sha[:12]}… does not start with {found.source.sha256_prefix}')
    if found.path.suffix == '.safetensors':
        overlay = dict(file=str(found.path))
    else:  # a torch.save file: read without unpickling code (timm would torch.load it itself)
        overlay = dict(state_dict=load_checkpoint(found.path))
    entry = classifier_entry(name)
    model = timm.create_model(timm_name(name), pretrained=True, pretrained_cfg_overlay=overlay,
                              **{**entry['timm']['kwargs'], **kwargs})
    return model, sha


def _untrained(name: str, kwargs: dict) -> nn.Module:
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(name.encode()))  # the same untrained model on every load
        return create_classifier(name, **kwargs)


def prefetch_classifier(name: str) -> list[str]:
    """Download the file :func:`load_classifier` would use for ``name``, without loading it (the app does this
    before a request's time budget starts); returns the problems met, one line each. Never raises for missing
    weights."""
    problems: list[str] = []
    for source in classifier_sources(name):
        if (_find_hub if source.type == 'hub' else _find_file)(source, True, problems) is not None:
            break
    return problems


def load_classifier(name: str, *, download: bool = True, sources: Optional[list[WeightSource]] = None,
                    **kwargs) -> tuple[nn.Module, WeightStatus]:
    """The classifier ``name`` (eval mode) with the first weights that load strictly, and their
    :class:`~asmlp.hub.WeightStatus` (kind ``imagenet``); without any, the untrained model with kind ``none``
    and a message that says "no weights" and why. Never raises for missing or broken weights; ValueError for
    unknown names. ``download=False``: only files on disk and in the caches. ``sources`` replaces the entry's;
    ``kwargs`` go to ``timm.create_model`` (a checkpoint must then have that architecture)."""
    from .hub import records
    from .hub.status import WeightStatus
    classifier_entry(name)
    sources = classifier_sources(name) if sources is None else list(sources)
    problems: list[str] = []
    failures: list[str] = []
    for source in sources:
        found = (_find_hub if source.type == 'hub' else _find_file)(source, download, problems)
        if found is None:
            continue
        try:
            model, sha = _timm_load(name, found, kwargs)
        except Exception as error:  # noqa: BLE001  (CheckpointError, RuntimeError of a strict load, OSError, ...)
            why = f'{found.display}: ' + ((str(error).strip().splitlines() or [type(error).__name__])[0][:300])
            if found.downloaded:
                records.forget(found.path)
                why += f'; deleted {show_path(found.path)}'
            log.warning('%s: skipping weights: %s', name, why)
            problems.append(why)
            failures.append(why)
            continue
        note = found.note
        if found.downloaded:
            try:
                records.write_record(found.path, sha256=sha, url=source.url, model=name, source_format=source.format)
            except OSError as error:
                log.warning('%s: could not record the sha256 of %s: %s', name, found.path, error)
            record = records.read_record(found.path)
            how = ('matches the zoo' if source.sha256 else
                   'recorded at its first download' if record and record['sha256'] == sha else 'unrecorded')
            note = f' (sha256 {sha[:12]}…, {how})'
        status = WeightStatus(model=name, kind='imagenet', source=found.display, revision_pinned=found.pinned,
                              sha256=sha, message=f'ImageNet-1K weights: {found.display}{note}', format=source.format,
                              problems=tuple(problems))
        return model.eval(), status
    if failures:
        why = f'unusable weights: {failures[0]}' + (f'; +{len(failures) - 1} more' if len(failures) > 1 else '')
    elif problems:
        share = [p for p in problems if ' — fetch it by hand from ' in p]
        why = share[0] if share else f'none of its {len(problems)} source(s) could be reached or found in a cache'
    else:
        why = 'no published weights'
    status = WeightStatus(model=name, kind='none', source=None, revision_pinned=False, sha256=None,
                          message=f'{NO_WEIGHTS_MESSAGE} ({why})', format=None, problems=tuple(problems))
    return _untrained(name, kwargs).eval(), status


# ------------------------------------------------------------------------------------------------------- counting

def classifier_metrics(name: str) -> dict:
    """Parameters and GMACs of one forward at 224x224, the papers' size (counted on the meta device,
    :mod:`asmlp.metrics`), beside the published numbers; ``params_off`` / ``gmacs_off``: counted / published - 1."""
    import torch

    from .metrics import count_gmacs, count_params
    entry = classifier_entry(name)
    with torch.device('meta'):
        model = create_classifier(name).eval()
    params, gmacs = count_params(model), count_gmacs(model, (1, 3, 224, 224))
    published = entry['published']
    reported = next((s.get('reported') for s in entry.get('weights', []) if s.get('reported')), None)
    return dict(
        name=name, family=entry['family'], title=entry['title'], size=entry['size'], timm=timm_name(name),
        input=224, params=params, gmacs=gmacs, paper_params=published['params'], paper_gmacs=published['gmacs'],
        paper_top1=published['top1'], paper_throughput=published['throughput'], paper_source=published['source'],
        reported_top1=reported and reported['top1'],
        params_off=params / published['params'] - 1, gmacs_off=gmacs / published['gmacs'] - 1,
        count_note=entry.get('count_note'),
    )


def weights_on_disk(name: str) -> bool:
    """Whether a weight file of ``name`` is on disk or in a cache (``weights/``, the asmlp download cache, the
    Hugging Face cache), found without loading and without network (the app's model list)."""
    from .hub.availability import source_available
    return any(source_available(source) for source in classifier_sources(name))
