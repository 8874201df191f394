"""tools/gpu-check.sh: the steps it prints with --dry-run (each one a command this repository accepts), and a run cut
by its budget keeps what it measured."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asmlp.__main__ import build_parser, main

SCRIPT = Path(__file__).resolve().parents[1] / 'tools' / 'gpu-check.sh'
STEP = re.compile(r'^step (\S+) \(timeout (\d+)s\): (.*)$')
T_S_SEGMENTERS = {'upernet_asmlp_tiny', 'upernet_asmlp_small', 'upernet_swin_tiny', 'upernet_swin_small'}
CLASSIFIERS = {'asmlp_tiny', 'asmlp_small', 'asmlp_base', 'swin_tiny', 'swin_small', 'swin_base'}


def gpu_check(*args, env=None, timeout=60):
    return subprocess.run(['bash', str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'PYTHON': sys.executable, **(env or {})})


def dry_run_steps(tmp_path):
    out = gpu_check('--dry-run', '--out', str(tmp_path / 'results'))
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / 'results').exists()  # nothing run, nothing written
    steps = [STEP.match(line).groups() for line in out.stdout.splitlines() if STEP.match(line)]
    return {name: (int(timeout), shlex.split(command)) for name, timeout, command in steps}, out.stdout


def asmlp_args(command):
    assert command[:3] == [sys.executable, '-m', 'asmlp'], command
    return command[3:]


def test_dry_run_prints_the_steps_in_order(tmp_path):
    steps, text = dry_run_steps(tmp_path)
    assert list(steps) == ['environment', 'doctor', 'triton-tests', 'bench-fused', 'bench-shift', 'bench-models',
                           'throughput']
    assert 'install timm and safetensors from tools/wheels/*.whl if they are missing' in text
    assert asmlp_args(steps['doctor'][1]) == ['doctor', '--json']
    tests = steps['triton-tests'][1]
    assert tests[:3] == [sys.executable, '-m', 'pytest'] and 'tests/test_shift_triton.py' in tests
    assert tests[-2:] == ['-k', 'cuda']
    assert asmlp_args(steps['bench-fused'][1])[:2] == ['bench', 'fused']
    shift = build_parser(asmlp_args(steps['bench-shift'][1])).parse_args(asmlp_args(steps['bench-shift'][1]))
    assert (shift.what, shift.device) == ('shift', 'cuda')
    models_args = asmlp_args(steps['bench-models'][1])
    models = build_parser(models_args).parse_args(models_args)
    assert (models.what, models.device, set(models.models)) == ('models', 'cuda', T_S_SEGMENTERS)
    throughput_args = asmlp_args(steps['throughput'][1])
    throughput = build_parser(throughput_args).parse_args(throughput_args)
    assert (throughput.what, throughput.device, throughput.precision, throughput.channels_last, throughput.batch) \
        == ('throughput', 'cuda', 'fp16', True, 64)
    assert set(throughput.models) == CLASSIFIERS
    # each step has its own timeout; together they fit a 15-minute lease with room for a second try
    assert all(timeout > 0 for timeout, _ in steps.values()) and sum(t for t, _ in steps.values()) <= 400


def test_the_test_step_selects_the_cuda_cases(tmp_path):
    steps, _ = dry_run_steps(tmp_path)
    command = steps['triton-tests'][1]
    collected = subprocess.run([*command, '--collect-only'], capture_output=True, text=True, timeout=300,
                               cwd=SCRIPT.parents[1])
    ids = [line for line in collected.stdout.splitlines() if '::' in line]
    assert len(ids) >= 20 and all('cuda' in i for i in ids), collected.stdout[-2000:]
    assert any(i.startswith('tests/test_shift_triton.py::test_fused_token_mixing_matches_fp64_reference') for i in ids)


@pytest.mark.skipif(sys.platform != 'linux', reason='the script targets the lent Linux machines')
def test_a_run_out_of_budget_keeps_what_it_measured(tmp_path):
    """With a 12 s budget: the doctor step runs under a timeout of what is left (cut, or done in time), its output
    is in the log as it came, and every later step is logged as not run; the run fails."""
    out = gpu_check('--out', str(tmp_path), '--budget', '12', timeout=120)
    assert out.returncode == 1
    log = (tmp_path / 'gpu-check.log').read_text()
    assert re.search(r'^== doctor \(timeout 1[0-2]s\): .* -m asmlp doctor --json$', log, re.M), log
    end = re.search(r'^== doctor: exit (\d+) in \d+s( \(cut by its timeout\))?$', log, re.M)
    assert end and (end.group(1) == '124') == bool(end.group(2)), log
    if end.group(1) == '0':  # done in time: its report is whole
        report = json.loads((tmp_path / 'doctor.json').read_text())
        assert all(c['status'] in ('ok', 'skipped') for c in report['checks'])
    for step in ('triton-tests', 'bench-fused', 'bench-shift', 'bench-models', 'throughput'):
        assert re.search(rf'^== {step}: not run, -?\d+s of the 12s budget left$', log, re.M), log
    assert log.rstrip().endswith('some step did not exit 0')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['doctor.json', 'gpu-check.log']


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has a GPU')
@pytest.mark.parametrize('what', ['shift', 'models', 'throughput'])
def test_the_gpu_benchmarks_say_in_one_line_that_there_is_no_gpu(what):
    with pytest.raises(ValueError, match=r"^device 'cuda': no CUDA GPU on this machine \(torch "):
        main(['bench', what, '--device', 'cuda', '--repeat', '1'])
