"""Doctor checks that run whole models.

* ``demo``: each demo segmenter (``weights/demo/``, trained on generated scenes: :mod:`asmlp.demo`) on a device and
  precision against the same model in fp32 on the CPU, on held-out generated scenes: at least 99.5% equal labels
  in fp32 (TF32 off), 97% in fp16 / bf16 (autocast, as the app runs them).
* ``compile``: one AS-MLP block through ``torch.compile`` (Inductor) against eager, fp32 with TF32 off, where
  Inductor can run: a C++ compiler on the CPU, Triton on a GPU.
"""
from __future__ import annotations

import copy
import functools
import shutil

import torch

from ..errors import first_line
from ..ops import tf32_disabled, triton_problem
from ..precision import autocast
from .kernel_checks import random_values
from .outcome import Mismatch, Skip, relative_error

__all__ = ['DEMO_LIMITS', 'DEMO_SCENES', 'check_compile', 'check_demo', 'demo_reference']

DEMO_SCENES = 8  # held-out generated scenes, 128x128 (131072 labels)
DEMO_LIMITS = {'fp32': 0.995, 'fp16': 0.97, 'bf16': 0.97}
COMPILE_LIMIT = 1e-4


@functools.lru_cache(maxsize=None)
def demo_reference(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """``(model on the CPU, input batch, CPU fp32 labels)`` of demo model ``name``, loaded from disk only."""
    from ..demo.evaluate import to_tensor
    from ..demo.recipes import DEMO_SIZE
    from ..hub import load_pretrained
    from ..synthetic import generate_batch, heldout_seeds
    model, status = load_pretrained(name, download=False)
    if status.kind != 'demo':
        raise Skip(f'no demo weights on disk ({status.message})')
    images, _ = generate_batch(heldout_seeds(DEMO_SCENES), DEMO_SIZE)
    x = to_tensor(images)
    with torch.inference_mode():
        labels = model(x).argmax(1)
    return model, x, labels


def check_demo(name: str, device: str, precision: str) -> str:
    device = torch.device(device)
    if precision == 'bf16' and device.type == 'cuda':
        with torch.cuda.device(device):
            if not torch.cuda.is_bf16_supported():
                raise Skip(f'{torch.cuda.get_device_name(device)} has no bf16')
    model, x, reference = demo_reference(name)
    if device.type != 'cpu':
        model = copy.deepcopy(model).to(device)
    with torch.inference_mode(), tf32_disabled(), autocast(device, precision):
        labels = model(x.to(device)).argmax(1).cpu()
    equal, limit = (labels == reference).double().mean().item(), DEMO_LIMITS[precision]
    found = f'{100 * equal:.2f}% of {reference.numel()} labels equal CPU fp32'
    if not equal >= limit:
        raise Mismatch(f'{found}, below the {100 * limit:g}% limit')
    return f'{found} (limit {100 * limit:g}%)'


def _inductor_problem(device: torch.device) -> str:
    if device.type == 'cuda':
        problem = triton_problem(device)
        return f"Inductor's GPU code is Triton: {problem}" if problem else ''
    if not any(shutil.which(cxx) for cxx in ('g++', 'c++', 'clang++')):
        return "no C++ compiler (g++, c++, clang++) for Inductor's CPU code"
    return ''


def check_compile(device: str) -> str:
    from ..models.asmlp import AxialShiftedBlock
    device = torch.device(device)
    problem = _inductor_problem(device)
    if problem:
        raise Skip(problem)
    torch.manual_seed(0)
    block = AxialShiftedBlock(32).eval().to(device)
    x = random_values((2, 32, 14, 14), torch.float32, torch.Generator().manual_seed(0)).to(device)
    torch.compiler.reset()
    try:
        with torch.no_grad(), tf32_disabled():
            eager = block(x)
            out = torch.compile(block, fullgraph=True)(x)
    except RuntimeError as error:
        if 'not supported' in str(error) and 'Python' in str(error):  # Dynamo on a Python it does not support
            raise Skip(first_line(error)) from error
        raise
    finally:
        torch.compiler.reset()
    error = relative_error(out, eager)
    measure = f'one AS-MLP block (32 channels, 14x14), compiled vs eager: max relative difference {error:.1e}'
    if not error <= COMPILE_LIMIT:
        raise Mismatch(f'{measure}, above the {COMPILE_LIMIT:g} limit')
    return f'{measure} (limit {COMPILE_LIMIT:g}, fp32{", TF32 off" if device.type == "cuda" else ""})'
