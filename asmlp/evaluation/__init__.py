"""ADE20K evaluation with mmseg 0.x's protocol (the one the AS-MLP, Swin and SETR papers used).

- ``metrics.py``: per-image intersection / union / prediction / label histograms, int64 dataset sums, mIoU.
- ``dataset.py``: the ``ADEChallengeData2016`` folder layout, ``reduce_zero_label``, bad-sample checks.
- ``synthetic_set.py``: generated scenes written in that layout (``python -m asmlp synth-ade20k``).
- ``run.py``: the evaluation loop (sharded over torchrun processes, resumable); ``cli.py``: ``evaluate``,
  ``predict``, ``synth-ade20k``.

Inference (single scale and MS+flip) lives in :mod:`asmlp.models.tta`, shared with the app.
"""
