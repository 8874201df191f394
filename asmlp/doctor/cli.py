"""``python -m asmlp doctor [--json] [--quick] [--only NAME ...]``: versions, devices and checks that run.

Prints the versions (Python, torch, CUDA, the NVIDIA driver, Triton, timm; gradio and plotly from their
installed metadata, never imported), the devices (the CPU flags that decide precision "auto", each GPU), then
runs every check of :mod:`asmlp.doctor.plan`, one line each as it ends: ok / skipped (why) / FAILED (what
differs, by how much), with its time. Exit code 1 when any check FAILED, else 0. ``--json`` prints one JSON
object instead (the text goes to stderr as it comes).

The Triton interpreter: ``TRITON_INTERPRET`` must be decided before the kernels are defined. When it is unset,
doctor leaves it off where a CUDA GPU is present (the kernels are checked on the GPU; the CPU checks of the Triton
kernels are skipped) and turns it on where there is none (the kernels are checked on the CPU, interpreted).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

__all__ = ['EXIT_FAILED', 'add_arguments', 'main', 'prepare_triton', 'register_cli', 'run_doctor']

EXIT_FAILED = 1
_HELP = 'check this machine end to end: versions, devices, kernels and models against references'


def prepare_triton() -> str:
    """Decide ``TRITON_INTERPRET`` before the Triton kernels are defined; return what was decided, in words."""
    kernels = sys.modules.get('asmlp.ops.shift_triton')
    if kernels is not None:
        return f'kernels already defined in this process, interpreter {"on" if kernels.INTERPRET else "off"}'
    value = os.environ.get('TRITON_INTERPRET')
    if value is not None:
        return f'TRITON_INTERPRET={value} from the environment: interpreter {"on" if value == "1" else "off"}'
    import torch
    if torch.cuda.is_available():
        return 'interpreter off: a GPU run (the Triton kernels are checked on the GPU, not on the CPU)'
    os.environ['TRITON_INTERPRET'] = '1'
    return 'interpreter on (TRITON_INTERPRET=1 set by doctor: no GPU), so the Triton kernels are checked on the CPU'


def _yes(flag: bool) -> str:
    return 'yes' if flag else 'no'


def _header(report: dict) -> list[str]:
    v = report['versions']
    packages = ', '.join(f'{name} {v[name] or "-"}' for name in ('triton', 'timm', 'torchvision', 'safetensors',
                                                                  'numpy', 'huggingface_hub'))
    ui = ', '.join(f'{name} {v[name]}' for name in ('gradio', 'plotly') if v[name]) or 'none'
    cpu = report['cpu']
    flags = ', '.join(f'{name} {_yes(has)}' for name, has in cpu['flags'].items())
    lines = [
        f'versions  Python {v["python"]}, asmlp {v["asmlp"]}, torch {v["torch"]} (CUDA {v["cuda_runtime"] or "-"}, '
        f'cuDNN {v["cudnn"] or "-"}), NVIDIA driver {v["nvidia_driver"] or "-"}',
        f'          {packages}; UI packages installed (not imported): {ui}',
        f'cpu       {cpu["model"]}, {cpu["logical_cores"]} logical cores, {cpu["torch_threads"]} torch threads; '
        f'{flags}; torch CPU kernels {cpu["torch_cpu_capability"]}; precision "auto" on the CPU: '
        f'{cpu["precision_auto"]} ({cpu["precision_auto_why"]})',
    ]
    for gpu in report['gpus'] or [None]:
        lines.append('gpu       none (torch.cuda.is_available() is False)' if gpu is None else
                     f'gpu       {gpu["device"]} {gpu["name"]}, compute capability {gpu["capability"]}, '
                     f'{gpu["memory_gib"]} GiB, {gpu["multiprocessors"]} SMs, bf16 {_yes(gpu["bf16"])}; '
                     f'precision "auto" there: {gpu["precision_auto"]}')
    triton = report['triton']
    lines.append(f'triton    {triton["interpreter"]}' + (f'; not usable: {triton["problem"]}' if triton['problem']
                                                          else ''))
    return lines


def _line(result) -> str:
    return f'{result.status:<8} {result.name:<42} {result.seconds:7.2f} s  {result.detail}'


def run_doctor(quick: bool = False, only: list[str] | None = None, as_json: bool = False, out=None) -> int:
    """Run the doctor (see the module docstring); returns the exit code."""
    out = out or sys.stdout
    interpreter = prepare_triton()
    import torch

    from ..ops.backends import triton_status
    from . import machine, model_checks
    from .outcome import FAILED, OK, SKIPPED, run_check
    from .plan import plan
    gpus = machine.gpu_info()
    report = {'versions': machine.versions(), 'cpu': machine.cpu_info(), 'gpus': gpus,
              'triton': {'interpreter': interpreter, 'problem': triton_status()}, 'quick': quick}
    progress = sys.stderr if as_json else out
    print('\n'.join(_header(report)) + '\n', file=progress, flush=True)
    checks = plan(['cpu'] + [gpu['device'] for gpu in gpus], quick)
    if only:
        known = [c.name for c in checks]
        unknown = [name for name in only if not any(k.startswith(name) for k in known)]
        if unknown:
            raise ValueError(f'no check named {", ".join(map(repr, unknown))}; the checks here: {", ".join(known)}')
        checks = [c for c in checks if any(c.name.startswith(name) for name in only)]
    start, results = time.perf_counter(), []
    try:
        for check in checks:
            results.append(run_check(check))
            print(_line(results[-1]), file=progress, flush=True)
    finally:
        model_checks.demo_reference.cache_clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    counts = {status: sum(r.status == status for r in results) for status in (OK, SKIPPED, FAILED)}
    summary = (f'{counts[OK]} ok, {counts[SKIPPED]} skipped, {counts[FAILED]} FAILED '
               f'in {time.perf_counter() - start:.1f} s')
    if as_json:
        report.update(checks=[r.as_dict() for r in results], summary=counts)
        print(json.dumps(report), file=out, flush=True)
    else:
        print(f'\n{summary}', file=out)
        if counts[FAILED]:
            print('To report a failure: run `python -m asmlp doctor --json > doctor.json` and attach doctor.json to '
                  'an issue; `--only NAME` reruns one check.', file=out)
    return EXIT_FAILED if counts[FAILED] else 0


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('--json', action='store_true', help='print one JSON object (the text goes to stderr)')
    parser.add_argument('--quick', action='store_true',
                        help='skip the slow checks: demo-model forwards on the CPU and torch.compile')
    parser.add_argument('--only', nargs='+', metavar='NAME',
                        help='only the checks whose names start with NAME (e.g. shift/cpu, fused/cuda:0/fp16)')
    return parser


def _run(args: argparse.Namespace) -> int:
    try:
        return run_doctor(quick=args.quick, only=args.only, as_json=args.json)
    except ValueError as error:  # an unknown --only name: one line, no traceback
        print(f'python -m asmlp doctor: {error}', file=sys.stderr)
        return 2


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``doctor`` to an argparse subparsers object."""
    parser = subparsers.add_parser('doctor', help=_HELP, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog='python -m asmlp doctor', description=__doc__))
    return _run(parser.parse_args(argv))
