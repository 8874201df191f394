"""The engine's parts without the app: a request held as an explicit object across steps that run on different
threads (as Gradio runs each ``next()`` of a generator handler), the time budget shared by all its steps, the
slot given back when a stream is closed early, and ``Engine.close()`` ending the engine's threads (an idle engine
holds none)."""
from __future__ import annotations

import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn as nn

from asmlp.engine import Engine, Request
from asmlp.limits import Busy, InferenceTimeout, Limits

A, B, C = 'upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano'
IMAGE = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)


class Step(nn.Module):
    def __init__(self, seconds: float, gate: threading.Event | None = None):
        super().__init__()
        self.seconds, self.gate = seconds, gate

    def forward(self, x):
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.seconds)
        return x


class Labeller(nn.Module):
    """Stands for a segmenter: ``predict`` runs its modules (so the budget's hooks fire) and labels every pixel with
    ``label``."""

    def __init__(self, label: int, steps: int = 1, seconds: float = 0.0, gate: threading.Event | None = None):
        super().__init__()
        self.label = label
        self.weight = nn.Parameter(torch.zeros(1))
        self.steps = nn.ModuleList(Step(seconds, gate) for _ in range(steps))

    def forward(self, x):
        for step in self.steps:
            x = step(x)
        return x

    def predict(self, image, scale):
        self(torch.zeros(1))
        return np.full(image.shape[:2], self.label, dtype=np.int64)


def engine_of(models: dict, **limits) -> Engine:
    status = types.SimpleNamespace(kind='demo', message='test model', problems=())
    return Engine(loader=lambda name: (models[name](), status),
                  limits=Limits(**{**dict(max_waiting=0, wait_timeout=5, timeout_grace=0.3, torch_threads=1),
                                   **limits}))


def project_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith('asmlp-')]


def test_a_stream_holds_its_request_across_steps_on_different_threads():
    """Each ``next()`` on a fresh thread (none of them the one that admitted the request): the results come one
    model at a time, the slot stays taken between them (another request is busy), and is free at the end."""
    with engine_of({A: lambda: Labeller(1), B: lambda: Labeller(2), C: lambda: Labeller(3)}) as engine:
        stream = engine.segment_stream(IMAGE, [A, B, C], 'cpu', 'fp32', 32)
        seen, threads = [], []

        def step():
            threads.append(threading.current_thread())  # kept: distinct objects, whatever ids the OS reuses
            return next(stream, None)
        while True:
            with ThreadPoolExecutor(1) as pool:  # a new worker thread per step
                result = pool.submit(step).result(60)
            if result is None:
                break
            seen.append(int(result.labels[0, 0]))
            if len(seen) < 3:
                assert engine.gate.snapshot()['running'] == 1  # held between steps
                with pytest.raises(Busy):
                    engine.segment(IMAGE, [A], 'cpu', 'fp32', 32)
        assert seen == [1, 2, 3] and len(set(threads)) == 4 and threading.main_thread() not in threads
        assert engine.gate.snapshot()['running'] == 0 and engine.gate.snapshot()['served'] == 1
        assert engine.segment(IMAGE, [B], 'cpu', 'fp32', 32)[0].labels[0, 0] == 2  # the next request runs


def test_a_stream_closed_early_gives_its_slot_back():
    with engine_of({A: lambda: Labeller(1), B: lambda: Labeller(2)}) as engine:
        stream = engine.segment_stream(IMAGE, [A, B], 'cpu', 'fp32', 32)
        assert next(stream).name == A and engine.gate.snapshot()['running'] == 1
        stream.close()  # the client went away
        assert engine.gate.snapshot()['running'] == 0
        assert engine.segment(IMAGE, [B], 'cpu', 'fp32', 32)[0].name == B


def test_the_time_budget_covers_all_the_steps_of_a_request():
    """Two models of 0.3 s each (three modules of 0.1 s) under a 0.45 s budget: the first is served, the second
    stops at a module boundary once the request's budget (not a fresh one per step) is spent."""
    with engine_of({A: lambda: Labeller(1, 3, 0.1), B: lambda: Labeller(2, 3, 0.1)},
                   inference_timeout=0.45) as engine:
        engine.get(A, 'cpu'), engine.get(B, 'cpu')
        stream = engine.segment_stream(IMAGE, [A, B], 'cpu', 'fp32', 32)
        assert next(stream).name == A
        with pytest.raises(InferenceTimeout, match='time budget of 0.45 s'):
            next(stream)
        assert engine.gate.snapshot()['running'] == 0 and engine.gate.snapshot()['timed_out'] == 1


def test_an_explicit_request_is_shared_by_the_calls_it_is_passed_to():
    with engine_of({A: lambda: Labeller(1)}) as engine:
        with engine.admit() as request:
            assert isinstance(request, Request) and engine.gate.snapshot()['waiting'] == 1
            assert engine.run(lambda: 7, request=request) == 7
            assert request.deadline is not None  # its budget started with its first step
            (result,) = engine.segment(IMAGE, [A], 'cpu', 'fp32', 32, request=request)  # no second admission
            assert result.labels[0, 0] == 1 and engine.gate.snapshot()['admitted'] == 1
        assert engine.gate.snapshot()['running'] == 0


def test_an_idle_engine_holds_no_thread_and_close_ends_the_running_work():
    release = threading.Event()
    engine = engine_of({A: lambda: Labeller(1), B: lambda: Labeller(2, 1, 0.0, release)}, inference_timeout=60)
    engine.segment(IMAGE, [A], 'cpu', 'fp32', 32)
    assert engine.budget.close(timeout=5) and not engine.budget.running()  # the step's thread ended with it
    caller = threading.Thread(target=lambda: engine.segment(IMAGE, [B], 'cpu', 'fp32', 32), name='asmlp-test-caller')
    caller.start()
    deadline = time.monotonic() + 30
    while not engine.budget.running():  # B's step has started (and waits for the release)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert [t.name for t in engine.budget.running()] == ['asmlp-inference']
    assert engine.close(timeout=0.2) is False  # the step still runs
    with pytest.raises(RuntimeError, match='closed'):
        engine.segment(IMAGE, [A], 'cpu', 'fp32', 32)
    release.set()
    assert engine.close(timeout=30) is True
    caller.join(30)
    assert not [name for name in project_threads() if name in ('asmlp-inference', 'asmlp-test-caller')]
    assert engine.cached() == []
