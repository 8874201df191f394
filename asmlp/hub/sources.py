"""Where each zoo model's pretrained weights come from: the ``weights`` list of its ``data/zoo.json`` entry.

One source per object, in the zoo's order of preference::

    {"type": "hub",    "repo": "openmmlab/upernet-swin-tiny", "revision": "main", "commit": null,
     "filename": "pytorch_model.bin", "format": "hf-upernet-swin", "kind": "ade20k", ...}
    {"type": "url",    "url": "https://...", "filename": "<basename of the url>", "sha256_prefix": "061f24f5", ...}
    {"type": "sharepoint", "url": "https://<tenant>-my.sharepoint.com/:u:/g/personal/<user>/<token>?e=<x>",
     "page": "https://github.com/svip-lab/AS-MLP", "filename": "asmlp_tiny_patch4_shift5_224.pth", ...}
    {"type": "manual", "page": "https://github.com/svip-lab/AS-MLP",
     "filename": "asmlp_tiny_patch4_shift5_224.pth", ...}

- ``type``: ``hub`` (a Hugging Face Hub file, fetched with huggingface_hub), ``url`` (a plain download),
  ``sharepoint`` (a OneDrive-for-Business share link, fetched by :mod:`asmlp.hub.sharepoint`'s download forms;
  ``page`` says where a person finds the link when it stops working) or ``manual`` (a file a person must fetch by
  hand from ``page``).
- ``format``: what the file holds, i.e. which converter reads it (``native`` = this project's own segmenter
  state_dict, read without conversion).
- ``kind``: ``ade20k`` (a trained segmenter) or ``imagenet-backbone`` (only the backbone is trained); for the
  ImageNet classifiers of ``data/imagenet.json`` (:mod:`asmlp.classifiers`): ``imagenet`` (the whole classifier).
- ``revision`` is a named ref (branch, tag, ``refs/pr/N``); ``commit`` is the 40-hex commit it was pinned to by
  ``python -m asmlp pin`` (null until then: such a source is shown as "unpinned (ref main)"). Never hand-written.
- ``filename``: the file's official name; a file of that name dropped in ``weights/`` is used before any download.
- Optional: ``sha256_prefix`` (checked after download: OpenMMLab file names end with the first 8 hex digits of the
  file's sha256), ``sha256`` (the whole digest, written by ``python -m asmlp pin --from-downloads`` from a download
  that loaded strictly; checked on every later download), ``license``, ``note``, ``reported`` (the numbers
  published for these exact weights).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ['KINDS', 'FORMATS', 'TYPES', 'DOWNLOAD_TYPES', 'NAMESPACE_ENV', 'WeightSource', 'weight_sources',
           'detector_sources', 'namespace_source', 'validate_source']

KINDS = ('ade20k', 'imagenet-backbone',
         'imagenet',  # a whole ImageNet classifier (data/imagenet.json)
         'coco')  # a COCO-trained detector (data/coco.json)
FORMATS = ('native', 'hf-upernet-swin', 'swin-official-upernet', 'mmseg-swin-upernet', 'mmseg-setr',
           'asmlp-imagenet', 'asmlp-mmseg-upernet',  # the formats of asmlp.convert.FORMATS
           'timm',  # a timm model's own state_dict (timm/<name> on the Hub), loaded by timm itself
           'asmlp-mmdet', 'swin-official-mmdet', 'native-detector')  # asmlp.convert_detection.DETECTION_FORMATS
TYPES = ('hub', 'url', 'sharepoint', 'manual')
DOWNLOAD_TYPES = ('url', 'sharepoint')  # fetched by asmlp.hub.fetch.download
SHA256_RE = re.compile(r'[0-9a-f]{64}')
COMMIT_RE = re.compile(r'[0-9a-f]{40}')
NAMESPACE_ENV = 'ASMLP_HUB_NAMESPACE'


@dataclass(frozen=True)
class WeightSource:
    """One place a model's weights can come from (see the module docstring for the fields)."""
    type: str
    format: str
    kind: str
    filename: str
    repo: Optional[str] = None
    revision: str = 'main'
    commit: Optional[str] = None
    url: Optional[str] = None
    page: Optional[str] = None
    sha256_prefix: Optional[str] = None
    sha256: Optional[str] = None
    license: Optional[str] = None
    note: Optional[str] = None
    reported: Optional[dict] = None
    extra_files: tuple[str, ...] = field(default=())  # hub: fetched next to `filename` (native: config.json)

    @property
    def pinned(self) -> bool:
        return self.commit is not None

    @property
    def hub_revision(self) -> str:
        """What to ask the Hub for: the pinned commit, else the named ref."""
        return self.commit or self.revision

    @property
    def pin_text(self) -> str:
        """``pinned 1a2b3c4d5e6f (ref main)`` or ``unpinned (ref main)``; empty for non-Hub sources."""
        if self.type != 'hub':
            return ''
        return f'pinned {self.commit[:12]} (ref {self.revision})' if self.commit else f'unpinned (ref {self.revision})'

    @property
    def display(self) -> str:
        """Short human name: ``repo@revision`` (commit when pinned), the URL, or the page to fetch by hand."""
        if self.type == 'hub':
            return f'{self.repo}@{self.commit[:12] if self.commit else self.revision}'
        if self.type in DOWNLOAD_TYPES:
            return self.url
        return f'{self.filename} (by hand from {self.page})'

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> 'WeightSource':
        validate_source(data)
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        if 'extra_files' in kwargs:
            kwargs['extra_files'] = tuple(kwargs['extra_files'])
        return cls(**kwargs)


def validate_source(data: dict[str, Any]) -> None:
    """ValueError naming the problem if ``data`` is not a valid ``weights`` entry."""
    def need(key):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ValueError(f'weight source {data!r}: {key!r} must be a non-empty string')

    if not isinstance(data, dict):
        raise ValueError(f'weight source must be an object, got {type(data).__name__}')
    for key in ('type', 'format', 'kind', 'filename'):
        need(key)
    if data['type'] not in TYPES:
        raise ValueError(f'weight source type must be one of {TYPES}, got {data["type"]!r}')
    if data['format'] not in FORMATS:
        raise ValueError(f'weight source format must be one of {FORMATS}, got {data["format"]!r}')
    if data['kind'] not in KINDS:
        raise ValueError(f'weight source kind must be one of {KINDS}, got {data["kind"]!r}')
    if data['type'] == 'hub':
        need('repo')
        need('revision')
        if data['repo'].count('/') != 1:
            raise ValueError(f'hub repo must be "owner/name", got {data["repo"]!r}')
        commit = data.get('commit')
        if commit is not None and not (isinstance(commit, str) and COMMIT_RE.fullmatch(commit)):
            raise ValueError(f'commit must be null or a 40-hex commit SHA (written by `python -m asmlp pin`), '
                             f'got {commit!r}')
    elif data['type'] == 'url':
        need('url')
        if not data['url'].startswith(('https://', 'http://')):
            raise ValueError(f'url must be http(s), got {data["url"]!r}')
        if data['url'].rsplit('/', 1)[-1] != data['filename']:
            raise ValueError(f'url source filename must be the URL\'s file name, got {data["filename"]!r}')
    elif data['type'] == 'sharepoint':
        need('url')
        need('page')
        if not data['url'].startswith(('https://', 'http://')):
            raise ValueError(f'sharepoint url must be http(s), got {data["url"]!r}')
    else:
        need('page')
    digest = data.get('sha256')
    if digest is not None and not (isinstance(digest, str) and SHA256_RE.fullmatch(digest)):
        raise ValueError(f'sha256 must be null or 64 lowercase hex digits (written by `python -m asmlp pin '
                         f'--from-downloads`), got {digest!r}')
    prefix = data.get('sha256_prefix')
    if prefix is not None and not (isinstance(prefix, str) and re.fullmatch(r'[0-9a-f]{8,64}', prefix)):
        raise ValueError(f'sha256_prefix must be 8-64 lowercase hex digits, got {prefix!r}')
    if '/' in data['filename'] or data['filename'] in ('.', '..'):
        raise ValueError(f'filename must be a plain file name, got {data["filename"]!r}')


def weight_sources(name: str) -> list[WeightSource]:
    """The zoo's weight sources for ``name``, in its order of preference (ValueError for unknown names)."""
    from ..zoo import model_entry
    return [WeightSource.from_json(s) for s in model_entry(name).get('weights', [])]


def detector_sources(name: str) -> list[WeightSource]:
    """The COCO detector zoo's weight sources for ``name`` (``data/coco.json``; ValueError for unknown names)."""
    from ..detectors import detector_entry
    return [WeightSource.from_json(s) for s in detector_entry(name).get('weights', [])]


def namespace_source(name: str) -> Optional[WeightSource]:
    """``$ASMLP_HUB_NAMESPACE/<name>`` (this project's native format: config.json + model.safetensors), if set."""
    namespace = os.environ.get(NAMESPACE_ENV, '').strip().strip('/')
    if not namespace:
        return None
    if '/' in namespace:
        raise ValueError(f'{NAMESPACE_ENV} must be a Hub user or organisation name, got {namespace!r}')
    return WeightSource(type='hub', format='native', kind='ade20k', repo=f'{namespace}/{name}', revision='main',
                        filename='model.safetensors', extra_files=('config.json',))
