"""Data-parallel training over a `torch.distributed` process group, in plain PyTorch.

Whoever starts the processes (Ray Train's `TorchTrainer` does, one per GPU) initialises the group; the
reader gives each process its share of the data (`VideoShards(rank=, world_size=)`). What is here:

- `world()`: (rank, replicas) of this process, (0, 1) without a process group;
- `replicate`: the model wrapped for gradient averaging (`DistributedDataParallel`) when there are
  several replicas; `unwrap` gets the model back;
- `joined`: the training loop's context for shares of unequal length (shares are whole row groups, so
  one replica may run out of batches first; DDP's `Join` keeps the others' gradient sums from waiting);
- `gather_scores`: every replica's `TopKAccumulator` merged on rank 0, so GAP and mAP are over the whole
  evaluation data and every replica gets the same numbers (and picks the same best epoch);
- `gather_objects`: small picklable values from every replica, in rank order.

In one process every function is a no-op, so the training loops call them unconditionally.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from workloads.errors import WorkloadError
from workloads.metrics import TopKAccumulator


def world() -> tuple[int, int]:
    """(rank, number of replicas) of this process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def replicate(model: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """`model`, on `device`, wrapped in DistributedDataParallel when there are several replicas."""
    device = torch.device(device)
    model.to(device)
    if world()[1] == 1:
        return model
    ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=device if ids else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def joined(model: torch.nn.Module):
    """Context for one epoch's batches: replicas may have different numbers of them."""
    if isinstance(model, DistributedDataParallel):
        return model.join()
    return contextlib.nullcontext()


def check_share(data: Any) -> bool:
    """Whether `data` is one replica's share (a reader with world_size > 1) of a data set whose scores must
    be gathered; refuses a share whose world does not match the process group's."""
    replicas = getattr(getattr(data, "dataset", data), "world_size", 1)
    if replicas == 1:
        return False
    size = world()[1]
    if size != replicas:
        raise WorkloadError(f"the data is one share of {replicas} replicas, but this process group has {size}")
    return True


def gather_objects(value: Any) -> list[Any]:
    """`value` of every replica, in rank order (a list of one in a single process)."""
    if world()[1] == 1:
        return [value]
    values: list[Any] = [None] * world()[1]
    dist.all_gather_object(values, value)
    return values


def gather_scores(accumulator: TopKAccumulator | None, num_classes: int) -> TopKAccumulator | None:
    """All replicas' accumulators merged in rank order, on rank 0; None on the other ranks.

    Only rank 0 holds the merged triplets (20 per video: ~0.6 GB for YouTube-8M's 1.1 M validation
    videos), so callers broadcast what they compute from it (`broadcast`)."""
    rank, size = world()
    if size == 1:
        return accumulator
    empty = TopKAccumulator(num_classes)
    parts: list[Any] = [None] * size if rank == 0 else None
    dist.gather_object(accumulator or empty, parts, dst=0)
    return TopKAccumulator.merge(parts) if rank == 0 else None


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every replica."""
    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
