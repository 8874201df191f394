"""asmlp.memory.peak_activation_bytes beside forwards in another thread: neither thread fails, the figures are
those of a lone run (torch's MemTracker hooks every module of the process, so that other thread's forwards used to
raise ``KeyError: <weakref ... to 'Conv2d'>``)."""
import threading

import numpy as np
import pytest
import timm
import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

import asmlp
from asmlp.memory import peak_activation_bytes
from asmlp.engine import Engine


class Loop(threading.Thread):
    """Calls ``step()`` until stopped; counts the calls that completed and keeps the error that ended the loop."""

    def __init__(self, step):
        super().__init__(name='asmlp-test-loop', daemon=True)
        self.step, self.done, self.error, self.ended = step, 0, None, False
        self._halt, self._progress = threading.Event(), threading.Condition()

    def run(self):
        try:
            while not self._halt.is_set():
                self.step()
                with self._progress:
                    self.done += 1
                    self._progress.notify_all()
        except BaseException as error:  # noqa: BLE001  (reported by the test)
            self.error = error
        finally:
            with self._progress:
                self.ended = True
                self._progress.notify_all()

    def next_step(self) -> int:
        """Wait until one more step has completed (or the loop has ended); the number of steps completed meanwhile."""
        with self._progress:
            start = self.done
            self._progress.wait_for(lambda: self.done > start or self.ended, timeout=120)
            return self.done - start

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self._halt.set()
        self.join()


@pytest.fixture(scope='module')
def segmenter():
    torch.manual_seed(0)
    return asmlp.create_segmenter('upernet_asmlp_nano').eval()


@pytest.fixture(scope='module')
def other():
    """Another model, run by the other thread (the issue's report: a timm CNN, whose Conv2d the hooks met)."""
    torch.manual_seed(1)
    return timm.create_model('resnet18').eval(), torch.randn(1, 3, 32, 32)


def measured(model, x, during=lambda: None) -> int:
    def forward():
        with torch.inference_mode():
            out = model(x)
        during()  # the output still alive: the figure does not change
        del out
    return peak_activation_bytes(forward, model, x, device='cpu')


@pytest.mark.parametrize('other_thread', ['forwards', 'measurements'])
def test_measuring_beside_another_threads_forwards(segmenter, other, other_thread):
    inputs = [torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 96)]
    for x in inputs:  # a first forward at a size fills the heads' caches of resize matrices (lowres_conv.py)
        measured(segmenter, x)
    lone = [measured(segmenter, x) for x in inputs]
    assert lone[1] > lone[0] > 0
    model, y = other
    lone_other = measured(model, y)
    seen_by_other = []

    def forward():
        with torch.inference_mode():
            model(y)

    def measurement():
        seen_by_other.append(measured(model, y))

    rounds, overlapped, figures = 3, 0, []
    with Loop(forward if other_thread == 'forwards' else measurement) as loop:
        for _ in range(rounds):
            for x in inputs:
                def during():
                    nonlocal overlapped
                    overlapped += loop.next_step()  # the other thread completes a forward while this one measures
                figures.append(measured(segmenter, x, during))
    assert loop.error is None, repr(loop.error)
    assert overlapped > 0 and loop.done >= overlapped
    assert figures == lone * rounds
    if other_thread == 'measurements':
        assert seen_by_other and set(seen_by_other) == {lone_other}


def test_engine_measure_beside_another_threads_forwards(other):
    with Engine() as engine:
        measure_beside_forwards(engine, other)


def measure_beside_forwards(engine, other):
    image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    name = 'upernet_asmlp_nano'

    def activation_mib() -> float:
        row, = engine.measure(image, [name], 'cpu', 'fp32', short_side=96, runs=1)
        return row.activation_mib

    lone = activation_mib()
    assert lone > 150 * 96 * 96 * 4 / 2**20  # the fp32 logits at the input size are alive at the end
    model, y = other
    overlapped = 0

    def forward():
        with torch.inference_mode():
            model(y)

    def after_forward(module, args, output):
        nonlocal overlapped
        if is_in_torch_dispatch_mode():  # the measured forward (not the warm-up or the timed ones)
            overlapped += loop.next_step()

    hook = engine.get(name, torch.device('cpu')).model.register_forward_hook(after_forward)
    try:
        with Loop(forward) as loop:
            beside = activation_mib()
    finally:
        hook.remove()
    assert loop.error is None, repr(loop.error)
    assert overlapped > 0
    assert beside == lone
