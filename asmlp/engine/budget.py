"""The time budget of a request's model work.

Each step of model work runs on a thread of its own, ``asmlp-inference`` (one at a time: the admission gate lets
one request run), with fixed intra-op threads (``Limits.torch_threads``), under the request's deadline: a forward
pre-hook on every module of a cached model (:func:`install_deadline`) raises :class:`~asmlp.limits.InferenceTimeout`
at the next module boundary once the budget is spent. A single operation that runs past budget + grace is answered
anyway; its thread goes on until the operation ends and keeps the request's slot taken until then (busy). The
thread ends with its step, so an idle engine holds no thread.
"""
from __future__ import annotations

import contextvars
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Optional

import torch

from ..limits import InferenceTimeout
from .admission import Request

__all__ = ['Budget', 'install_deadline', 'deadline_hook', 'remaining', 'in_work']

_deadline: contextvars.ContextVar[Optional[tuple[float, str]]] = contextvars.ContextVar('asmlp_deadline',
                                                                                           default=None)
_in_work: contextvars.ContextVar[bool] = contextvars.ContextVar('asmlp_in_work', default=False)


def deadline_hook(module: torch.nn.Module, args) -> None:
    """Forward pre-hook: stops the work at the next module boundary once its request's budget is spent."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline[0]:
        raise InferenceTimeout(deadline[1])


def install_deadline(model: torch.nn.Module) -> torch.nn.Module:
    """Register :func:`deadline_hook` on every module of ``model`` (the model cache does it once per load)."""
    for module in model.modules():
        module.register_forward_pre_hook(deadline_hook)
    return model


def remaining() -> Optional[float]:
    """Seconds left of the budget of the work running in this thread (None outside model work)."""
    deadline = _deadline.get()
    return None if deadline is None else deadline[0] - time.monotonic()


def in_work() -> bool:
    """Whether this thread runs a step of model work (nested steps then run in place)."""
    return _in_work.get()


class Budget:
    """Runs steps of a request's model work under its deadline (``timeout`` seconds from its first step)."""

    def __init__(self, timeout: float, grace: float, torch_threads: int):
        self.timeout, self.grace, self.torch_threads = timeout, grace, torch_threads
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def message(self) -> str:
        return (f'The models ran past this request\'s time budget of {self.timeout:g} s (ASMLP_INFERENCE_TIMEOUT); '
                f'try a smaller inference size or fewer models.')

    def start(self, request: Request) -> None:
        """Start ``request``'s budget (once: later steps share it)."""
        if request.deadline is None:
            request.deadline = time.monotonic() + self.timeout

    def run(self, fn: Callable[[], Any], request: Request) -> Any:
        """``fn()`` on an ``asmlp-inference`` thread within ``request``'s budget (started if it was not). Inside a
        step, ``fn()`` runs in place."""
        if _in_work.get():
            return fn()
        self.start(request)
        deadline, message, ticket = request.deadline, self.message(), request.ticket
        future: Future = Future()

        def work():
            _in_work.set(True)
            _deadline.set((deadline, message))
            try:
                torch.set_num_threads(self.torch_threads)
                result, error = fn(), None
            except BaseException as caught:  # noqa: BLE001  (handed to the caller, below)
                result, error = None, caught
            finally:
                ticket.work_done()  # before the caller hears: its release then frees the slot at once
                with self._lock:
                    self._threads.discard(threading.current_thread())
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        thread = threading.Thread(target=contextvars.copy_context().run, args=(work,), name='asmlp-inference',
                                  daemon=True)
        ticket.start_work()
        try:
            with self._lock:
                self._threads.add(thread)
            thread.start()
        except BaseException:
            with self._lock:
                self._threads.discard(thread)
            ticket.work_done()
            raise
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()) + self.grace)
        except FutureTimeout:
            ticket.release()  # the work frees the slot when it stops
            request.gate.count('timed_out')
            raise InferenceTimeout(message + ' (The app stays busy until the computation has stopped.)') from None
        except InferenceTimeout:
            request.gate.count('timed_out')
            raise

    def running(self) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._threads if t.is_alive()]

    def close(self, timeout: Optional[float] = None) -> bool:
        """Wait for the running step to end (at most ``timeout`` s); True when no step runs any more."""
        end = None if timeout is None else time.monotonic() + timeout
        for thread in self.running():
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
        return not self.running()

    def after_fork(self) -> None:
        """In a forked child none of the parent's threads exist."""
        self._lock = threading.Lock()
        self._threads = set()
