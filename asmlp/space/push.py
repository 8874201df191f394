"""``--push USER/SPACE``: create or update the Space from an exported folder, then ask for its hardware.

``HfApi.create_repo(repo_type='space', space_sdk='gradio', exist_ok=True)`` creates the Space (or finds it),
``HfApi.upload_folder`` sends the folder (binary files go through LFS on their own), and
``HfApi.request_space_hardware`` asks for the export's hardware (``data/space.json`` ``hub_flavor``; ZeroGPU is
``zero-a10g``). The request comes last and on its own, not as ``space_hardware=`` at creation: an account that may
not use that hardware (a free account on compute hardware, ZeroGPU without the account standing it needs) gets a
refusal that must not cost the upload. The refusal is reported in one line; choose the hardware in the Space's
settings then.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .export import MARKER, ExportError
from ..errors import first_line

__all__ = ['Pushed', 'push_space']


@dataclass(frozen=True)
class Pushed:
    repo: str
    url: Optional[str]          # commit URL
    hardware: str               # the export's hardware (cpu-basic / zero-gpu)
    flavor: str                 # what was asked of the Hub
    hardware_message: str       # '' when granted, else why not (one line)


def _one_line(error: BaseException) -> str:
    return f'{type(error).__name__}: {first_line(error, 200)}'


def push_space(folder: Path, repo: str, *, private: bool = False, api: Any = None) -> Pushed:
    """Upload the exported ``folder`` to the Space ``repo`` and request its hardware (see the module docstring)."""
    from ..hub import fetch, net
    folder = Path(folder)
    if repo.count('/') != 1 or not all(repo.split('/')):
        raise ExportError(f'the Space must be "user/name", got {repo!r}')
    try:
        marker = json.loads((folder / MARKER).read_text())
        hardware, flavor = marker['hardware'], marker['hub_flavor']
    except (OSError, ValueError, KeyError, TypeError):
        raise ExportError(f'{folder}: not a Space folder written by `python -m asmlp export-space` '
                          f'(no readable {MARKER})') from None
    if api is None:
        if fetch.offline():
            raise ExportError('pushing a Space needs the Hub: unset HF_HUB_OFFLINE / ASMLP_OFFLINE')
        endpoint = fetch.hub_endpoint()
        reach = net.check(endpoint)
        if not reach.ok:
            raise ExportError(f'the Hub ({endpoint}) is unreachable: {reach.reason}')
        from huggingface_hub import HfApi
        api = HfApi(endpoint=endpoint)
    api.create_repo(repo, repo_type='space', space_sdk='gradio', exist_ok=True, private=private)
    info = api.upload_folder(repo_id=repo, folder_path=str(folder), repo_type='space', ignore_patterns=[MARKER],
                             commit_message=f'AS-MLP architecture explorer for {hardware} (asmlp export-space)')
    url = getattr(info, 'commit_url', None) or (str(info) if info is not None else None)
    try:
        api.request_space_hardware(repo, flavor)
        message = ''
    except Exception as error:  # noqa: BLE001  (a refusal of the account, a network fault: reported, not fatal)
        message = _one_line(error)
    return Pushed(repo, url, hardware, flavor, message)
