"""``python -m asmlp bench app``: what a user of ``python app.py`` waits for on this machine.

* start-up: seconds from launching ``python app.py`` (the README's command, offline) to the page answering HTTP 200,
  a fresh process each time;
* compare: a warm compare through the app's public API (``gradio_client``, ``api_name='/compare'``: upload, queue,
  inference, PNG encoding, download of every mask and overlay), masks only (no metrics), the three T/S-size
  defaults of issue 6 on an image of the given size. One untimed call loads the models first; weights are whatever
  the app finds (random-initialised models cost the same time as trained ones).

The same compare is also timed in this process through :class:`asmlp.service.Engine` (no HTTP, no PNGs) with the
per-model seconds, to show where the time goes; and its label maps are compared with the literal computation
(:func:`literal_labels`: fp32, the papers' convolutions, full-size logits), in the app's precision and in fp32.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from ..allocator import keep_freed_memory
from ..service import DEFAULT_MODELS, Engine
from .timing import Timing, machine_description, summarize

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SIZE = (512, 683)  # issue 6: an ADE20K-like 512x683 image
EXAMPLE = REPO / 'assets' / 'examples' / 'rocket_launch.jpg'


def start_app(log_path: Path, extra_env: dict | None = None, timeout: float = 90,
              cwd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``python app.py`` on a free loopback port, offline; return the process and its URL once it answers
    HTTP. Its output goes to ``log_path``. ``cwd``: the folder whose ``app.py`` runs (default: this repository;
    e.g. a Space folder of ``python -m asmlp export-space``)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE='1', GRADIO_ANALYTICS_ENABLED='False', PYTHONUNBUFFERED='1',
               **(extra_env or {}))
    env.pop('TRITON_INTERPRET', None)
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, 'app.py', '--port', str(port)], cwd=cwd or REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f'app.py did not start:\n{Path(log_path).read_text()[-3000:]}')
        time.sleep(0.05)


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def timing(samples_s: list[float]) -> Timing:
    return summarize([1e3 * s for s in samples_s])


def example_image(height: int, width: int, path: Path) -> np.ndarray:
    """The bundled rocket-launch photo resized (area) to ``height`` x ``width``, written to ``path`` as PNG."""
    import cv2
    from ..image_io import load_image
    image, _ = load_image(EXAMPLE)
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), image[..., ::-1])
    return image


def bench_startup(repeat: int, log_dir: Path) -> list[float]:
    seconds = []
    for i in range(repeat):
        start = time.perf_counter()
        proc, _ = start_app(log_dir / f'startup_{i}.log')
        seconds.append(time.perf_counter() - start)
        stop_app(proc)
    return seconds


def bench_compare_api(image_path: Path, models, short_side: int, repeat: int, log_dir: Path) -> list[float]:
    from gradio_client import Client, handle_file
    proc, url = start_app(log_dir / 'compare.log')
    try:
        client = Client(url, verbose=False)
        call = lambda: client.predict(handle_file(str(image_path)), list(models), 'cpu', 'auto', short_side, 0.5,
                                      api_name='/compare')
        call()  # loads the models
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
        return seconds
    finally:
        stop_app(proc)


def bench_compare_engine(image: np.ndarray, models, short_side: int, repeat: int) -> tuple[list[float], dict, dict]:
    """Engine timings, and per model how many pixels of the app's labels (and of fp32 labels on the same path)
    equal the literal computation's in fp32 (:func:`literal_labels`)."""
    keep_freed_memory()  # as app.py does
    engine = Engine()
    engine.segment(image, models, 'cpu', 'auto', short_side)
    seconds, per_model = [], {name: [] for name in models}
    for _ in range(repeat):
        start = time.perf_counter()
        results = engine.segment(image, models, 'cpu', 'auto', short_side)
        seconds.append(time.perf_counter() - start)
        for r in results:
            per_model[r.name].append(r.seconds)
    fp32 = engine.segment(image, models, 'cpu', 'fp32', short_side)
    agreement = {}
    for app_result, fp32_result in zip(results, fp32):
        literal = literal_labels(engine.get(app_result.name, 'cpu').model, image, short_side)
        agreement[app_result.name] = (float((app_result.labels == literal).mean()),
                                      float((fp32_result.labels == literal).mean()), app_result.precision)
    return seconds, {name: timing(s) for name, s in per_model.items()}, agreement


def literal_labels(model, image: np.ndarray, short_side: int) -> np.ndarray:
    """The label map as mmseg computes it: fp32, every convolution of a resized map as written in the papers, full
    logits resized to the image, then the argmax."""
    import torch
    import torch.nn.functional as F
    from ..models.lowres_conv import direct_convolutions
    from ..preprocess import preprocess
    x = preprocess(image, (4 * short_side, short_side))
    with torch.inference_mode(), direct_convolutions():
        logits = F.interpolate(model(x), size=image.shape[:2], mode='bilinear', align_corners=False)
    return logits.argmax(1)[0].numpy()


def main(models=DEFAULT_MODELS, size=DEFAULT_SIZE, repeat: int = 5, threads: int = 2) -> None:
    import torch
    torch.set_num_threads(threads)
    height, width = size
    print(f'# bench app: {machine_description()}')
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        startup = timing(bench_startup(repeat, tmp))
        print(f'start-up, `python app.py` to HTTP 200 (offline, {repeat} fresh processes): '
              f'{startup.median_ms / 1e3:.2f} s (p10 {startup.p10_ms / 1e3:.2f}, p90 {startup.p90_ms / 1e3:.2f})',
              flush=True)
        image_path = tmp / f'example_{height}x{width}.png'
        image = example_image(height, width, image_path)
        short_side = min(height, width)
        api = timing(bench_compare_api(image_path, models, short_side, repeat, tmp))
        print(f'warm compare through the API, {" + ".join(models)}, {height}x{width} image, inference short side '
              f'{short_side}, masks only: {api.median_ms / 1e3:.2f} s (p10 {api.p10_ms / 1e3:.2f}, '
              f'p90 {api.p90_ms / 1e3:.2f}, n={api.runs})', flush=True)
        total, per_model, agreement = bench_compare_engine(image, models, short_side, repeat)
        total = timing(total)
        print(f'the same in-process (Engine.segment, no HTTP/PNG): {total.median_ms / 1e3:.2f} s; per model: ' +
              ', '.join(f'{name} {t.median_ms / 1e3:.2f} s' for name, t in per_model.items()))
        print('labels equal to the literal fp32 computation (direct convolutions, full-size logits), per model the '
              "app's path in its precision and the same path in fp32: " +
              '; '.join(f'{name} app path ({precision}) {100 * app:.2f}%, fp32 path {100 * fp32:.3f}%'
                        for name, (app, fp32, precision) in agreement.items()))
