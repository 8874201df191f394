"""``python -m asmlp export-space DIR --hardware cpu-basic|zero-gpu``: write a Hugging Face Space folder.

The folder holds what the Space runs and nothing else: ``app.py``, the ``asmlp`` package (no ``__pycache__``),
``assets/`` (the examples), ``weights/demo/`` (the offline demo models), a ``requirements.txt`` and a ``README.md``
whose front matter suits the hardware (``data/space.json``: Python version, requirement pins, the preset the app
preselects there). ``preload_from_hub`` lists the Hub files of that preset's models, so that the Space downloads
them at build time (hub-docs ``spaces-config-reference.md``: ``repo file1,file2 [commit]``; by ref while the zoo
is unpinned, by commit once ``python -m asmlp pin`` has pinned it). ``.asmlp-space.json`` records the hardware
for ``push-space`` and marks the folder as an export (a later export may replace it; any other non-empty folder
is refused).
"""
from __future__ import annotations

import json
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import REPO_ROOT
from .hardware import hardware_spec

__all__ = ['ExportError', 'Exported', 'MARKER', 'export_space', 'front_matter', 'preload_from_hub',
           'requirements_text']

MARKER = '.asmlp-space.json'
COPIED = ('app.py', 'asmlp', 'assets', 'weights/demo')  # relative to the repository root
WRITTEN = ('requirements.txt', 'README.md', MARKER)
IGNORED = shutil.ignore_patterns('__pycache__', '*.pyc', '*.pyo', '.pytest_cache')


class ExportError(ValueError):
    """The folder cannot be written (not empty, inside what it copies) or a Space cannot be pushed."""


@dataclass(frozen=True)
class Exported:
    folder: Path
    hardware: str
    front_matter: dict[str, Any]
    requirements: str


def _repo_front_matter() -> dict[str, Any]:
    import yaml
    text = (REPO_ROOT / 'README.md').read_text()
    match = re.match(r'---\n(.*?)\n---\n', text, re.S)
    if not match:
        raise ExportError(f'{REPO_ROOT / "README.md"} has no YAML front matter to start from')
    return yaml.safe_load(match.group(1))


def preload_from_hub(hardware: str) -> list[str]:
    """``preload_from_hub`` items for the models the app preselects on ``hardware``: per model its first Hub source
    (the one the resolver tries first) with its extra files, grouped per repo and revision, the revision written
    only when it is not ``main`` (the pinned commit when there is one, else the ref)."""
    from ..hub import weight_sources
    from ..presets import preset
    files: dict[tuple[str, str], list[str]] = {}
    for name in preset(hardware_spec(hardware)['preset'])['models']:
        source = next((s for s in weight_sources(name) if s.type == 'hub'), None)
        if source is None:
            continue
        listed = files.setdefault((source.repo, source.hub_revision), [])
        listed += [f for f in (source.filename, *source.extra_files) if f not in listed]
    return [f'{repo} {",".join(names)}' + ('' if revision == 'main' else f' {revision}')
            for (repo, revision), names in files.items()]


def front_matter(hardware: str) -> dict[str, Any]:
    """The Space's README front matter: the repository's, with the Python version of ``hardware`` (and its gradio
    as ``sdk_version`` when it pins one) and ``preload_from_hub`` when the preselected models have Hub files."""
    spec = hardware_spec(hardware)
    meta = dict(_repo_front_matter())
    meta['python_version'] = spec['python_version']
    pins = spec['requirements'] if isinstance(spec['requirements'], dict) else {}
    if pins.get('gradio'):
        meta['sdk_version'] = pins['gradio']
    preload = preload_from_hub(hardware)
    if preload:
        meta['preload_from_hub'] = preload
    return meta


def _comment(text: str) -> str:
    return '\n'.join('# ' + line for line in textwrap.wrap(text, 116, break_on_hyphens=False))


def requirements_text(hardware: str) -> str:
    """``requirements.txt`` for ``hardware``: the repository's pins (``"local"``) or the pins of
    ``data/space.json`` (a null version: unpinned), headed by the reason for them."""
    spec = hardware_spec(hardware)
    head = f'# Space requirements for {spec["title"]} (written by `python -m asmlp export-space`).\n'
    head += _comment(spec['requirements_note']) + '\n'
    if spec['requirements'] == 'local':
        body = [line for line in (REPO_ROOT / 'requirements.txt').read_text().splitlines()
                if line.strip() and not line.lstrip().startswith('#')]
    else:
        body = [name if version is None else f'{name}=={version}' for name, version in spec['requirements'].items()]
    return head + '\n'.join(body) + '\n'


def _readme(hardware: str, meta: dict[str, Any]) -> str:
    import yaml
    spec = hardware_spec(hardware)
    paragraphs = [
        f"{meta.get('short_description', 'AS-MLP vs Swin vs SETR segmentation')}. Exported by `python -m asmlp "
        f"export-space --hardware {hardware}` for **{spec['title']}**: choose this hardware in the Space's settings "
        f"(or `python -m asmlp push-space` asks the Hub for it). The app preselects the **{spec['preset']}** preset "
        f"here: {spec['preset_note']}.",
        'The code, the examples and the demo weights are those of the AS-MLP architecture explorer (package '
        '`asmlp`); `python -m asmlp --help` there lists what else it does.',
    ]
    body = f"\n# {meta.get('title', 'AS-MLP architecture explorer')}\n\n" + '\n\n'.join(
        textwrap.fill(p, 116, break_on_hyphens=False) for p in paragraphs) + '\n'
    return '---\n' + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + '---\n' + body


def _check_target(folder: Path) -> None:
    folder = folder.resolve()
    for part in COPIED:
        source = (REPO_ROOT / part).resolve()
        if folder == source or source in folder.parents or folder == REPO_ROOT.resolve():
            raise ExportError(f'{folder}: the Space folder cannot be (inside) what it copies ({part})')
    if folder.exists() and not folder.is_dir():
        raise ExportError(f'{folder}: not a folder')
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise ExportError(f'{folder}: not empty and not an earlier export (no {MARKER}); choose an empty folder')


def export_space(folder: Path, hardware: str = 'cpu-basic') -> Exported:
    """Write the Space folder for ``hardware`` into ``folder`` (an empty folder, or an earlier export: replaced)."""
    folder = Path(folder)
    spec = hardware_spec(hardware)
    _check_target(folder)
    meta = front_matter(hardware)
    requirements = requirements_text(hardware)
    folder.mkdir(parents=True, exist_ok=True)
    for part in ('app.py', 'asmlp', 'assets', 'weights', *WRITTEN):  # an earlier export's files
        target = folder / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for part in COPIED:
        source, target = REPO_ROOT / part, folder / part
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORED)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (folder / 'requirements.txt').write_text(requirements)
    (folder / 'README.md').write_text(_readme(hardware, meta))
    (folder / MARKER).write_text(json.dumps({'hardware': hardware, 'hub_flavor': spec['hub_flavor']}) + '\n')
    return Exported(folder, hardware, meta, requirements)
