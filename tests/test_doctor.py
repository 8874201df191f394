"""``python -m asmlp doctor``: on this machine every check prints ok or skipped and the exit code is 0; a wrong kernel
result (a backend returning a perturbed tensor) is FAILED with the difference and a non-zero exit; ``--json`` parses
and names every check; doctor imports no UI library."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from asmlp.__main__ import main

DEMO_MODELS = ('upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano')
DTYPES = ('fp32', 'fp16', 'bf16')
LINE = re.compile(r'^(ok|skipped|FAILED) +(\S+) +([0-9.]+) s  (.*)$')


def expected_checks(devices, quick):
    """The doctor's checks restated from its specification: name -> skipped by ``quick``."""
    names = {f'backend/auto/{d}': False for d in devices}
    for d in devices:
        backends = ('fast', 'triton') if d == 'cpu' else ('reference', 'fast', 'triton')
        names.update({f'shift/{d}/{b}/{t}': False for b in backends for t in DTYPES})
    for d in devices:
        names.update({f'fused/{d}/{t}': False for t in DTYPES})
    for m in DEMO_MODELS:
        for d in devices:
            precisions = ('bf16',) if d == 'cpu' else DTYPES
            names.update({f'demo/{m}/{d}/{p}': quick and d == 'cpu' for p in precisions})
    names.update({f'compile/{d}': quick for d in devices})
    return names


def here():
    return ['cpu'] + [f'cuda:{i}' for i in range(torch.cuda.device_count())]


def without_interpreter_setting():
    """The environment without TRITON_INTERPRET: doctor decides it (on here without a GPU)."""
    return {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}


def cpu_flags():
    with open('/proc/cpuinfo') as f:
        return set(next(line.split(':', 1)[1].split() for line in f if line.startswith('flags')))


def test_quick_run_prints_every_check_ok_or_skipped_and_exits_0():
    out = subprocess.run([sys.executable, '-m', 'asmlp', 'doctor', '--quick'], capture_output=True, text=True,
                         timeout=300, env=without_interpreter_setting())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    results = [LINE.match(line).groups() for line in lines if LINE.match(line)]
    expected = expected_checks(here(), quick=True)
    assert [name for _, name, _, _ in results] == list(expected)
    for status, name, seconds, detail in results:
        if expected[name]:
            assert status == 'skipped' and detail.startswith('--quick') and float(seconds) == 0, (name, detail)
        else:  # skipped where a device cannot run it (e.g. the interpreted CPU kernels beside a GPU)
            assert status in ('ok', 'skipped'), (name, detail)
    if not torch.cuda.is_available() and importlib.util.find_spec('triton'):
        # doctor turned the interpreter on: the Triton kernels ran on the CPU, and so did everything --quick keeps
        assert {status for status, name, _, _ in results if not expected[name]} == {'ok'}
        assert any(line.startswith('triton    interpreter on (TRITON_INTERPRET=1 set by doctor') for line in lines)
        assert 'gpu       none' in out.stdout
    shift_ok = [detail for status, name, _, detail in results if name.startswith('shift/') and status == 'ok']
    assert shift_ok and all(d.startswith('forward and backward bit-identical to the CPU reference') for d in shift_ok)
    cpu = next(line for line in lines if line.startswith('cpu '))
    flags = cpu_flags()
    assert f'AVX-512 {"yes" if "avx512f" in flags else "no"}' in cpu
    assert f'AVX512-BF16 {"yes" if "avx512_bf16" in flags else "no"}' in cpu
    assert f'AMX {"yes" if {"amx_bf16", "amx_tile"} & flags else "no"}' in cpu
    skipped = sum(expected.values())
    assert f'{len(expected) - skipped} ok, {skipped} skipped, 0 FAILED' in out.stdout


def test_json_names_every_check_and_no_ui_library_is_imported():
    code = ('import sys\n'
            'from asmlp.__main__ import main\n'
            'rc = main(["doctor", "--quick", "--json"])\n'
            'ui = sorted(m for m in sys.modules if m.split(".")[0] in ("gradio", "plotly"))\n'
            'print("UI MODULES", ui, file=sys.stderr)\n'
            'sys.exit(rc)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                         env=without_interpreter_setting())
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.splitlines()[-1] == 'UI MODULES []'
    report = json.loads(out.stdout)
    expected = expected_checks(here(), quick=True)
    assert [c['name'] for c in report['checks']] == list(expected)
    assert {c['status'] for c in report['checks']} <= {'ok', 'skipped'}
    assert all(isinstance(c['seconds'], float) and c['detail'] for c in report['checks'])
    assert report['summary'] == {'ok': sum(c['status'] == 'ok' for c in report['checks']),
                                 'skipped': sum(c['status'] == 'skipped' for c in report['checks']), 'FAILED': 0}
    from importlib.metadata import version
    versions = report['versions']
    assert versions['torch'] == torch.__version__ and versions['python'] == '.'.join(map(str, sys.version_info[:3]))
    assert versions['gradio'] == version('gradio') and versions['plotly'] == version('plotly')  # read, not imported
    assert versions['triton'] == version('triton') and versions['timm'] == version('timm')
    assert report['cpu']['flags']['AVX512-BF16'] == ('avx512_bf16' in cpu_flags())
    assert len(report['gpus']) == torch.cuda.device_count() and report['quick'] is True
    progress = [LINE.match(line).group(2) for line in out.stderr.splitlines() if LINE.match(line)]
    assert progress == list(expected)  # the lines went to stderr as the checks ended


def test_a_wrong_shift_kernel_result_is_failed_with_the_difference(monkeypatch, capsys):
    """The Triton shift-pair kernel returning one element 0.5 off: FAILED naming the output, the case and the
    difference, exit code 1."""
    from asmlp.ops import shift_triton
    real = shift_triton.shift_pair

    def perturbed(x, *args, **kwargs):
        out_w, out_h = real(x, *args, **kwargs)
        out_h = out_h.clone()
        out_h[0, 0, 0, 0] += 0.5
        return out_w, out_h

    monkeypatch.setattr(shift_triton, 'shift_pair', perturbed)
    assert main(['doctor', '--only', 'shift/cpu/triton/fp32', 'shift/cpu/fast/fp32']) == 1
    lines = capsys.readouterr().out.splitlines()
    results = {m.group(2): m.groups() for m in map(LINE.match, lines) if m}
    assert set(results) == {'shift/cpu/triton/fp32', 'shift/cpu/fast/fp32'}
    assert results['shift/cpu/fast/fp32'][0] == 'ok'
    status, _, _, detail = results['shift/cpu/triton/fp32']
    assert status == 'FAILED'
    # the first of the doctor's cases: 2x13x7x9 (1638 elements), NCHW, shift 5, dilation 1
    assert detail.startswith('forward H, 2x13x7x9 NCHW, shift 5 dilation 1: 1 of 1638 elements differ, '
                             'max |difference| 0.5 at (0, 0, 0, 0)'), detail
    assert '1 ok, 0 skipped, 1 FAILED' in '\n'.join(lines)
    assert any('python -m asmlp doctor --json > doctor.json' in line for line in lines)


def test_a_wrong_fused_kernel_result_is_failed_beyond_the_limit(monkeypatch, capsys):
    from asmlp.ops import shift_triton
    real = shift_triton.shift_mlp

    def perturbed(*args, **kwargs):
        out = real(*args, **kwargs).clone()
        out[0, 0, 0, 0] += 1.0
        return out

    monkeypatch.setattr(shift_triton, 'shift_mlp', perturbed)
    assert main(['doctor', '--json', '--only', 'fused/cpu/fp32']) == 1
    report = json.loads(capsys.readouterr().out)
    (check,) = report['checks']
    assert check['name'] == 'fused/cpu/fp32' and check['status'] == 'FAILED'
    found = re.fullmatch(r'max \|fused - eager\| / max \|eager\| = (\S+), above the 0\.0001 limit \(2x40x10x10 '
                         r'channels_last\)', check['detail'])
    assert found and float(found.group(1)) > 1e-4, check['detail']
    assert report['summary'] == {'ok': 0, 'skipped': 0, 'FAILED': 1}


def test_an_unknown_check_name_is_one_line(capsys):
    assert main(['doctor', '--only', 'shift/tpu']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m asmlp doctor: no check named 'shift/tpu'; the checks here: backend/auto/cpu")
    assert len(err.splitlines()) == 1


def test_the_checks_of_a_gpu_machine():
    """What doctor runs beside a GPU (planned here, run by tools/gpu-check.sh there): every shift backend, the
    fused kernels and the demo models in three precisions on the GPU; --quick skips only CPU demo and compile."""
    from asmlp.doctor.plan import plan
    checks = plan(['cpu', 'cuda:0'], quick=True)
    expected = expected_checks(['cpu', 'cuda:0'], quick=True)
    assert [c.name for c in checks] == list(expected)
    assert {c.name for c in checks if c.skip} == {name for name, skipped in expected.items() if skipped}


def test_the_interpreter_is_decided_before_the_kernels_are_defined(monkeypatch):
    from asmlp.doctor.cli import prepare_triton
    monkeypatch.delitem(sys.modules, 'asmlp.ops.shift_triton', raising=False)
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert prepare_triton().startswith('interpreter off: a GPU run')
    assert 'TRITON_INTERPRET' not in os.environ
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert prepare_triton().startswith('interpreter on (TRITON_INTERPRET=1 set by doctor: no GPU)')
    assert os.environ['TRITON_INTERPRET'] == '1'
    monkeypatch.setenv('TRITON_INTERPRET', '0')
    assert prepare_triton() == 'TRITON_INTERPRET=0 from the environment: interpreter off'


@pytest.mark.skipif(torch.cuda.is_available(), reason='the demo forwards on a GPU machine run in tools/gpu-check.sh')
def test_demo_model_forward_on_the_cpu_in_bf16(capsys):
    """One of the checks --quick skips, run once: a demo model in bf16 autocast against CPU fp32."""
    assert main(['doctor', '--only', 'demo/upernet_asmlp_nano/cpu/bf16']) == 0
    (line,) = [m.groups() for m in map(LINE.match, capsys.readouterr().out.splitlines()) if m]
    assert line[0] == 'ok' and re.fullmatch(r'\d+\.\d\d% of 131072 labels equal CPU fp32 \(limit 97%\)', line[3])
