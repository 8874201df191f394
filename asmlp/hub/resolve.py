"""``load_pretrained(name)``: the zoo model with the best weights that can be had, and a status that says which.

Order (the first that loads wins; a file that is found but fails is recorded in ``status.problems`` and the
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
5. Nothing: the untrained model (seeded by its name), kind ``none``. Not finding weights never raises.

Finding is :class:`asmlp.hub.locate.Search` (no loading); loading is the kind's loader
(:mod:`asmlp.hub.loaders` for segmenters, :mod:`asmlp.classifiers` for classifiers, :mod:`asmlp.hub.kinds`).
:func:`resolve` joins them, the same for every kind: the sha256 checks, the download records, the status and the
untrained fallback are here and nowhere else. A link that is dead, refused or asks for a login ends in one problem
line naming the file, the link and the page to fetch it from by hand. :func:`prefetch` is "locate, downloading if
needed": the first file found ends it (the app calls it before a request's time budget starts). Network access
goes through :mod:`asmlp.hub.fetch` (quick probe, negative cache, ``HF_HUB_OFFLINE`` honoured). ``weights/`` is
``$ASMLP_WEIGHTS_DIR`` when set.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional

from ..errors import first_line
from ..paths import show_path, weights_dir
from . import records
from .kinds import ModelKind, model_kind
from .locate import Located, Plan, Problem, Search
from .progress import ProgressCallback
from .sources import WeightSource
from .status import WeightStatus, untrained_message, weights_message

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ['create_segmenter', 'load_pretrained', 'prefetch', 'load_detector', 'prefetch_detector', 'resolve',
           'Resolved', 'locate_first', 'verify_sha256', 'untrained_model']

log = logging.getLogger('asmlp.hub')


@dataclass(frozen=True)
class Resolved:
    """What :func:`resolve` found: the model (eval mode), its status, and the problems as records."""
    model: nn.Module
    status: WeightStatus
    problems: tuple[Problem, ...]


def verify_sha256(located: Located) -> str:
    """The sha256 of ``located``'s file, checked against the zoo's ``sha256`` / ``sha256_prefix`` for a file under
    its official name; ValueError naming both digests when it is not that file."""
    from ..checkpoint_io import sha256_file
    sha = located.sha256 or sha256_file(located.path)
    wrong = records.sha256_problem(sha, *located.expected_sha256)
    if wrong:
        raise ValueError(f'{wrong}; not the file it is named after (delete it to download again)')
    return sha


def _record(name: str, located: Located, sha: str, fmt: str) -> str:
    """Record the first strict load of a downloaded file (its sha256 beside it); returns the status note that says
    how its bytes are known to be the right ones (``python -m asmlp pin --from-downloads`` moves the record into
    the zoo)."""
    source = located.source
    try:
        records.write_record(located.path, sha256=sha, url=source.url, model=name, source_format=fmt)
    except OSError as error:  # a read-only cache: the weights are good, only the record is missing
        log.warning('%s: could not record the sha256 of %s: %s', name, located.path, error)
    if source.sha256:
        return f' (sha256 {sha[:12]}…, matches the zoo)'
    record = records.read_record(located.path)
    if record and record['sha256'] == sha:
        return f' (sha256 {sha[:12]}…, recorded at its first download)'
    return f' (sha256 {sha[:12]}…)'


def untrained_model(kind: ModelKind, name: str, options: Optional[dict] = None) -> nn.Module:
    """The untrained model of ``name``, seeded by its name (the same weights on every load), in eval mode."""
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(name.encode()))
        return kind.build(name, dict(options or {})).eval()


def _hint(sources: list[WeightSource]) -> str:
    if not sources:
        return 'this model has no published weights'
    if all(s.type == 'manual' for s in sources):
        return f'download {sources[0].filename} by hand from {sources[0].page} into {show_path(weights_dir())}/'
    return ''


def _kind(kind) -> ModelKind:
    return model_kind(kind) if isinstance(kind, str) else kind


def resolve(kind: ModelKind | str, name: str, *, download: bool = True,
            sources: Optional[Iterable[WeightSource]] = None, progress: Optional[ProgressCallback] = None,
            plan: Optional[Plan] = None, options: Optional[dict] = None) -> Resolved:
    """Model ``name`` of ``kind`` with the first located file that passes the sha256 checks and loads strictly.

    ``sources`` replaces the model's list, ``plan`` the kind's order, ``options`` go to the kind's loader and
    build. A downloaded file that fails is deleted (with its record); the first strict load of a downloaded file
    records its sha256. Without any weights: the seeded untrained model, kind ``none``, and why.
    """
    kind = _kind(kind)
    kind.check(name)
    sources = list(kind.sources(name) if sources is None else sources)
    options = dict(options or {})
    search = Search(name, sources, plan or kind.plan, download=download, progress=progress)
    for located in search:
        try:
            sha = verify_sha256(located)
            loaded = kind.load(name, located, options)
        except Exception as error:  # noqa: BLE001  (CheckpointError, ValueError, RuntimeError, OSError, ...)
            why = f'{located.display}: {first_line(error)}'
            if located.in_downloads:  # the bytes are not this model's checkpoint: they do not stay in the cache
                records.forget(located.path)
                why += f'; deleted {show_path(located.path)}'
            log.warning('%s: skipping weights: %s', name, why)
            search.add(why, unusable=True, kind=located.kind)
            continue
        note = _record(name, located, sha, loaded.format) if located.in_downloads else located.pin_note
        weights_kind = kind.counts_as or loaded.kind
        status = WeightStatus(model=name, kind=weights_kind, source=located.display, revision_pinned=located.pinned,
                              sha256=sha, message=weights_message(weights_kind, located.display, note),
                              format=loaded.format, problems=search.texts)
        return Resolved(loaded.model.eval(), status, tuple(search.problems))
    problems = search.problems
    message = untrained_message(kind.untrained, failures=[p.text for p in problems if p.unusable],
                                by_hand=[p.text for p in problems if p.by_hand], unreachable=len(problems),
                                hint=_hint(sources))
    status = WeightStatus(model=name, kind='none', source=None, revision_pinned=False, sha256=None, message=message,
                          format=None, problems=search.texts)
    return Resolved(untrained_model(kind, name, options), status, tuple(problems))


def locate_first(kind: ModelKind | str, name: str, *, progress: Optional[ProgressCallback] = None,
                 sources: Optional[Iterable[WeightSource]] = None) -> tuple[Optional[Located], list[str]]:
    """The first file :func:`resolve` would try for ``name``, downloaded if needed, and the problems met before it
    (one line each). Loads nothing; never raises for missing weights."""
    kind = _kind(kind)
    kind.check(name)
    search = Search(name, list(kind.sources(name) if sources is None else sources), kind.plan, progress=progress)
    first = next(iter(search), None)
    return first, list(search.texts)


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
    got = resolve('segmenter', name, download=download, sources=sources, progress=progress)
    return got.model, got.status


def create_segmenter(name: str, num_classes: Optional[int] = None, pretrained: bool = False) -> nn.Module:
    """The zoo segmenter ``name`` (``asmlp.create_segmenter``): random weights (:func:`asmlp.zoo.build_segmenter`;
    ``num_classes`` overrides the heads' 150), or with ``pretrained=True`` the best weights :func:`load_pretrained`
    finds (in eval mode). Pretrained weights are not guaranteed: without any, the model stays untrained (a warning
    says so); :func:`load_pretrained` also returns the status that says what was loaded."""
    if not pretrained:
        from ..zoo import build_segmenter
        return build_segmenter(name, num_classes)
    if num_classes not in (None, 150):
        raise ValueError(f'pretrained weights have 150 ADE20K classes; num_classes={num_classes} needs '
                         f'pretrained=False')
    model, status = load_pretrained(name)
    if not status.pretrained:
        log.warning('%s: %s', name, status.message)
    return model


def prefetch(name: str, *, progress: Optional[ProgressCallback] = None,
             sources: Optional[Iterable[WeightSource]] = None) -> list[str]:
    """Download the file :func:`load_pretrained` would use for ``name`` (in its order), without loading anything:
    the first file found on disk or in a cache, or downloaded, ends it. Returns the problems met on the way (one
    line each); never raises for missing weights. The app calls this before a request's time budget starts (a
    download is not inference time)."""
    return locate_first('segmenter', name, progress=progress, sources=sources)[1]


def load_detector(name: str, *, download: bool = True, progress: Optional[ProgressCallback] = None
                  ) -> tuple[nn.Module, WeightStatus]:
    """COCO detector ``name`` (``data/coco.json``, in eval mode) with the best weights available — ``weights/<name>/``,
    an official file in ``weights/``, its release URL or share link, ``weights/demo/<name>/`` — and their status
    (kind ``coco``, ``demo`` or ``none``). Never raises for missing weights."""
    got = resolve('detector', name, download=download, progress=progress)
    return got.model, got.status


def prefetch_detector(name: str, *, progress: Optional[ProgressCallback] = None) -> list[str]:
    """Download the file :func:`load_detector` would use, loading nothing; the problems met, one line each."""
    return locate_first('detector', name, progress=progress)[1]
