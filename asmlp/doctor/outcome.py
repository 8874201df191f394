"""One check of ``python -m asmlp doctor``: its name, outcome (ok / skipped / FAILED), what it found, its time."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch

from ..errors import first_line

__all__ = ['OK', 'SKIPPED', 'FAILED', 'Check', 'CheckResult', 'Mismatch', 'Skip', 'difference', 'relative_error',
           'run_check']

OK, SKIPPED, FAILED = 'ok', 'skipped', 'FAILED'


class Skip(Exception):
    """Raised by a check that cannot run here; the message says why."""


class Mismatch(Exception):
    """Raised by a check whose result differs from its reference; the message says what differs, by how much."""


@dataclass(frozen=True)
class Check:
    """A named check. ``run()`` returns what it found (one line) or raises :class:`Skip` / :class:`Mismatch`;
    ``skip`` set: not run, for that reason (e.g. ``--quick``)."""
    name: str
    run: Callable[[], str]
    skip: Optional[str] = None


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # OK, SKIPPED or FAILED
    detail: str
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def run_check(check: Check) -> CheckResult:
    """Run ``check`` and time it; any other exception is a failure, reported by its first line."""
    if check.skip is not None:
        return CheckResult(check.name, SKIPPED, check.skip, 0.0)
    start = time.perf_counter()
    try:
        status, detail = OK, check.run()
    except Skip as why:
        status, detail = SKIPPED, str(why)
    except Mismatch as what:
        status, detail = FAILED, str(what)
    except Exception as error:  # a crash is a failure of the check, reported, never a crash of doctor
        status, detail = FAILED, f'{type(error).__name__}: {first_line(error)}'
    return CheckResult(check.name, status, detail, time.perf_counter() - start)


def difference(got: torch.Tensor, expected: torch.Tensor) -> str:
    """``''`` when ``got`` equals ``expected`` bit for bit (shape, dtype and values, NaN where NaN), else how
    they differ: how many elements, the largest absolute difference and where."""
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return f'got {got.dtype} {tuple(got.shape)}, expected {expected.dtype} {tuple(expected.shape)}'
    got, expected = got.detach().cpu(), expected.detach().cpu()
    same = (got == expected) | (got.isnan() & expected.isnan())
    wrong = int((~same).sum())
    if not wrong:
        return ''
    diff = (got.double() - expected.double()).abs().nan_to_num(float('inf'))
    diff[same] = 0
    worst = int(diff.argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), got.shape))
    return (f'{wrong} of {got.numel()} elements differ, max |difference| {diff.max().item():.3g} at {index} '
            f'(got {got.flatten()[worst].item():.6g}, expected {expected.flatten()[worst].item():.6g})')


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """max |got - expected| / max |expected|, in fp64 (inf when ``got`` has a NaN or inf that ``expected`` lacks)."""
    got, expected = got.detach().double().cpu(), expected.detach().double().cpu()
    scale = expected.abs().max().clamp_min(1e-30)
    return (got - expected).abs().nan_to_num(float('inf')).max().div(scale).item()
