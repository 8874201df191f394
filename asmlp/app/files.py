"""The app's result images as files that never change once written.

Handed a numpy image, Gradio 6.31 encodes it and writes it to a content-addressed file in its cache with
``Path.write_bytes`` (truncate, then write) on every request — ``save_pil_to_cache`` in
https://github.com/gradio-app/gradio/blob/main/gradio/processing_utils.py — so a second request with the same
result rewrites a file a first client is still downloading (a cut response). Here each image is encoded once, named
by the sha256 of its bytes, written under a temporary name and linked into place: an existing file is never
rewritten. The files live inside Gradio's cache folder, which Gradio serves as they are
(``Block.move_resource_to_block_cache`` in https://github.com/gradio-app/gradio/blob/main/gradio/blocks.py: a path
inside ``GRADIO_CACHE`` is not copied again; tests/test_app_handlers.py checks it).
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ['ResultFiles']

FORMATS = {'png': ('PNG', {}), 'jpeg': ('JPEG', {'quality': 90})}


class ResultFiles:
    """Writes result images into ``folder`` (default: ``asmlp-results`` in Gradio's cache folder,
    ``gradio.utils.get_upload_folder()``), each once."""

    def __init__(self, folder: Optional[Path] = None):
        if folder is None:
            from gradio.utils import get_upload_folder
            folder = Path(get_upload_folder()) / 'asmlp-results'
        self.folder = Path(folder)

    def image(self, array: np.ndarray, fmt: str = 'png') -> str:
        """The path of ``array`` (HxW or HxWx3 uint8) encoded as ``fmt`` (``png``, lossless; ``jpeg``)."""
        from PIL import Image
        kind, options = FORMATS[fmt]
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(array)).save(buffer, kind, **options)
        return str(self.write(buffer.getvalue(), 'jpg' if fmt == 'jpeg' else fmt))

    def write(self, data: bytes, suffix: str) -> Path:
        """``data`` as ``<sha256>.<suffix>``: written to a temporary file, then linked to that name unless a file
        has it already (then the existing one, the same bytes, is used)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f'{hashlib.sha256(data).hexdigest()}.{suffix}'
        if path.is_file():
            return path
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix='.partial-', suffix=f'.{suffix}')
        try:
            with os.fdopen(fd, 'wb') as file:
                file.write(data)
            try:
                os.link(temporary, path)  # fails if the name exists: a file in place is never replaced
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links: renamed into place unless the name appeared
                if not path.exists():
                    os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)
        return path
