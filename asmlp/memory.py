"""Peak activation memory of a forward: the bytes of the tensors it creates that are alive at the same time.

Parameters, buffers and the input are not counted (they exist before the call and are reported separately).
CPU and meta tensors: a ``TorchDispatchMode`` follows every untyped storage an op returns until it is freed (a weak
reference to the storage, whose callback fires when its last tensor goes), counting each storage once however many
views share it -- the technique of torch's ``MemTracker`` (pytorch/pytorch,
torch/distributed/_tools/mem_tracker.py), without its module hooks: dispatch modes are per thread, module hooks
are process-global, so other threads' forwards are neither counted nor disturbed. Exact for the tensors and
independent of the allocator, which keeps freed memory for reuse (``asmlp/allocator.py``). CUDA:
``torch.cuda.max_memory_allocated`` above what was allocated before the call.
"""
from __future__ import annotations

import weakref
from collections import deque
from typing import Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode, is_traceable_wrapper_subclass

__all__ = ['peak_activation_bytes', 'LiveStorages']


def peak_activation_bytes(forward: Callable[[], object], *existing, device: torch.device | str = 'cpu') -> int:
    """Peak bytes of the tensors ``forward()`` creates (activations and temporaries, its output included), on
    ``device``. ``existing``: modules and tensors (or lists / tuples / dicts of them) that exist before the call
    (the model, the input), never counted. What ``forward`` returns is released before this returns.
    CPU and meta: only this thread's work counts; other threads may run forwards or measure at the same time.
    CUDA: the allocator's peak on the device, which includes what other threads allocate there meanwhile."""
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        forward()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    with LiveStorages(device, existing) as live:
        forward()
    return live.peak


class LiveStorages(TorchDispatchMode):
    """Within its context in this thread: the bytes of the storages on ``device`` that ops created and that are
    still alive (``live``), and their maximum after any op (``peak``). Storages of ``existing`` tensors and
    modules, and storages an op returns that one of its inputs already had (views of, or in-place writes to,
    tensors from before), are never counted."""

    def __init__(self, device: torch.device | str, existing=()) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.live = self.peak = 0
        self._followed: dict[int, _Followed] = {}  # id(storage) -> its entry; touched by this thread only
        self._freed: deque[int] = deque()  # ids whose storage died: appended by weakref callbacks in any thread
        for tensor in _tensors(existing):
            for storage in _storages(tensor):
                self._follow(storage, counted=False)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._forget_freed()
        inputs = None
        for tensor in _tensors(out):
            for storage in _storages(tensor):
                if not self._on_device(storage):
                    continue
                entry = self._entry(storage)
                if entry is not None:
                    self._resized(entry, storage)
                    continue
                if inputs is None:  # a storage new to us: created by this op, unless an input had it
                    fresh = func is torch.ops.aten.lift_fresh.default  # a tensor from data, made in the forward
                    inputs = set() if fresh else {id(s) for t in _tensors((args, kwargs)) for s in _storages(t)}
                self._follow(storage, counted=id(storage) not in inputs)
        self.peak = max(self.peak, self.live)
        return out

    def _on_device(self, storage: torch.UntypedStorage) -> bool:
        """On the device asked for (``cuda`` stands for every CUDA device, ``cpu:0`` for the CPU)."""
        where, asked = storage.device, self.device
        return where.type == asked.type and (None in (where.index, asked.index) or where.index == asked.index)

    def _entry(self, storage: torch.UntypedStorage) -> _Followed | None:
        entry = self._followed.get(id(storage))
        if entry is not None and entry.ref() is not storage:  # a dead storage's id, reused
            self._retire(id(storage))
            return None
        return entry

    def _follow(self, storage: torch.UntypedStorage, counted: bool) -> None:
        if self._entry(storage) is not None:
            return
        key, freed = id(storage), self._freed
        ref = weakref.ref(storage, lambda _, key=key: freed.append(key))
        nbytes = storage.nbytes() if counted else 0
        self._followed[key] = _Followed(ref, nbytes, counted)
        self.live += nbytes

    def _resized(self, entry: _Followed, storage: torch.UntypedStorage) -> None:
        if entry.counted and storage.nbytes() != entry.nbytes:  # e.g. an out= tensor resized by the op
            self.live += storage.nbytes() - entry.nbytes
            entry.nbytes = storage.nbytes()

    def _forget_freed(self) -> None:
        while self._freed:
            key = self._freed.popleft()
            entry = self._followed.get(key)
            if entry is not None and entry.ref() is None:
                self._retire(key)

    def _retire(self, key: int) -> None:
        self.live -= self._followed.pop(key).nbytes


class _Followed:
    """One followed storage: a weak reference to it, its counted bytes, and whether it counts."""
    __slots__ = ('ref', 'nbytes', 'counted')

    def __init__(self, ref: weakref.ref, nbytes: int, counted: bool) -> None:
        self.ref, self.nbytes, self.counted = ref, nbytes, counted


def _tensors(obj) -> Iterator[torch.Tensor]:
    """The tensors in ``obj``: a tensor, a module's parameters and buffers, or those in tuples, lists, dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, torch.nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _storages(tensor: torch.Tensor) -> Iterator[torch.UntypedStorage]:
    """The untyped storages behind ``tensor`` (those of the inner tensors of a traceable wrapper subclass)."""
    if is_traceable_wrapper_subclass(tensor):
        for name in tensor.__tensor_flatten__()[0]:
            inner = getattr(tensor, name)
            if isinstance(inner, torch.Tensor):
                yield from _storages(inner)
        return
    try:
        yield tensor.untyped_storage()
    except (NotImplementedError, RuntimeError):  # sparse and other layouts without a single storage
        return
