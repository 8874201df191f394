"""Command line smoke tests: the benchmark commands run and print their tables (timings are never asserted)."""
import re
import subprocess
import sys

import pytest


def run(*args, timeout=300):
    return subprocess.run([sys.executable, '-m', 'asmlp', *args], capture_output=True, text=True, timeout=timeout)


def test_bench_shift_prints_every_stage_tensor_and_direction():
    out = run('bench', 'shift', '--repeat', '3')
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith('| 1x')]
    assert len(rows) == 8 and {r.split('|')[2].strip() for r in rows} == {'W', 'H'}
    assert '1x96x128x128' in out.stdout and '1x768x16x16' in out.stdout


def test_bench_models_small_run():
    out = run('bench', 'models', '--size', '64', '96', '--models', 'upernet_asmlp_tiny', '--repeat', '1')
    assert out.returncode == 0, out.stderr
    table = [line for line in out.stdout.splitlines() if line.startswith('| upernet_asmlp_tiny')]
    assert {'NCHW', 'channels_last'} <= {r.split('|')[2].strip() for r in table}
    fp32 = [r for r in table if r.split('|')[3].strip() == 'fp32']
    assert all(r.split('|')[6].strip() == '100.00%' for r in fp32)  # fp32 agrees with itself
    assert 'fastest configuration' in out.stdout


def test_bench_app_small_run():
    """The app benchmark end to end on small demo models: start-up, a compare through the API, the engine."""
    out = run('bench', 'app', '--size', '128', '171', '--models', 'upernet_asmlp_nano', 'setr_pup_vit_nano',
              '--repeat', '1')
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any(line.startswith('start-up, `python app.py` to HTTP 200') for line in lines)
    assert any(line.startswith('warm compare through the API, upernet_asmlp_nano + setr_pup_vit_nano, 128x171 image')
               for line in lines)
    engine = next(line for line in lines if line.startswith('the same in-process'))
    assert 'upernet_asmlp_nano' in engine and 'setr_pup_vit_nano' in engine
    literal = next(line for line in lines if line.startswith('labels equal to the literal fp32'))
    fp32 = [float(p) for p in re.findall(r'([0-9.]+)% \(fp32\)', literal)]
    assert len(fp32) == 2 and min(fp32) >= 99.9  # the inference shortcuts compute the same function (to rounding)


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
