"""Sharding an evaluation over the processes of a ``torch.distributed`` group.

Samples are cut into fixed chunks of ``batch_size`` consecutive indices; chunk ``k`` goes to
rank ``k % world_size``. Every sample lands in exactly one chunk (no padding, no
duplicates), and a chunk's randomness is seeded from ``(seed, its first index)``, so the
records do not depend on the number of processes.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

__all__ = ["all_gather", "barrier", "chunks", "world"]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def chunks(num_samples: int, batch_size: int, rank: int, world_size: int) -> list[range]:
    """The index ranges (chunks of ``batch_size``) that ``rank`` evaluates.

    Example:
        >>> chunks(7, 2, 1, 2)
        [range(2, 4), range(6, 7)]
    """
    starts = range(0, num_samples, batch_size)
    return [
        range(start, min(start + batch_size, num_samples))
        for k, start in enumerate(starts)
        if k % world_size == rank
    ]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a picklable object), in rank order; ``[obj]`` without a group."""
    _, size = world()
    if size == 1:
        return [obj]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (a no-op without a process group)."""
    if world()[1] > 1:
        dist.barrier()
