"""The app's handlers as plain functions (asmlp/app/handlers.py): they run without Gradio, stream a compare panel per
model, and write their result images once (asmlp/app/files.py): never rewritten while someone reads them, and
served by Gradio as they are (no copy over an existing file)."""
from __future__ import annotations

import io
import subprocess
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from asmlp.ade20k import PALETTE
from asmlp.app import handlers
from asmlp.app.files import ResultFiles
from asmlp.engine import Engine
from asmlp.limits import Limits

A, B, C = 'upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano'


class Constant(nn.Module):
    """Labels every pixel with ``label`` (a stand-in segmenter)."""

    def __init__(self, label: int):
        super().__init__()
        self.label, self.weight = label, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x

    def predict(self, image, scale):
        return np.full(image.shape[:2], self.label, dtype=np.int64)


@pytest.fixture
def engine():
    status = types.SimpleNamespace(kind='demo', message='test weights', problems=())
    labels = {A: 1, B: 2, C: 3}
    with Engine(loader=lambda name: (Constant(labels[name]), status), limits=Limits(torch_threads=1)) as engine:
        yield engine


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / 'photo.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path)
    return str(path)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, 'PNG')
    return buffer.getvalue()


def test_the_handlers_import_and_run_without_gradio():
    code = ('import sys\nimport asmlp.app.handlers, asmlp.app.views, asmlp.app.registry\n'
            'print("gradio" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == 'False', out.stderr[-2000:]


def test_compare_streams_a_panel_per_model_with_result_files(engine, photo, tmp_path):
    files = ResultFiles(tmp_path / 'results')
    panels = list(handlers.compare(engine, files, photo, [A, B, C], 'cpu', 'fp32', 32, 0.5))
    assert [len(p.masks) for p in panels] == [1, 2, 3]
    assert [p.state is None for p in panels] == [True, True, False] and panels[-1].state.models == [A, B, C]
    assert 'Running the other 2 models' in panels[0].status and 'Running' not in panels[-1].status
    for (path, title), label in zip(panels[-1].masks, (1, 2, 3)):
        mask = np.asarray(Image.open(path).convert('RGB'))
        assert mask.shape == (30, 40, 3) and (mask == PALETTE[label]).all()  # the ADE20K palette colour
    assert panels[-1].disagreement is not None and '100.0%' in panels[-1].disagreement_text
    again = handlers.reblend(files, panels[-1].state, 0.5)
    assert again == panels[-1].overlays  # the same overlays: the same files
    with pytest.raises(ValueError, match='Upload an image'):
        next(handlers.compare(engine, files, None, [A], 'cpu', 'fp32', 32, 0.5))
    with pytest.raises(ValueError, match='Segment an image first'):
        handlers.measure(engine, None, 'cpu', 'fp32', 32, 1)


def test_result_files_are_written_once_and_never_rewritten_under_a_reader(tmp_path):
    files = ResultFiles(tmp_path)
    first = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    other = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    path = files.image(first)
    expected = png_bytes(first)
    assert open(path, 'rb').read() == expected
    before = (tmp_path / path).stat()
    reader = open(path, 'rb')
    head = reader.read(len(expected) // 2)  # a client half-way through downloading it
    barrier = threading.Barrier(16)

    def write(i):
        barrier.wait()
        return files.image(first if i % 2 else other)
    with ThreadPoolExecutor(16) as pool:
        paths = list(pool.map(write, range(16)))
    assert head + reader.read() == expected  # read to the end: the bytes it started with
    reader.close()
    after = (tmp_path / path).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # never rewritten
    assert set(paths) == {path, files.image(other)} and len(list(tmp_path.iterdir())) == 2  # no partial file left
    assert open(files.image(other), 'rb').read() == png_bytes(other)


def test_gradio_serves_the_result_files_as_they_are(tmp_path, monkeypatch):
    """Gradio 6.31 hands a path inside its cache folder out unchanged (``Block.move_resource_to_block_cache``):
    the gallery and image outputs name the app's own file, not a copy."""
    import gradio as gr
    from gradio import processing_utils
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(tmp_path / 'gradio'))
    path = ResultFiles().image(np.zeros((8, 8, 3), np.uint8))
    assert path.startswith(str(tmp_path / 'gradio'))
    gallery = gr.Gallery(format='png')
    served = processing_utils.move_files_to_cache(gallery.postprocess([(path, 'mask')]), gallery, postprocess=True)
    assert served[0]['image']['path'] == path
    image = gr.Image(format='png')
    assert processing_utils.move_files_to_cache(image.postprocess(path), image, postprocess=True)['path'] == path
