"""``python -m asmlp bench app``: what a user of ``python app.py`` waits for on this machine.

* start-up: seconds from launching ``python app.py`` (the README's command, offline) to the page answering HTTP 200,
  a fresh process each time, alternating with a bare ``gr.Blocks`` page (:data:`BARE_PAGE`, the floor) and their
  ratio;
* compare: a warm compare through the app's public API (``gradio_client``, ``api_name='/compare'``: upload, queue,
  inference, PNG encoding, download of every mask and overlay), masks only (no metrics), the three T/S-size
  defaults of issue 6 on an image of the given size. One untimed call loads the models first; weights are whatever
  the app finds (random-initialised models cost the same time as trained ones).

The same compare is also timed in this process through :class:`asmlp.engine.Engine` (no HTTP, no PNGs) with the
per-model seconds, to show where the time goes; and its label maps are compared with the literal computation
(:func:`literal_labels`: fp32, the papers' convolutions, full-size logits), in the app's precision and in fp32.
The roofline line puts each model's executed GMACs next to this CPU's measured GEMM rate: the time no kernel tuning
can beat.
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
from ..engine.engine import DEFAULT_MODELS, Engine
from .timing import Timing, machine_description, summarize

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SIZE = (512, 683)  # issue 6: an ADE20K-like 512x683 image
EXAMPLE = REPO / 'assets' / 'examples' / 'rocket_launch.jpg'


BARE_PAGE = '''
import sys
import gradio as gr
with gr.Blocks() as demo:
    gr.Markdown('# a bare page')
demo.launch(server_name='127.0.0.1', server_port=int(sys.argv[sys.argv.index('--port') + 1]))
'''  # the floor of any Gradio app's start-up on this machine: importing gradio and serving one Markdown


def start_app(log_path: Path, extra_env: dict | None = None, timeout: float = 90, script: str | None = None,
              cwd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``python app.py`` (or the Python source ``script``) on a free loopback port, offline; return the
    process and its URL once it answers HTTP. Its output goes to ``log_path``. ``cwd``: the folder whose ``app.py``
    runs (default: this repository; e.g. a Space folder of ``python -m asmlp export-space``)."""
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE='1', GRADIO_ANALYTICS_ENABLED='False', PYTHONUNBUFFERED='1',
               **(extra_env or {}))
    env.pop('TRITON_INTERPRET', None)
    with open(log_path, 'w') as log:
        command = ['app.py'] if script is None else ['-c', script]
        proc = subprocess.Popen([sys.executable, *command, '--port', str(port)], cwd=cwd or REPO, env=env,
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch_in_process(engine) -> tuple[object, str]:
    """The app (``build_app`` over ``engine``, with ``app.py``'s queue settings) served by this process on a free
    loopback port; returns the ``gr.Blocks`` (``.close()`` it, and ``engine.close()``) and its URL."""
    from ..app import build_app
    from ..limits import queue_settings
    demo = build_app(engine)
    demo.queue(**queue_settings(engine.limits))
    port = free_port()
    demo.launch(server_name='127.0.0.1', server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f'http://127.0.0.1:{port}/'


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


def bench_startup(repeat: int, log_dir: Path) -> tuple[list[float], list[float]]:
    """Seconds to HTTP 200 of ``python app.py`` and of :data:`BARE_PAGE`, alternating, fresh processes."""
    app, bare = [], []
    for i in range(repeat):
        for script, seconds in ((None, app), (BARE_PAGE, bare)):
            start = time.perf_counter()
            proc, _ = start_app(log_dir / f'startup_{i}_{len(seconds)}.log', script=script)
            seconds.append(time.perf_counter() - start)
            stop_app(proc)
    return app, bare


def bench_compare_api(image_path: Path, models, short_side: int, repeat: int,
                      log_dir: Path) -> tuple[list[float], list[float]]:
    """Seconds to the first panel (the first model's mask, sent as soon as it is done) and to the whole answer of
    a warm compare through the API, ``repeat`` times."""
    from gradio_client import Client, handle_file
    proc, url = start_app(log_dir / 'compare.log')
    try:
        client = Client(url, verbose=False)

        def submit():
            return client.submit(handle_file(str(image_path)), list(models), 'cpu', 'auto', short_side, 0.5,
                                 api_name='/compare')
        submit().result()  # loads the models
        first, total = [], []
        for _ in range(repeat):
            start = time.perf_counter()
            job = submit()
            seen = None
            while not job.done():
                if seen is None and job.outputs():
                    seen = time.perf_counter() - start
                time.sleep(0.005)
            job.result()
            total.append(time.perf_counter() - start)
            first.append(total[-1] if seen is None else seen)
        return first, total
    finally:
        stop_app(proc)


def bench_compare_engine(image: np.ndarray, models, short_side: int, repeat: int) -> tuple[list[float], dict, dict]:
    """Engine timings, and per model how many pixels of the app's labels (and of fp32 labels on the same path)
    equal the literal computation's in fp32 (:func:`literal_labels`)."""
    keep_freed_memory()  # as app.py does
    with Engine() as engine:
        return _compare_engine(engine, image, models, short_side, repeat)


def _compare_engine(engine: Engine, image: np.ndarray, models, short_side: int,
                    repeat: int) -> tuple[list[float], dict, dict]:
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


def gemm_gmacs_per_s(dtype_name: str = 'fp32', size: int = 2048, repeat: int = 3) -> float:
    """This CPU's matrix-multiply rate (GMAC/s, best of ``repeat``) at the app's thread count: the roofline that the
    models' convolutions and matmuls can at best reach."""
    import torch
    dtype = {'fp32': torch.float32, 'bf16': torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return size ** 3 / best / 1e9


def roofline(image: np.ndarray, models, short_side: int, per_model: dict, precision: str) -> str:
    """Per model: the GMACs its inference executes (meta count, exact low-resolution convolutions included), the
    time they need at this CPU's GEMM rate, and the share of the measured time that is."""
    import torch
    from ..metrics import count_gmacs
    from ..preprocess import rescale_size
    from ..zoo import build_segmenter
    rate = gemm_gmacs_per_s(precision)
    height, width = rescale_size(*image.shape[:2], (4 * short_side, short_side))
    parts = []
    for name in models:
        with torch.device('meta'):
            model = build_segmenter(name).eval()
        gmacs = count_gmacs(model, (1, 3, height, width), as_executed=True)
        measured = per_model[name].median_ms / 1e3
        parts.append(f'{name} {gmacs:.0f} GMACs = {gmacs / rate:.2f} s at the GEMM rate, '
                     f'{100 * gmacs / rate / measured:.0f}% of its {measured:.2f} s')
    return f'roofline ({precision} GEMM {rate:.0f} GMAC/s on this CPU): ' + '; '.join(parts)


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
        app_s, bare_s = bench_startup(repeat, tmp)
        startup, bare = timing(app_s), timing(bare_s)
        print(f'start-up, `python app.py` to HTTP 200 (offline, {repeat} fresh processes): '
              f'{startup.median_ms / 1e3:.2f} s (p10 {startup.p10_ms / 1e3:.2f}, p90 {startup.p90_ms / 1e3:.2f}); '
              f'a bare gr.Blocks page, alternating with it: {bare.median_ms / 1e3:.2f} s; ratio '
              f'{startup.median_ms / bare.median_ms:.2f}', flush=True)
        image_path = tmp / f'example_{height}x{width}.png'
        image = example_image(height, width, image_path)
        short_side = min(height, width)
        first, api = (timing(t) for t in bench_compare_api(image_path, models, short_side, repeat, tmp))
        print(f'warm compare through the API, {" + ".join(models)}, {height}x{width} image, inference short side '
              f'{short_side}, masks only: {api.median_ms / 1e3:.2f} s (p10 {api.p10_ms / 1e3:.2f}, '
              f'p90 {api.p90_ms / 1e3:.2f}, n={api.runs}); first panel after {first.median_ms / 1e3:.2f} s',
              flush=True)
        total, per_model, agreement = bench_compare_engine(image, models, short_side, repeat)
        total = timing(total)
        print(f'the same in-process (Engine.segment, no HTTP/PNG): {total.median_ms / 1e3:.2f} s; per model: ' +
              ', '.join(f'{name} {t.median_ms / 1e3:.2f} s' for name, t in per_model.items()))
        precision = next(iter(agreement.values()))[2]
        print(roofline(image, models, short_side, per_model, precision), flush=True)
        print('labels equal to the literal fp32 computation (direct convolutions, full-size logits), per model the '
              "app's path in its precision and the same path in fp32: " +
              '; '.join(f'{name} app path ({precision}) {100 * app:.2f}%, fp32 path {100 * fp32:.3f}%'
                        for name, (app, fp32, precision) in agreement.items()))
