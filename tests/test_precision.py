"""asmlp.precision: the CPU bf16 switch ($ASMLP_CPU_BF16) forces either path on any CPU, and 'auto' follows it."""
import os
import subprocess
import sys

import pytest
import torch

from asmlp import precision
from asmlp.service import resolve_precision

CPU = torch.device('cpu')


@pytest.mark.parametrize('value,expected', [('0', False), ('1', True), (' 1 ', True)])
def test_switch_forces_the_path(monkeypatch, value, expected):
    monkeypatch.setenv(precision.CPU_BF16_ENV, value)
    assert precision.cpu_bf16_supported() is expected
    assert resolve_precision('auto', CPU) == ('bf16' if expected else 'fp32')
    assert resolve_precision('fp32', CPU) == 'fp32'  # an explicit choice is never overridden


def test_unset_switch_detects_the_cpu(monkeypatch):
    monkeypatch.delenv(precision.CPU_BF16_ENV, raising=False)
    assert precision.cpu_bf16_supported() is precision.cpu_bf16_native()
    with open('/proc/cpuinfo') as f:  # the detection agrees with what the kernel reports (x86-64 Linux)
        flags = set(f.read().split())
    assert precision.cpu_bf16_native() is bool(flags & {'avx512_bf16', 'amx_bf16'})


def test_bad_switch_value_is_named(monkeypatch):
    monkeypatch.setenv(precision.CPU_BF16_ENV, 'yes')
    with pytest.raises(ValueError, match='ASMLP_CPU_BF16 must be 0 or 1'):
        precision.cpu_bf16_supported()


@pytest.mark.parametrize('value', ['0', '1'])
def test_subprocesses_see_the_switch(value):
    code = ('from asmlp.service import resolve_precision; import torch; '
            'print(resolve_precision("auto", torch.device("cpu")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, precision.CPU_BF16_ENV: value})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ('bf16' if value == '1' else 'fp32')


@pytest.mark.cpu_precision
def test_bf16_autocast_computes_on_this_cpu():
    """Forced on where the CPU has no native bf16, autocast still computes (emulated): a conv agrees with fp32."""
    conv = torch.nn.Conv2d(4, 8, 3, padding=1).eval()
    x = torch.randn(1, 4, 16, 16)
    with torch.inference_mode():
        expected = conv(x)
        with precision.autocast('cpu', resolve_precision('auto', CPU)):
            got = conv(x)
    assert got.dtype == (torch.bfloat16 if precision.cpu_bf16_supported() else torch.float32)
    assert ((got.float() - expected).norm() / expected.norm()) < 1e-2
