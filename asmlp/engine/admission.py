"""Admission: one request runs the models at a time, a bounded FIFO waits behind it, every other request is told at
once that the app is busy (the limits and their reasons: ``asmlp/limits.py``, RELIABILITY.md).

A caller that works in steps (the app's compare sends each model's panel as it comes) holds its :class:`Request`
as an explicit object from step to step: Gradio runs each ``next()`` of a generator handler on whichever worker
thread is free, so a request cannot live in a thread-local.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Callable, Optional

from ..limits import Busy

__all__ = ['Gate', 'Ticket', 'Request']


class Gate:
    """One running slot and a FIFO of at most ``max_waiting`` tickets behind it; :meth:`admit` refuses the rest.

    A ticket holds the slot from its turn until it is released; a ticket whose work outlived its caller (a timeout)
    is released by the work itself when it stops, so the slot stays taken ("busy") while the model still computes.
    """

    def __init__(self, max_waiting: int = 8, wait_timeout: float = 300.0):
        self.max_waiting = max_waiting
        self.wait_timeout = wait_timeout
        self._cond = threading.Condition()
        self._waiting: deque[Ticket] = deque()
        self._holder: Optional[Ticket] = None
        self.stats: Counter = Counter()

    def admit(self) -> 'Ticket':
        """A ticket in the queue, or :class:`~asmlp.limits.Busy` at once when the slot and all waiting places are
        taken."""
        with self._cond:
            if len(self._waiting) + (self._holder is not None) >= 1 + self.max_waiting:
                self.stats['refused'] += 1
                raise Busy()
            ticket = Ticket(self)
            self._waiting.append(ticket)
            self.stats['admitted'] += 1
            return ticket

    def count(self, key: str) -> None:
        with self._cond:
            self.stats[key] += 1

    def snapshot(self) -> dict:
        with self._cond:
            return dict(running=int(self._holder is not None), waiting=len(self._waiting), **self.stats)


class Ticket:
    """A place in the :class:`Gate`'s queue, then its slot."""

    def __init__(self, gate: Gate):
        self.gate = gate
        self.worker_running = False
        self.abandoned = False

    @property
    def holding(self) -> bool:
        return self.gate._holder is self

    def acquire(self, on_wait: Optional[Callable[[int], None]] = None) -> None:
        """Wait (FIFO) for the slot; ``on_wait(requests_ahead)`` hears the position when it changes.
        :class:`~asmlp.limits.Busy` when no turn came within the gate's wait timeout."""
        gate = self.gate
        deadline = time.monotonic() + gate.wait_timeout
        reported = None
        while True:
            with gate._cond:
                if gate._holder is self:
                    return
                if self not in gate._waiting:
                    raise RuntimeError('this ticket was released')
                if gate._holder is None and gate._waiting[0] is self:
                    gate._waiting.popleft()
                    gate._holder = self
                    return
                ahead = gate._waiting.index(self) + (gate._holder is not None)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    gate._waiting.remove(self)
                    gate.stats['gave_up'] += 1
                    gate._cond.notify_all()
                    raise Busy()
                if ahead == reported or on_wait is None:
                    gate._cond.wait(min(remaining, 1.0))
                    continue
            reported = ahead
            on_wait(ahead)

    def start_work(self) -> None:
        with self.gate._cond:
            self.worker_running = True

    def work_done(self) -> None:
        """Called by the work when it stops: frees the slot if its caller has already left."""
        with self.gate._cond:
            self.worker_running = False
            if self.abandoned:
                self._release_locked()

    def release(self) -> None:
        """Leave the queue or free the slot, unless work of this ticket still runs: then that work frees it."""
        with self.gate._cond:
            if self.worker_running:
                self.abandoned = True
            else:
                self._release_locked()

    def _release_locked(self) -> None:
        gate = self.gate
        if gate._holder is self:
            gate._holder = None
            gate.stats['served'] += 1
        elif self in gate._waiting:
            gate._waiting.remove(self)
        gate._cond.notify_all()


class Request:
    """One admitted request: its :class:`Ticket`, and once its model work has started, its deadline (the time
    budget covers all of the request's steps). ``prepared``: its weights were fetched (done once, with the turn,
    before the budget starts)."""

    def __init__(self, ticket: Ticket):
        self.ticket = ticket
        self.deadline: Optional[float] = None
        self.prepared = False

    @property
    def gate(self) -> Gate:
        return self.ticket.gate

    def remaining(self) -> Optional[float]:
        """Seconds left of the time budget (None before the model work started)."""
        return None if self.deadline is None else self.deadline - time.monotonic()
