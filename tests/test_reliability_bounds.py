"""Bounded resources: the admission gate (one running, a bounded FIFO, the rest busy), the model cache (count and
bytes, LRU, a retry for models loaded during a fault), the inference time budget (cooperative stop at module
boundaries, and a hard answer when one operation runs long), CUDA out-of-memory fallback (simulated: a smaller
size, then the CPU, with a message, GPU memory released), and uploads refused or shrunk before they are fully
decoded (decompression bombs, in a child process whose peak memory is read from /proc)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import time
import types
import weakref
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from asmlp.engine import Gate
from asmlp.limits import BUSY_MESSAGE, Busy, InferenceTimeout, Limits
from asmlp.service import Engine

REPO = Path(__file__).resolve().parent.parent
A, B, C, D = 'upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano', 'upernet_asmlp_tiny'
IMAGE = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)


class Sleep(nn.Module):
    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


class FakeSegmenter(nn.Module):
    """Stands for a zoo segmenter: ``predict`` runs ``blocks`` modules of ``seconds`` each (so the time-budget
    hooks fire), and raises a CUDA out-of-memory error when ``oom(device, scale)`` says so. ``to()`` only records
    the device: this machine has no GPU."""

    def __init__(self, params: int = 1000, blocks: int = 1, seconds: float = 0.0, oom=None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(params))
        self.blocks = nn.ModuleList(Sleep(seconds) for _ in range(blocks))
        self.device_type, self.oom, self.calls, self.activation = 'cpu', oom, [], None

    def to(self, device, *args, **kwargs):
        self.device_type = torch.device(device).type
        return self

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x

    def predict(self, image, scale):
        self.calls.append((self.device_type, scale))
        if self.oom is not None and self.oom(self.device_type, scale):
            activation = torch.empty(10_000)  # what a real forward holds when it runs out of memory
            self.activation = weakref.ref(activation)
            raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')
        self(torch.zeros(1))
        return np.full(image.shape[:2], 3, dtype=np.int64)


def status(kind='none', problems=()):
    return types.SimpleNamespace(kind=kind, message=f'{kind} weights', problems=tuple(problems))


def loader(models: dict, calls: list):
    def load(name):
        calls.append(name)
        make = models[name]
        return (make, status()) if isinstance(make, nn.Module) else make()
    return load


def small_limits(**overrides) -> Limits:
    return Limits(**{**dict(max_waiting=0, wait_timeout=5, timeout_grace=0.3, torch_threads=1), **overrides})


# ------------------------------------------------------------------------------------------------------- the gate

def test_gate_runs_one_queues_max_waiting_in_order_and_refuses_the_rest():
    gate = Gate(max_waiting=2, wait_timeout=10)
    first = gate.admit()
    first.acquire()
    second, third = gate.admit(), gate.admit()
    with pytest.raises(Busy, match='busy, please retry'):
        gate.admit()
    assert str(Busy()) == BUSY_MESSAGE and gate.snapshot()['refused'] == 1
    order, heard = [], []

    def take(ticket, label):
        ticket.acquire(on_wait=lambda ahead: heard.append((label, ahead)))
        order.append(label)
        time.sleep(0.05)
        ticket.release()

    threads = [threading.Thread(target=take, args=(third, 'third')),
               threading.Thread(target=take, args=(second, 'second'))]
    for t in threads:
        t.start()
    time.sleep(0.2)
    assert order == [] and ('third', 2) in heard and ('second', 1) in heard  # positions reported
    first.release()
    for t in threads:
        t.join(5)
    assert order == ['second', 'third']  # FIFO by admission, not by who waits first
    assert gate.snapshot() == dict(running=0, waiting=0, admitted=3, refused=1, served=3)


def test_gate_turns_away_a_request_that_waits_too_long():
    gate = Gate(max_waiting=1, wait_timeout=0.2)
    holder = gate.admit()
    holder.acquire()
    waiter = gate.admit()
    start = time.monotonic()
    with pytest.raises(Busy):
        waiter.acquire()
    assert 0.15 < time.monotonic() - start < 2
    assert gate.snapshot()['waiting'] == 0 and gate.snapshot()['gave_up'] == 1
    gate.admit()  # its place was given back


# ------------------------------------------------------------------------------------------------ the model cache

def test_cache_is_bounded_by_count_and_bytes_lru():
    calls = []
    sizes = {A: 1000, B: 2000, C: 3000, D: 10_000}  # float32 parameters: 4 bytes each
    engine = Engine(max_models=3, max_bytes=16_000, loader=loader({n: lambda n=n: (FakeSegmenter(sizes[n]), status())
                                                                   for n in sizes}, calls))
    cpu = torch.device('cpu')
    engine.get(A, cpu), engine.get(B, cpu)
    assert engine.cached() == [A, B] and engine.cache_bytes() == 12_000
    engine.get(A, cpu)  # a hit moves A to the end
    engine.get(C, cpu)  # 24 kB > 16 kB: evict the least recently used (B), then 16 kB fits
    assert engine.cached() == [A, C] and engine.cache_bytes() == 16_000
    engine.get(B, cpu)  # 24 kB: evict A, then 20 kB: evict C
    assert engine.cached() == [B] and engine.cache_bytes() == 8000
    engine.get(D, cpu)  # alone over the limit: the newest model always stays
    assert engine.cached() == [D]
    assert calls == [A, B, C, B, D]
    engine = Engine(max_models=2, max_bytes=10**9, loader=loader({n: lambda: (FakeSegmenter(), status())
                                                                  for n in sizes}, calls))
    for name in (A, B, C):
        engine.get(name, cpu)
    assert engine.cached() == [B, C]


def test_models_loaded_during_a_fault_are_looked_up_again_later():
    """A model whose weights source failed (status.problems, not ADE20K) is reloaded after ``retry_after``;
    a healthy one stays cached."""
    calls, outcomes = [], iter([status('none', ['hub: unreachable']), status('ade20k')])
    engine = Engine(retry_after=0.3, loader=loader({A: lambda: (FakeSegmenter(), next(outcomes)),
                                                    B: lambda: (FakeSegmenter(), status('demo'))}, calls))
    first = engine.segment(IMAGE, [A, B], 'cpu', 'fp32', 64)
    assert first[0].status.kind == 'none' and 'hub: unreachable' in first[0].notes[0]
    assert 'looked up again' in first[0].notes[0] and first[1].notes == []
    engine.segment(IMAGE, [A, B], 'cpu', 'fp32', 64)
    assert calls == [A, B]  # within retry_after: cached
    time.sleep(0.35)
    again = engine.segment(IMAGE, [A, B], 'cpu', 'fp32', 64)
    assert calls == [A, B, A] and again[0].status.kind == 'ade20k' and again[0].notes == []
    time.sleep(0.35)
    engine.segment(IMAGE, [A, B], 'cpu', 'fp32', 64)
    assert calls == [A, B, A]  # healthy now: stays


def test_labels_are_uint8_and_images_above_the_working_size_are_refused():
    engine = Engine(loader=loader({A: FakeSegmenter()}, []), limits=small_limits(max_work_pixels=100_000))
    (result,) = engine.segment(IMAGE, [A], 'cpu', 'fp32', 64)
    assert result.labels.dtype == np.uint8 and result.labels.shape == IMAGE.shape[:2]
    with pytest.raises(ValueError, match='megapixels'):
        engine.segment(np.zeros((400, 300, 3), np.uint8), [A], 'cpu', 'fp32', 64)


# ---------------------------------------------------------------------------------------------- the time budget

def test_inference_stops_at_the_next_module_after_the_budget():
    slow = FakeSegmenter(blocks=60, seconds=0.05)  # 3 s of work in 60 modules
    engine = Engine(loader=loader({A: slow, B: FakeSegmenter()}, []), timeout=0.4, limits=small_limits())
    start = time.monotonic()
    with pytest.raises(InferenceTimeout, match='time budget of 0.4 s'):
        engine.segment(IMAGE, [A], 'cpu', 'fp32', 64)
    assert time.monotonic() - start < 1.5
    assert engine.gate.snapshot()['running'] == 0  # the slot is free at once
    (ok,) = engine.segment(IMAGE, [B], 'cpu', 'fp32', 64)
    assert ok.labels.shape == IMAGE.shape[:2] and engine.gate.snapshot()['timed_out'] == 1


def test_one_long_operation_gets_an_answer_in_time_and_keeps_the_app_busy_until_it_ends():
    stuck = FakeSegmenter(blocks=1, seconds=2.0)  # no module boundary for 2 s
    engine = Engine(loader=loader({A: stuck, B: FakeSegmenter()}, []), timeout=0.3, limits=small_limits())
    engine.get(A, torch.device('cpu')), engine.get(B, torch.device('cpu'))
    start = time.monotonic()
    with pytest.raises(InferenceTimeout, match='stays busy'):
        engine.segment(IMAGE, [A], 'cpu', 'fp32', 64)
    assert time.monotonic() - start < 1.5  # budget + grace, not the 2 s operation
    assert engine.gate.snapshot()['running'] == 1  # the computation still runs: marked busy
    with pytest.raises(Busy):
        engine.segment(IMAGE, [B], 'cpu', 'fp32', 64)
    deadline = time.monotonic() + 10
    while engine.gate.snapshot()['running']:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (ok,) = engine.segment(IMAGE, [B], 'cpu', 'fp32', 64)
    assert ok.device == 'cpu'


def test_inference_runs_with_fixed_threads_and_results_do_not_depend_on_the_load():
    import asmlp
    model = asmlp.create_segmenter(A).eval()
    engine = Engine(loader=loader({A: model}, []), limits=small_limits(torch_threads=1))
    seen = []
    engine.run(lambda: seen.append(torch.get_num_threads()))
    assert seen == [1]
    first = engine.segment(IMAGE, [A], 'cpu', 'fp32', 64)[0].labels
    hog = threading.Thread(target=lambda: [torch.randn(256, 256) @ torch.randn(256, 256) for _ in range(200)])
    hog.start()
    again = engine.segment(IMAGE, [A], 'cpu', 'fp32', 64)[0].labels
    hog.join()
    assert np.array_equal(first, again)


# ------------------------------------------------------------------------------------- CUDA out of memory (faked)

@pytest.fixture
def fake_gpu(monkeypatch):
    """torch.cuda.is_available() -> True and a recording torch.cuda.empty_cache (this machine has no GPU)."""
    record = types.SimpleNamespace(empty_cache=[], watch=None)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)

    def empty_cache():
        # what the out-of-memory forward held must be gone before the cache is emptied
        record.empty_cache.append(record.watch is None or record.watch.activation is None
                                  or record.watch.activation() is None)
    monkeypatch.setattr(torch.cuda, 'empty_cache', empty_cache)
    return record


def test_cuda_oom_retries_at_a_smaller_size_with_a_message(fake_gpu):
    model = FakeSegmenter(oom=lambda device, scale: device == 'cuda' and scale[1] > 128)
    fake_gpu.watch = model
    engine = Engine(loader=loader({A: model}, []), limits=small_limits())
    (result,) = engine.segment(IMAGE, [A], 'gpu', 'fp32', 256)
    assert model.calls == [('cuda', (1024, 256)), ('cuda', (512, 128))]
    assert result.device == 'cuda' and min(result.input_size) == 128
    assert any('GPU out of memory at short side 256 px' in n and 'ran at 128 px instead' in n for n in result.notes)
    assert fake_gpu.empty_cache and all(fake_gpu.empty_cache)  # called, after the activations were freed
    assert engine.is_cached(A, torch.device('cuda'))


def test_cuda_oom_falls_back_to_the_cpu_and_frees_the_gpu_copy(fake_gpu):
    model = FakeSegmenter(oom=lambda device, scale: device == 'cuda')
    fake_gpu.watch = model
    engine = Engine(loader=loader({A: model}, []), limits=small_limits())
    (result,) = engine.segment(IMAGE, [A], 'gpu', 'fp32', 256)
    assert [d for d, _ in model.calls] == ['cuda', 'cuda', 'cpu']
    assert result.device == 'cpu' and result.precision == 'fp32' and min(result.input_size) == 256
    assert any('ran on the CPU instead' in n for n in result.notes)
    assert not engine.is_cached(A, torch.device('cuda')) and engine.is_cached(A, torch.device('cpu'))
    assert len(fake_gpu.empty_cache) >= 2 and all(fake_gpu.empty_cache)
    assert result.labels.shape == IMAGE.shape[:2]


def test_oom_on_the_cpu_is_not_hidden(fake_gpu):
    engine = Engine(loader=loader({A: FakeSegmenter(oom=lambda device, scale: True)}, []), limits=small_limits())
    with pytest.raises(torch.cuda.OutOfMemoryError):
        engine.segment(IMAGE, [A], 'cpu', 'fp32', 64)


# ------------------------------------------------------------------------------------- uploads: decompression bombs

def png(width: int, height: int, rows: bytes | None = None, color_type: int = 0) -> bytes:
    """A PNG declaring width x height (8-bit gray by default); ``rows`` = the raw scanlines (None: a truncated
    stream). Zero scanlines compress about 1000:1: a real decompression bomb."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    ihdr = struct.pack('>IIBBBBB', width, height, 8, color_type, 0, 0, 0)
    data = zlib.compress(rows if rows is not None else b'\0' * 10, 9)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', data) + chunk(b'IEND', b'')


def zero_png(width: int, height: int) -> bytes:
    compressor = zlib.compressobj(9)
    line = b'\0' * (width + 1)
    data = b''.join(compressor.compress(line) for _ in range(height)) + compressor.flush()

    def chunk(kind, payload):
        return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(kind + payload))
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', data) + chunk(b'IEND', b'')


CHILD = r'''
import json, sys, time
from asmlp.image_io import ImageInputError, load_image

def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024

out = []
for path in sys.argv[1:]:
    before, start = hwm(), time.perf_counter()
    try:
        rgb, info = load_image(path)
        outcome = dict(ok=True, shape=list(rgb.shape), describe=info.describe())
    except ImageInputError as error:
        outcome = dict(ok=False, message=str(error))
    out.append(dict(path=path, seconds=time.perf_counter() - start, peak_growth=hwm() - before, **outcome))
print(json.dumps(out))
'''


def test_bombs_are_refused_or_shrunk_before_full_decoding(tmp_path):
    from PIL import Image
    files = {
        'header_10g.png': png(100_000, 100_000),          # declares 10 gigapixels, 100 bytes
        'bomb_64mp.png': zero_png(8000, 8000),             # 64 MP of real zeros in ~64 kB: over the 50 MP limit
        'thin_32mp.png': png(1, 32_511_957),               # 58 bytes, 1 px wide: ~1 GB to decode and resize
        'jpeg_48mp.jpg': None,                             # 48 MP JPEG: decoded at 1/4 scale (draft)
        'bomb_49mp.png': zero_png(7000, 7000),             # 49 MP of zeros: accepted, shrunk to the working size
    }
    for name, data in files.items():
        if data is None:
            Image.new('RGB', (8000, 6000), (120, 80, 40)).save(tmp_path / name, quality=70)
        else:
            (tmp_path / name).write_bytes(data)
    sizes = {name: (tmp_path / name).stat().st_size for name in files}
    assert sizes['bomb_64mp.png'] < 200_000 and sizes['bomb_49mp.png'] < 200_000
    proc = subprocess.run([sys.executable, '-c', CHILD, *(str(tmp_path / n) for n in files)], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {Path(r['path']).name: r for r in json.loads(proc.stdout.splitlines()[-1])}
    for name in ('header_10g.png', 'bomb_64mp.png', 'thin_32mp.png'):
        r = results[name]
        assert not r['ok'] and ('megapixels' in r['message'] or 'sides up to' in r['message']), r
        assert r['seconds'] < 0.5 and r['peak_growth'] < 32 * 2**20, r  # refused from the header
    jpeg = results['jpeg_48mp.jpg']
    assert jpeg['ok'] and jpeg['shape'][0] * jpeg['shape'][1] <= 2_100_000 and 'processed at' in jpeg['describe']
    assert jpeg['peak_growth'] < 100 * 2**20, jpeg  # a full decode alone needs 192 MB
    bomb = results['bomb_49mp.png']
    assert bomb['ok'] and bomb['shape'][0] * bomb['shape'][1] <= 2_100_000, bomb
    assert bomb['peak_growth'] < 400 * 2**20, bomb
    out = REPO / 'test-output' / 'reliability'
    out.mkdir(parents=True, exist_ok=True)
    (out / 'bombs.json').write_text(json.dumps(dict(sizes=sizes, results=results), indent=1))
