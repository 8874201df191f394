"""What a model's weights are, in words people (and the UI) can show: :class:`WeightStatus` and its messages.

Every status message of every kind of model is written here: :func:`weights_message` for weights that loaded,
:func:`untrained_message` for the untrained fallback (why, in one parenthesis).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

__all__ = ['WeightStatus', 'STATUS_KINDS', 'UNTRAINED_MESSAGE', 'UNTRAINED_DETECTOR_MESSAGE', 'KIND_MESSAGES',
           'weights_message',
           'untrained_message']

STATUS_KINDS = ('ade20k', 'imagenet-backbone', 'demo', 'none', 'imagenet', 'coco')
UNTRAINED_MESSAGE = 'no weights — untrained, masks are meaningless'
UNTRAINED_DETECTOR_MESSAGE = 'no weights — untrained, detections are meaningless'

KIND_MESSAGES = {  # kind -> message ({source}: where the weights came from; {note}: pin state or sha256, or '')
    'ade20k': 'ADE20K weights: {source}{note}',
    'imagenet-backbone': 'ImageNet backbone only — head untrained ({source}{note})',
    'demo': 'demo weights — trained on generated scenes, not on the real dataset ({source})',
    'imagenet': 'ImageNet-1K weights: {source}{note}',
    'coco': 'COCO weights: {source}{note}',
}


@dataclass(frozen=True)
class WeightStatus:
    """Where a model's weights came from.

    - ``kind``: ``'ade20k'`` (a trained segmenter), ``'imagenet-backbone'`` (the head is random: not a pretrained
      segmenter, masks are not meaningful), ``'demo'`` (weights from ``weights/demo/``, not a published model) or
      ``'none'`` (untrained); ImageNet classifiers (:func:`asmlp.classifiers.load_classifier`): ``'imagenet'``
      (trained on ImageNet-1K) or ``'none'``; COCO detectors (:func:`asmlp.hub.load_detector`): ``'coco'``,
      ``'demo'`` or ``'none'``.
    - ``source``: a path, ``repo@revision`` (commit when pinned) or a URL; None for ``'none'``.
    - ``revision_pinned``: False only for Hub files fetched by a named ref (branch, tag, PR) — the bytes behind a
      ref can change; True for a pinned commit and for files identified by their ``sha256`` (local, URL).
    - ``sha256``: of the file the weights were read from (for converted files: the original file).
    - ``message``: one sentence for people, e.g. ``ADE20K weights: openmmlab/upernet-swin-tiny@main (unpinned)``.
    - ``format``: the source's format (``native``, ``hf-upernet-swin``, ...); ``problems``: every source that was
      found but failed (corrupt, wrong model, ...) or could not be reached, one line each.
    """
    model: str
    kind: str
    source: Optional[str]
    revision_pinned: bool
    sha256: Optional[str]
    message: str
    format: Optional[str] = None
    problems: tuple[str, ...] = ()

    @property
    def pretrained(self) -> bool:
        """True only for a trained model: a segmenter with ADE20K weights, a classifier with ImageNet weights, a
        detector with COCO weights."""
        return self.kind in ('ade20k', 'imagenet', 'coco')


def weights_message(kind: str, source: str, note: str = '') -> str:
    """The message of weights of ``kind`` loaded from ``source`` (``note``: pin state or sha256, e.g.
    `` (unpinned)``); a kind without an entry in :data:`KIND_MESSAGES` reads ``<kind> weights: <source><note>``."""
    return KIND_MESSAGES.get(kind, kind + ' weights: {source}{note}').format(source=source, note=note)


def untrained_message(base: str, *, failures: Sequence[str] = (), by_hand: Sequence[str] = (),
                      unreachable: int = 0, hint: str = '') -> str:
    """``base`` (what an untrained model of that kind means) and why there are no weights: the files that did not
    load (``failures``), else a share link that failed (``by_hand``: the line saying where to fetch it by hand),
    else how many sources could not be reached, else ``hint``."""
    if failures:
        why = f'unusable weights: {failures[0]}' + (f'; +{len(failures) - 1} more' if len(failures) > 1 else '')
    elif by_hand:
        why = by_hand[0]
    elif unreachable:
        why = (f'none of its {unreachable} source(s) could be reached or found in a cache; see '
               f'weights/README.md')
    else:
        why = hint
    return f'{base} ({why})' if why else base
