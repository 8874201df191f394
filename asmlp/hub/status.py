"""What a model's weights are, in words people (and the UI) can show: :class:`WeightStatus`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ['WeightStatus', 'STATUS_KINDS', 'UNTRAINED_MESSAGE']

STATUS_KINDS = ('ade20k', 'imagenet-backbone', 'demo', 'none', 'imagenet')
UNTRAINED_MESSAGE = 'no weights — untrained, masks are meaningless'


@dataclass(frozen=True)
class WeightStatus:
    """Where a model's weights came from.

    - ``kind``: ``'ade20k'`` (a trained segmenter), ``'imagenet-backbone'`` (the head is random: not a pretrained
      segmenter, masks are not meaningful), ``'demo'`` (weights from ``weights/demo/``, not a published model) or
      ``'none'`` (untrained); ImageNet classifiers (:func:`asmlp.classifiers.load_classifier`): ``'imagenet'``
      (trained on ImageNet-1K) or ``'none'``.
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
        """True only for a trained model: a segmenter with ADE20K weights, a classifier with ImageNet weights."""
        return self.kind in ('ade20k', 'imagenet')
