"""Finding weight files, apart from loading them: a model's sources become :class:`Located` files, best first.

:class:`Search` walks a :class:`Plan` (the segmenters' plan is the order of :mod:`asmlp.hub.resolve`'s docstring)
and yields one :class:`Located` per file it finds on disk, in a cache, or downloads (``download=True``); it reads
no tensor and builds no model, so the caller (a loader, :func:`asmlp.hub.resolve.resolve`) can try the next file
when one does not load, and prefetching is "the first file found". What goes wrong on the way (unreachable, not
cached, refused, a ``config.json`` of another model) is collected in one place, :attr:`Search.problems`, as
:class:`Problem` records; the resolver adds the files that failed to load to the same list.

Nothing here imports torch: the app's model list (:func:`asmlp.hub.availability.weights_on_disk`) uses it with
``download=False`` before torch is loaded.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from ..errors import first_line
from ..paths import show_path, weights_dir
from . import fetch, net
from .native import CONFIG_FILE, WEIGHTS_FILE, read_config
from .progress import ProgressCallback
from .sources import DOWNLOAD_TYPES, NAMESPACE_ENV, WeightSource, namespace_source

__all__ = ['Located', 'Problem', 'Plan', 'Search', 'SEGMENTER_PLAN', 'SOURCES_ONLY', 'by_hand', 'local_candidates',
           'blob_sha256']


@dataclass(frozen=True)
class Located:
    """One weight file that was found (or downloaded), not loaded.

    ``config`` is set for this project's native format (``config.json`` beside ``model.safetensors``, whose
    ``kind`` it gives); ``source`` is None for the ``weights/<name>/`` and ``weights/demo/<name>/`` folders.
    ``kind``: the weights' kind (``ade20k``, ``imagenet-backbone``, ``demo``, ``imagenet``: config.json's for
    native files, the source's otherwise); ``display``: what a status names (a folder, a file, ``repo@revision``,
    a URL); ``downloaded``: fetched over the network by this search; ``in_downloads``: a file of the asmlp download
    cache (its sha256 is recorded at the first strict load, and it is deleted when it does not load);
    ``sha256``: when known without reading the file (just downloaded, or a Hugging Face cache blob, which is named
    by it); ``pinned`` / ``pin_note``: a Hub file by commit, or by a named ref whose bytes can change.
    """
    path: Path
    display: str
    kind: str
    format: str
    source: Optional[WeightSource] = None
    config: Optional[Path] = None
    downloaded: bool = False
    in_downloads: bool = False
    sha256: Optional[str] = None
    pinned: bool = True
    pin_note: str = ''

    @property
    def expected_sha256(self) -> tuple[Optional[str], Optional[str]]:
        """``(sha256, sha256_prefix)`` the file must have: the source's, for a file under its official name (a
        re-saved ``.safetensors`` of it has other bytes)."""
        if self.source is None or self.path.name != self.source.filename:
            return None, None
        return self.source.sha256, self.source.sha256_prefix


@dataclass(frozen=True)
class Problem:
    """One line for people about a source that gave no weights.

    ``unusable``: a file was found but is not usable (corrupt, another model's, a wrong sha256), as opposed to
    a source that could not be reached or is not cached. ``by_hand``: a share link that failed; ``text`` names
    the file, the link and the page to fetch it from by hand. ``kind``: the kind of weights the source would
    have given (None when unknown).
    """
    text: str
    unusable: bool = False
    by_hand: bool = False
    kind: Optional[str] = None


@dataclass(frozen=True)
class Plan:
    """Where a :class:`Search` looks, in order.

    1. ``folder``: ``weights/<name>/`` (native, any of ``folder_kinds``);
    2. per pass (a tuple of source kinds, best first): the sources' files dropped in ``weights/`` (``local``),
       then, in the first pass, ``$ASMLP_HUB_NAMESPACE/<name>`` (``namespace``), then the Hub sources, then the
       URL and share-link sources;
    3. ``demo``: ``weights/demo/<name>/`` (native, kind ``demo``).
    """
    passes: tuple[tuple[str, ...], ...] = (('ade20k',), ('imagenet-backbone',))
    folder: bool = True
    folder_kinds: tuple[str, ...] = ('ade20k', 'imagenet-backbone')
    local: bool = True
    namespace: bool = True
    demo: bool = True


SEGMENTER_PLAN = Plan()
SOURCES_ONLY = Plan(folder=False, local=False, namespace=False, demo=False)  # each source from where it says


def local_candidates(source: WeightSource) -> list[Path]:
    """Where a source's file may have been dropped: ``weights/<filename>`` (or the same stem ``.safetensors``)."""
    folder = weights_dir()
    names = [source.filename]
    stem, dot, _ = source.filename.rpartition('.')
    if dot and not source.filename.endswith('.safetensors'):
        names.append(f'{stem}.safetensors')
    return [folder / n for n in names]


def by_hand(source: WeightSource, why) -> str:
    """One line: the file, the link and why it failed, and where to fetch it by hand."""
    page = source.page or source.url
    why = str(why)
    if source.url and why.startswith(source.url):
        why = why[len(source.url):].lstrip(': ')
    return (f'{source.filename} from {source.url}: {why} — fetch it by hand from {page} into '
            f'{show_path(weights_dir())}/')


def blob_sha256(path: Path) -> Optional[str]:
    """The sha256 of a Hugging Face cache file, read from the name of the blob it links to (LFS blobs are named
    by their sha256); None for other files."""
    blob = Path(path).resolve().name
    return blob if len(blob) == 64 and all(c in '0123456789abcdef' for c in blob) else None


def _pin_note(source: WeightSource) -> str:
    return f' (pinned, ref {source.revision})' if source.commit else ' (unpinned)'


@dataclass
class Search:
    """Iterate to get the :class:`Located` files of model ``name`` from ``sources`` by ``plan``, best first.

    ``download=False`` looks only on disk and in the caches; otherwise missing files are downloaded (Hub files
    into huggingface_hub's cache, URLs and share links into the asmlp download cache, :mod:`asmlp.hub.fetch`),
    ``progress`` hearing each. :attr:`problems` holds what was met on the way; :meth:`add` appends to it.
    """
    name: str
    sources: list[WeightSource]
    plan: Plan = SEGMENTER_PLAN
    download: bool = True
    progress: Optional[ProgressCallback] = None
    problems: list[Problem] = field(default_factory=list)

    def add(self, text: str, *, unusable: bool = False, by_hand: bool = False, kind: Optional[str] = None) -> None:
        self.problems.append(Problem(text, unusable=unusable, by_hand=by_hand, kind=kind))

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(p.text for p in self.problems)

    def __iter__(self) -> Iterator[Located]:
        plan, root = self.plan, weights_dir()
        seen_local: set[Path] = set()
        tried_hub: set[tuple] = set()
        if plan.folder:
            yield from self._folder(root / self.name, plan.folder_kinds)
        for number, kinds in enumerate(plan.passes):
            of_kind = [s for s in self.sources if s.kind in kinds]
            if plan.local:
                for source in of_kind:
                    if source.type in (*DOWNLOAD_TYPES, 'manual'):
                        yield from self._local(source, seen_local)
            if number == 0:
                self._probe_origins()
                if plan.namespace:
                    try:
                        own = namespace_source(self.name)
                    except ValueError as error:
                        self.add(str(error))
                        own = None
                    if own is not None:
                        yield from self._hub(own, tried_hub)
            for source in of_kind:
                if source.type == 'hub':
                    yield from self._hub(source, tried_hub)
            for source in of_kind:
                if source.type in DOWNLOAD_TYPES:
                    yield from self._url(source)
        if plan.demo:
            yield from self._folder(root / 'demo' / self.name, ('demo',))

    # ------------------------------------------------------------------------------------------------ the steps

    def _native(self, config: Path, weights: Path, display: str, kinds: tuple[str, ...],
                **fields) -> Iterator[Located]:
        """A native pair, its ``config.json`` checked (model, kind, fields): no tensor is read."""
        try:
            kind = read_config(config, self.name, kinds=kinds)['kind']
            if not weights.is_file():
                raise ValueError(f'{show_path(weights)}: missing')
        except ValueError as error:
            claimed = _kind_in(config)
            self.add(f'{display}: {first_line(error)}', unusable=True,
                     kind=claimed if claimed in kinds else kinds[0] if len(kinds) == 1 else None)
            return
        yield Located(weights, display, kind, 'native', config=config, **fields)

    def _folder(self, folder: Path, kinds: tuple[str, ...]) -> Iterator[Located]:
        if (folder / CONFIG_FILE).exists() or (folder / WEIGHTS_FILE).exists():
            yield from self._native(folder / CONFIG_FILE, folder / WEIGHTS_FILE, show_path(folder) + '/', kinds)

    def _local(self, source: WeightSource, seen: set[Path]) -> Iterator[Located]:
        for path in local_candidates(source):
            if path.is_file() and path not in seen:
                seen.add(path)
                yield Located(path, show_path(path), source.kind, source.format, source=source)
                return

    def _hub(self, source: WeightSource, tried: set[tuple]) -> Iterator[Located]:
        key = (source.repo, source.hub_revision, source.filename)
        if key in tried:
            return
        tried.add(key)
        wanted = [*source.extra_files, source.filename]  # the small files first: no big download for nothing
        native = source.format == 'native'
        if native and CONFIG_FILE not in wanted:
            wanted.insert(0, CONFIG_FILE)
        files = {}
        try:
            for filename in wanted:
                files[filename] = self._fetch_hub(source, filename)
                if native and filename == CONFIG_FILE:  # a config.json of another model: the weights stay there
                    read_config(files[filename].path, self.name, kinds=('ade20k', 'imagenet-backbone'))
        except fetch.Unavailable as why:
            self.add(f'{source.display}: {why}', kind=source.kind)
            return
        except ValueError as error:
            self.add(f'{source.display}: {first_line(error)}', unusable=True, kind=source.kind)
            return
        got = files[source.filename]
        fields = dict(source=source, downloaded=not got.from_cache, sha256=blob_sha256(got.path),
                      pinned=source.pinned, pin_note=_pin_note(source))
        if native:
            yield from self._native(files[CONFIG_FILE].path, got.path, source.display, ('ade20k', 'imagenet-backbone'),
                                    **fields)
        else:
            yield Located(got.path, source.display, source.kind, source.format, **fields)

    def _fetch_hub(self, source: WeightSource, filename: str) -> fetch.Fetched:
        if not self.download:
            return fetch.from_hf_cache(source.repo, filename, source.hub_revision, why='download=False')
        return fetch.fetch_hub_file(source.repo, filename, source.revision, commit=source.commit,
                                    progress=self.progress)

    def _url(self, source: WeightSource) -> Iterator[Located]:
        cached = fetch.downloads_dir() / source.filename
        if not self.download:
            if cached.is_file():
                yield Located(cached, source.url, source.kind, source.format, source=source, in_downloads=True)
            else:
                self.add(f'{source.url}: not downloaded yet (download=False)', kind=source.kind)
            return
        share = source.type == 'sharepoint'
        try:
            got = fetch.fetch_url(source.url, source.filename, sha256=source.sha256,
                                  sha256_prefix=source.sha256_prefix, progress=self.progress)
        except fetch.Unavailable as why:
            self.add(by_hand(source, why) if share else str(why), by_hand=share, kind=source.kind)
            return
        except fetch.CorruptDownload as why:
            self.add(by_hand(source, why) if share else str(why), unusable=True, by_hand=share, kind=source.kind)
            return
        yield Located(got.path, source.url, source.kind, source.format, source=source, downloaded=not got.from_cache,
                      in_downloads=True, sha256=got.sha256)

    def _probe_origins(self) -> None:
        """Probe the Hub endpoint and the download hosts this search may need, all at once (net.check_many)."""
        if not self.download or fetch.offline():
            return
        urls = [s.url for s in self.sources
                if s.type in DOWNLOAD_TYPES and not (fetch.downloads_dir() / s.filename).is_file()]
        namespace = self.plan.namespace and bool(os.environ.get(NAMESPACE_ENV, '').strip())
        if namespace or any(s.type == 'hub' and not _pinned_and_cached(s) for s in self.sources):
            urls.insert(0, fetch.hub_endpoint())
        if len(urls) > 1:
            net.check_many(urls)


def _pinned_and_cached(source: WeightSource) -> bool:
    if not source.pinned:
        return False
    try:
        fetch.from_hf_cache(source.repo, source.filename, source.commit)
        return True
    except fetch.Unavailable:
        return False


def _kind_in(config: Path) -> Optional[str]:
    """The ``kind`` a (possibly invalid) ``config.json`` claims, for ranking a problem; None when unreadable."""
    try:
        kind = json.loads(Path(config).read_text()).get('kind')
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None
