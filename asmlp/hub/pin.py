"""``python -m asmlp pin``: resolve each Hub source's named ref to its commit SHA and write it into the zoo;
``pin --from-downloads``: write the sha256 of each verified download into its source's ``sha256`` field.

Commit hashes are never typed by hand: the maintainer runs this online, reviews the diff of ``asmlp/data/zoo.json``
and commits it. One ``HfApi.list_repo_refs`` call per repo (branches, tags and PR refs such as ``refs/pr/1``);
a ref that is already a 40-hex SHA is kept as is. ``--list`` shows every source and its pin state offline.
``--from-downloads`` needs no network: it reads the records :mod:`asmlp.hub.records` wrote beside the files that
loaded strictly (the official AS-MLP files have no published digest), checks the file still has that digest, and
never replaces a different ``sha256`` already in the zoo (that is reported).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Optional

from ..checkpoint_io import sha256_file
from . import fetch, net, records
from .sources import COMMIT_RE, DOWNLOAD_TYPES, WeightSource
from ..errors import first_line

__all__ = ['PinError', 'PinResult', 'DownloadPin', 'default_zoo_path', 'pin_zoo', 'pin_downloads', 'list_pins']


class PinError(RuntimeError):
    """Pinning cannot start (offline, Hub unreachable, unknown model)."""


@dataclass(frozen=True)
class PinResult:
    model: str
    repo: str
    revision: str
    filename: str
    old: Optional[str]
    new: Optional[str]       # None when the ref could not be resolved
    error: str = ''

    @property
    def changed(self) -> bool:
        return self.new is not None and self.new != self.old


@dataclass(frozen=True)
class DownloadPin:
    model: str
    filename: str
    old: Optional[str]
    new: Optional[str]       # None when nothing can be pinned (not downloaded here, changed, conflicting)
    error: str = ''

    @property
    def changed(self) -> bool:
        return self.new is not None and self.new != self.old


def default_zoo_path() -> Path:
    return Path(str(resources.files('asmlp').joinpath('data/zoo.json')))


def _find_ref(refs: Any, revision: str) -> Optional[str]:
    groups = (refs.branches, refs.tags, refs.pull_requests or [], refs.converts or [])
    for group in groups:
        for ref in group:
            if revision in (ref.name, ref.ref):
                return ref.target_commit
    return None


def _write_json(path: Path, table: dict) -> None:
    text = json.dumps(table, indent=1, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_zoo(zoo_path: Optional[Path], models: Optional[Iterable[str]]) -> tuple[Path, dict, list[str]]:
    """The zoo file (default: the package's), its table and the names asked for (default: all), checked."""
    path = Path(zoo_path) if zoo_path else default_zoo_path()
    table = json.loads(path.read_text())
    names = list(models) if models else sorted(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise PinError(f'unknown model(s) {", ".join(unknown)}; known: {", ".join(sorted(table))}')
    return path, table, names


def pin_zoo(zoo_path: Optional[Path] = None, *, models: Optional[Iterable[str]] = None, api: Any = None,
            dry_run: bool = False) -> list[PinResult]:
    """Pin every Hub source of ``models`` (default: all) in ``zoo_path`` (default: the package's zoo.json).

    Returns one :class:`PinResult` per Hub source; the file is rewritten (same layout) unless ``dry_run`` or
    nothing changed. Raises :class:`PinError` when the Hub cannot be used at all.
    """
    path, table, names = _read_zoo(zoo_path, models)
    endpoint = fetch.hub_endpoint()
    if fetch.offline():
        raise PinError('pinning needs the Hub: unset HF_HUB_OFFLINE / ASMLP_OFFLINE')
    if api is None:
        reach = net.check(endpoint)
        if not reach.ok:
            raise PinError(f'the Hub ({endpoint}) is unreachable: {reach.reason}')
        from huggingface_hub import HfApi
        api = HfApi(endpoint=endpoint)

    refs_by_repo: dict[str, Any] = {}
    results: list[PinResult] = []
    for name in names:
        for source in table[name].get('weights', []):
            if source.get('type') != 'hub':
                continue
            WeightSource.from_json(source)  # a malformed entry stops here, before anything is written
            repo, revision = source['repo'], source['revision']
            old = source.get('commit')
            if COMMIT_RE.fullmatch(revision):
                new, error = revision, ''
            else:
                try:
                    if repo not in refs_by_repo:
                        refs_by_repo[repo] = api.list_repo_refs(repo, include_pull_requests=True)
                    new = _find_ref(refs_by_repo[repo], revision)
                    error = '' if new else f'no ref {revision!r} in {repo}'
                except Exception as exc:  # noqa: BLE001  (repo not found, network, auth)
                    new, error = None, f'{type(exc).__name__}: {first_line(exc) if str(exc) else ""}'
                if new is not None and not COMMIT_RE.fullmatch(new):
                    new, error = None, f'{repo}@{revision} resolved to {new!r}, not a 40-hex commit'
            if new is not None:
                source['commit'] = new
            results.append(PinResult(name, repo, revision, source['filename'], old, new, error))
    if not dry_run and any(r.changed for r in results):
        _save(path, table)
    return results


def _save(path: Path, table: dict) -> None:
    _write_json(path, table)
    if path.resolve() == default_zoo_path().resolve():
        from ..zoo import reload
        reload()


def pin_downloads(zoo_path: Optional[Path] = None, *, models: Optional[Iterable[str]] = None,
                  dry_run: bool = False) -> list[DownloadPin]:
    """Write the sha256 of every verified download (URL and share-link sources of ``models``, default all) into
    the zoo's ``sha256`` fields; one :class:`DownloadPin` per such source. No network."""
    path, table, names = _read_zoo(zoo_path, models)
    results = []
    for name in names:
        for data in table[name].get('weights', []):
            if data.get('type') not in DOWNLOAD_TYPES:
                continue
            source = WeightSource.from_json(data)
            file = fetch.downloads_dir() / source.filename
            record = records.read_record(file) if file.is_file() else None
            new, error = None, ''
            if record is None:
                error = f'not downloaded and verified here (python -m asmlp download {name})'
            elif (digest := sha256_file(file)) != record['sha256']:
                error = (f'{file} changed since it was verified (sha256 {digest[:12]}…, recorded '
                         f'{record["sha256"][:12]}…)')
            elif source.sha256 and source.sha256 != digest:
                error = (f'the zoo already has sha256 {source.sha256[:12]}…, the download here is {digest[:12]}…: '
                         f'not replaced (check which is the official file)')
            else:
                new = digest
                data['sha256'] = digest
            results.append(DownloadPin(name, source.filename, source.sha256, new, error))
    if not dry_run and any(r.changed for r in results):
        _save(path, table)
    return results


def list_pins(zoo_path: Optional[Path] = None, models: Optional[Iterable[str]] = None) -> list[str]:
    """One line per weight source: model, source, pin state (no network)."""
    table = json.loads((Path(zoo_path) if zoo_path else default_zoo_path()).read_text())
    lines = []
    for name in (list(models) if models else sorted(table)):
        sources = table[name].get('weights', [])
        if not sources:
            lines.append(f'{name:<30} (no published weights)')
        for data in sources:
            source = WeightSource.from_json(data)
            state = source.pin_text or {'url': 'download', 'sharepoint': 'share link', 'manual': 'by hand'}[source.type]
            if source.sha256:
                state += f' sha256 {source.sha256[:12]}'
            lines.append(f'{name:<30} {source.kind:<17} {source.format:<22} {state:<32} {source.display}')
    return lines
