"""Registration of the AS-MLP classifiers with timm, without importing torch and timm when ``asmlp`` is imported.

``import asmlp`` stays light (the app's page and a cached ``info`` need neither torch nor timm). The models must still
be known to timm whichever is imported first:

- timm already imported: :func:`ensure_registered` imports :mod:`asmlp.models` at once;
- otherwise a finder on ``sys.meta_path`` waits for the import of ``timm`` and imports :mod:`asmlp.models` right after
  timm's own module has run, so ``import asmlp, timm`` then ``timm.create_model('asmlp_tiny')`` works.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

MODELS_MODULE = 'asmlp.models'


class _AfterTimmImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for ``timm`` it wraps the real loader so that the registration follows timm's import."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'timm':
            return None
        sys.meta_path.remove(self)  # one shot, and the lookup below must not find this finder again
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            importlib.import_module(MODELS_MODULE)

        spec.loader.exec_module = exec_then_register
        return spec


def ensure_registered() -> None:
    """Register now if timm is imported, else as soon as it is."""
    if 'timm' in sys.modules:
        importlib.import_module(MODELS_MODULE)
    elif not any(isinstance(finder, _AfterTimmImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterTimmImport())
