"""torchrun processes for the evaluation: rank and world from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), a process group (NCCL on GPUs, gloo on CPUs) with a timeout, unpadded shards
``indices[rank::world]`` and one ``all_reduce`` of the int64 sums at the end (integer sums: bit-identical to one
process). A rank that fails exits non-zero and torchrun stops the others; a rank that hangs makes the collectives
of the others fail after the timeout instead of waiting forever. Before summing, :meth:`Procs.check_same_weights`
compares a digest of every rank's loaded state dict (sums over different weights would mean nothing).
"""
from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ['Procs', 'WeightsMismatch', 'start', 'shard', 'state_digest']


class WeightsMismatch(ValueError):
    """The processes of one run loaded different weights for the same model."""


@dataclass(frozen=True)
class Procs:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def sum_int64(self, array: np.ndarray, device: torch.device) -> np.ndarray:
        """The element-wise sum over all processes of an int64 array (one all_reduce)."""
        if not self.distributed:
            return np.asarray(array, dtype=np.int64)
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (small picklable objects between our own processes)."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def check_same_weights(self, name: str, model: torch.nn.Module, sha256: str | None, source: str | None) -> None:
        """Raise :class:`WeightsMismatch` on every process unless all loaded the same state dict for ``name``
        (compared by :func:`state_digest`; the message names each rank's file and its sha256 where known)."""
        if not self.distributed:
            return
        peers = self.gather((state_digest(model), sha256, source))
        if len({digest for digest, _, _ in peers}) == 1:
            return
        ranks = '; '.join(f'rank {r}: {src or "no file (untrained)"}, sha256 {sha or "unknown"} '
                          f'(state digest {digest[:12]})' for r, (digest, sha, src) in enumerate(peers))
        raise WeightsMismatch(f'{name}: the processes loaded different weights ({ranks}); give every node the '
                              f'same files (weights/, the caches) and run again')

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def start(device: torch.device, timeout_s: float = 1800.0) -> tuple[Procs, torch.device]:
    """The processes of this run (one, or torchrun's) and this process's device: under torchrun on CUDA,
    ``cuda:LOCAL_RANK``."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    procs = Procs(int(os.environ.get('RANK', '0')), world, int(os.environ.get('LOCAL_RANK', '0')))
    if not procs.distributed:
        return procs, device
    if device.type == 'cuda':
        device = torch.device('cuda', procs.local_rank)
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo',
                                         timeout=datetime.timedelta(seconds=timeout_s))
    return procs, device


def shard(indices: Sequence[int], procs: Procs) -> list[int]:
    """This process's share of ``indices``: every ``world``-th from ``rank`` (no padding duplicates)."""
    return list(indices)[procs.rank::procs.world]


def state_digest(model: torch.nn.Module) -> str:
    """sha256 over a module's state dict: names, dtypes, shapes and bytes in key order (equal iff the weights are)."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        h.update(f'{key}|{tensor.dtype}|{tuple(tensor.shape)}|'.encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b'')
    return h.hexdigest()
