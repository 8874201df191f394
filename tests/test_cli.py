"""Command line smoke tests: the benchmark commands run and print their tables (timings are never asserted)."""
import json
import re
import subprocess
import sys

import pytest

from asmlp.precision import cpu_bf16_supported


def run(*args, timeout=300):
    return subprocess.run([sys.executable, '-m', 'asmlp', *args], capture_output=True, text=True, timeout=timeout)


def test_bench_shift_prints_every_stage_tensor_and_direction():
    out = run('bench', 'shift', '--repeat', '3')
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith('| 1x')]
    assert len(rows) == 8 and {r.split('|')[2].strip() for r in rows} == {'W', 'H'}
    assert '1x96x128x128' in out.stdout and '1x768x16x16' in out.stdout


@pytest.mark.cpu_precision
def test_bench_models_small_run():
    out = run('bench', 'models', '--size', '64', '96', '--models', 'upernet_asmlp_tiny', '--repeat', '1')
    assert out.returncode == 0, out.stderr
    table = [line for line in out.stdout.splitlines() if line.startswith('| upernet_asmlp_tiny')]
    assert {'NCHW', 'channels_last'} <= {r.split('|')[2].strip() for r in table}
    fp32 = [r for r in table if r.split('|')[3].strip() == 'fp32']
    assert all(r.split('|')[6].strip() == '100.00%' for r in fp32)  # fp32 agrees with itself
    bf16 = [r for r in table if r.split('|')[3].strip() == 'bf16']
    assert bool(bf16) == cpu_bf16_supported()  # bf16 rows exactly where the CPU (or ASMLP_CPU_BF16=1) has it
    assert 'fastest configuration' in out.stdout


@pytest.mark.cpu_precision
def test_bench_app_small_run():
    """The app benchmark end to end on small demo models: start-up, a compare through the API, the engine."""
    out = run('bench', 'app', '--size', '128', '171', '--models', 'upernet_asmlp_nano', 'setr_pup_vit_nano',
              '--repeat', '1')
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    startup = next(line for line in lines if line.startswith('start-up, `python app.py` to HTTP 200'))
    assert re.search(r'a bare gr\.Blocks page, alternating with it: [0-9.]+ s; ratio [0-9.]+$', startup), startup
    api = next(line for line in lines if line.startswith(
        'warm compare through the API, upernet_asmlp_nano + setr_pup_vit_nano, 128x171 image'))
    found = re.search(r'masks only: ([0-9.]+) s .*first panel after ([0-9.]+) s', api)
    total, first = (float(v) for v in found.groups())
    assert first <= total  # the first model's panel comes before the whole answer
    engine = next(line for line in lines if line.startswith('the same in-process'))
    assert 'upernet_asmlp_nano' in engine and 'setr_pup_vit_nano' in engine
    roof = next(line for line in lines if line.startswith('roofline ('))
    assert re.search(r'GEMM [0-9]+ GMAC/s on this CPU\): upernet_asmlp_nano [0-9]+ GMACs = [0-9.]+ s', roof), roof
    literal = next(line for line in lines if line.startswith('labels equal to the literal fp32'))
    app = re.findall(r'(\w+) app path \((fp32|bf16)\) ([0-9.]+)%, fp32 path ([0-9.]+)%', literal)
    assert [name for name, *_ in app] == ['upernet_asmlp_nano', 'setr_pup_vit_nano'], literal
    assert {precision for _, precision, *_ in app} == {'bf16' if cpu_bf16_supported() else 'fp32'}
    # the inference shortcuts compute the same function (to rounding); bf16 drifts a little more
    assert min(float(fp32) for *_, fp32 in app) >= 99.9
    assert min(float(pct) for _, _, pct, _ in app) >= (99.0 if cpu_bf16_supported() else 99.9)


@pytest.mark.parametrize('args,message', [
    (('bench', 'models', '--models', 'nope'), 'unknown model'),
    (('bench', 'app', '--models', 'nope'), 'unknown model'),
    (('bench', 'compile', '--models', 'nope'), 'unknown model'),
    (('bench', 'models', '--size', '0', '64'), 'sizes must be >= 1'),
    (('info', '--size', '512'), 'expected 2 arguments'),
])
def test_bad_arguments(args, message):
    out = run(*args)
    assert out.returncode != 0 and message in out.stderr


def test_bench_shift_rows_structure():
    from asmlp.bench.shift import bench_shift, format_rows
    rows = bench_shift(shapes=[(1, 10, 6, 7)], repeat=3)
    assert [r['axis'] for r in rows] == ['W', 'H']
    assert format_rows(rows).count('| 1x10x6x7 |') == 2


def test_info_counts_once_then_answers_from_the_cache_without_torch(tmp_path, monkeypatch):
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path))
    args = ['info', '--models', 'upernet_asmlp_nano', 'setr_pup_vit_nano', '--size', '64', '96', '--json']
    first = run(*args)
    assert first.returncode == 0, first.stderr
    code = ('import json, sys\nfrom asmlp.__main__ import main\n'
            f'main({args!r})\nprint(json.dumps(sorted(m for m in ("torch", "timm") if m in sys.modules)))')
    cached = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert cached.returncode == 0, cached.stderr
    rows, imported = cached.stdout.strip().splitlines()
    assert json.loads(imported) == []  # answered from the cache
    assert json.loads(rows) == json.loads(first.stdout)
    from asmlp.metrics import segmenter_metrics
    assert json.loads(rows)[0] == json.loads(json.dumps(segmenter_metrics('upernet_asmlp_nano', (64, 96))))


def test_info_cache_is_keyed_by_the_entry_and_refresh_recounts(tmp_path, monkeypatch):
    from asmlp import counts_cache, metrics, zoo
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path))
    calls = []
    real = metrics.segmenter_metrics
    monkeypatch.setattr(metrics, 'segmenter_metrics', lambda name, size: calls.append(name) or real(name, size))
    original = counts_cache.cached_segmenter_metrics('upernet_asmlp_nano', (32, 32))
    assert counts_cache.cached_segmenter_metrics('upernet_asmlp_nano', (32, 32)) == original
    assert calls == ['upernet_asmlp_nano']
    counts_cache.cached_segmenter_metrics('upernet_asmlp_nano', (32, 32), refresh=True)
    assert len(calls) == 2
    table = dict(zoo._table())
    entry = table['upernet_asmlp_nano']
    table['upernet_asmlp_nano'] = {**entry, 'decode_head': {**entry['decode_head'], 'kwargs': {
        **entry['decode_head']['kwargs'], 'channels': 16}}}
    monkeypatch.setattr(zoo, '_table', lambda: table)
    changed = counts_cache.cached_segmenter_metrics('upernet_asmlp_nano', (32, 32))
    assert len(calls) == 3 and changed['params'] != original['params']  # a changed entry is recounted
