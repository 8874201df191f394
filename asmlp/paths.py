"""Where the project keeps files on disk."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def weights_dir() -> Path:
    """Local checkpoints: ``$ASMLP_WEIGHTS_DIR`` or the repository's ``weights/``."""
    return Path(os.environ.get('ASMLP_WEIGHTS_DIR') or REPO_ROOT / 'weights')
