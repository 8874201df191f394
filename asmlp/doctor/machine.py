"""What ``python -m asmlp doctor`` reports about the machine: package versions and devices.

Versions come from the installed distributions (``importlib.metadata``), so gradio and plotly are reported
without being imported. The CPU flags are those that decide precision "auto" on a CPU
(:func:`asmlp.precision.cpu_bf16_supported`: bf16 where the CPU has AVX512-BF16 or AMX).
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata

import torch

from ..precision import CPU_BF16_ENV, cpu_bf16_native

__all__ = ['PACKAGES', 'cpu_info', 'gpu_info', 'nvidia_driver', 'versions']

PACKAGES = ('triton', 'timm', 'torchvision', 'safetensors', 'numpy', 'huggingface_hub', 'gradio', 'plotly')
CPU_FLAGS = {'AVX-512': ('avx512f',), 'AVX512-BF16': ('avx512_bf16',), 'AMX': ('amx_bf16', 'amx_tile')}


def _distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def nvidia_driver() -> str | None:
    """The NVIDIA driver version (``nvidia-smi``), or None without one."""
    smi = shutil.which('nvidia-smi')
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, '--query-gpu=driver_version', '--format=csv,noheader'], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


def versions() -> dict:
    """Python, asmlp, torch with its CUDA / cuDNN builds and the NVIDIA driver, and :data:`PACKAGES` (None: not
    installed). None of the packages is imported for this."""
    from .. import __version__
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    found = {'python': platform.python_version(), 'asmlp': __version__, 'torch': torch.__version__,
             'cuda_runtime': torch.version.cuda, 'cudnn': cudnn, 'nvidia_driver': nvidia_driver()}
    found.update({name: _distribution_version(name) for name in PACKAGES})
    return found


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        with open('/proc/cpuinfo') as f:
            return set(next(line.split(':', 1)[1].split() for line in f if line.startswith('flags')))
    except (OSError, StopIteration):
        return set()


def cpu_info() -> dict:
    """The CPU, its flags that decide precision "auto", torch's CPU kernel level and what "auto" picks."""
    from ..engine.devices import resolve_precision
    flags = _cpu_flags()
    forced = os.environ.get(CPU_BF16_ENV, '').strip()
    why = (f'{CPU_BF16_ENV}={forced}' if forced else
           'the CPU has native bf16: AVX512-BF16 or AMX' if cpu_bf16_native() else 'no AVX512-BF16 or AMX here')
    return {'model': _cpu_model(), 'logical_cores': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
            'flags': {name: any(f in flags for f in names) for name, names in CPU_FLAGS.items()},
            'torch_cpu_capability': torch.backends.cpu.get_cpu_capability(),
            'precision_auto': resolve_precision('auto', torch.device('cpu')), 'precision_auto_why': why}


def gpu_info() -> list[dict]:
    """Each CUDA GPU: index, name, compute capability, memory, multiprocessors, bf16 support, what precision
    "auto" runs on it."""
    from ..engine.devices import resolve_precision
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        with torch.cuda.device(index):
            bf16 = torch.cuda.is_bf16_supported()
        gpus.append({'device': f'cuda:{index}', 'name': props.name, 'capability': f'{props.major}.{props.minor}',
                     'memory_gib': round(props.total_memory / 2 ** 30, 1),
                     'multiprocessors': props.multi_processor_count,
                     'bf16': bf16, 'precision_auto': resolve_precision('auto', torch.device('cuda', index))})
    return gpus
