"""Which implementation the axial-shift ops run: ``reference``, ``fast``, ``triton`` or ``auto``.

* ``reference``: the official pad / chunk / roll / cat / narrow code (:func:`asmlp.ops.axial_shift_reference`);
* ``fast``: the CPU-friendly path of :mod:`asmlp.ops.shift` (one slice copy per channel group; any device);
* ``triton``: the Triton kernels of :mod:`asmlp.ops.shift_triton` (plain shift, and AS-MLP's token mixing fused
  into one kernel at inference). CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``; meta / fake tensors
  (FLOP counting, ``torch.compile`` tracing) always work;
* ``auto`` (the default): ``triton`` for CUDA tensors where the kernels run (:func:`triton_problem`), else
  ``fast``; :func:`auto_choice` says which and why.

Choose with :func:`use_backend` (a plain call sets it, ``with use_backend(name):`` sets it for a block) or the
``ASMLP_SHIFT_BACKEND`` environment variable (read at each call; an explicit :func:`use_backend` wins).
The selection is process-wide (not per thread).
"""
from __future__ import annotations

import os

import torch

__all__ = ['BACKENDS', 'ENV_VAR', 'auto_choice', 'get_backend', 'resolve_backend', 'triton_problem', 'triton_status',
           'use_backend']

BACKENDS = ('auto', 'reference', 'fast', 'triton')
ENV_VAR = 'ASMLP_SHIFT_BACKEND'

_selected: list = [None]  # the use_backend() selection; None: the environment variable, else 'auto'
_triton_probe: list = [None]  # None: not probed yet, '' : importable, else the import error


def _check_name(name, where: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f'unknown axial shift backend {name!r}{where}; valid backends: {", ".join(BACKENDS)}')
    return name


class use_backend:
    """Select the axial-shift backend: ``use_backend('triton')`` for the rest of the process, or
    ``with use_backend('triton'): ...`` for a block (the previous selection comes back on exit).
    ``use_backend(None)`` returns to the environment variable / ``auto``.
    """

    def __init__(self, name: str | None):
        if name is not None:
            _check_name(name, '')
        self.name = name
        self._previous = _selected[0]
        _selected[0] = name

    def __enter__(self) -> 'use_backend':
        return self

    def __exit__(self, *exc) -> None:
        _selected[0] = self._previous

    def __repr__(self) -> str:
        return f'use_backend({self.name!r})'


def get_backend() -> str:
    """The selected backend name (one of :data:`BACKENDS`, possibly ``auto``)."""
    name = _selected[0]
    if name is not None:
        return name
    return _check_name(os.environ.get(ENV_VAR) or 'auto', f' in ${ENV_VAR}')


@torch.compiler.disable
def _probe_triton() -> str:
    try:
        from . import shift_triton  # noqa: F401  (imports triton and defines the kernels)
    except Exception as error:  # a broken Triton must never break the CPU paths
        return f'{type(error).__name__}: {error}'
    return ''


def triton_status() -> str:
    """``''`` when the Triton kernels import, else why not (cached after the first call)."""
    if _triton_probe[0] is None:
        _triton_probe[0] = _probe_triton()
    return _triton_probe[0]


def _interpreting() -> bool:
    from . import shift_triton
    return shift_triton.INTERPRET


def _tensor_problem(device_type: str) -> str:
    """:func:`triton_problem` for tensors that exist on a device of this type (no availability check: the
    per-call path, also while ``torch.compile`` traces)."""
    if device_type == 'meta':
        return ''
    if device_type not in ('cpu', 'cuda'):
        return f'the Triton kernels support CUDA (and interpreted CPU) tensors, not {device_type}'
    problem = triton_status()
    if problem:
        return f'Triton is not usable here ({problem})'
    if device_type == 'cpu' and not _interpreting():
        return ('CPU tensors run the Triton kernels only under the Triton interpreter (TRITON_INTERPRET=1 set '
                'before the kernels are first imported)')
    if device_type == 'cuda' and _interpreting():
        return ('the kernels were defined for the Triton interpreter (TRITON_INTERPRET=1), which runs them on '
                'the CPU; unset it to run them on the GPU')
    return ''


def triton_problem(device: torch.device | str) -> str:
    """``''`` when the Triton kernels run for tensors on ``device`` here, else why not (one sentence).

    CUDA tensors need a CUDA GPU and a working Triton with the interpreter off; CPU tensors need
    ``TRITON_INTERPRET=1`` set before the kernels were first imported; meta tensors always work (fake
    implementations).
    """
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        return 'no CUDA GPU here'
    return _tensor_problem(device.type)


def auto_choice(device: torch.device | str) -> tuple[str, str]:
    """``(backend, why)``: what ``auto`` runs for tensors on ``device`` here, and the reason in words."""
    device = torch.device(device)
    problem = triton_problem(device) if device.type == 'cuda' else ''
    if device.type == 'cuda' and not problem:
        return 'triton', ('CUDA tensors and the Triton kernels work here: the shift pair in one pass, and the '
                          'token mixing fused into one kernel at inference')
    if device.type == 'cuda':
        return 'fast', f'CUDA tensors, but the Triton kernels cannot run: {problem}'
    return 'fast', (f'{device.type.upper()} tensors: auto uses Triton for CUDA tensors only (on a CPU Triton '
                    f'runs in its interpreter, far slower than the fast path, which is bit-identical)')


def resolve_backend(x: torch.Tensor, name: str | None = None) -> str:
    """The concrete backend (``reference``, ``fast`` or ``triton``) that runs for tensor ``x``.

    ``triton`` raises a clear error where it cannot run (:func:`triton_problem`): Triton missing or broken, CPU
    tensors without ``TRITON_INTERPRET=1``, CUDA tensors with it. Meta tensors resolve like any other device but
    need nothing (fake implementations).
    """
    name = get_backend() if name is None else _check_name(name, '')
    if name == 'auto':  # auto_choice(x.device)[0], without composing its reason on every call
        return 'triton' if x.is_cuda and not _tensor_problem('cuda') else 'fast'
    if name == 'triton':
        problem = _tensor_problem(x.device.type)
        if problem:
            raise RuntimeError(f'axial shift backend "triton": {problem}; use the "fast" or "auto" backend')
    return name
