"""Processes and devices: the rank of this process, its device, the global-batch shard
sampler and the collective helpers the training loop uses (DDP via torchrun)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dfer.errors import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_spec: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun set up (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_spec.startswith("cuda") or (device_spec == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError(f"device {device_spec!r} asked for CUDA but torch sees no GPU")
    if use_cuda:
        index = info.local_rank if info.enabled or device_spec in ("auto", "cuda") else int(device_spec.split(":")[1])
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info, device


class GlobalBatchShardSampler:
    """Rank ``r``'s share of every global batch of the single-process order.

    torch's DistributedSampler deals the clips round-robin from its own permutation, so
    the batches depend on the number of processes. Here every rank draws the permutation
    a single process would (:class:`dfer.data.dataset.EpochSampler`, seeded by (seed,
    epoch)), cuts it into global batches of ``batch_size`` (dropping the last partial one,
    as training does) and takes the ``r``-th contiguous slice of ``batch_size /
    world_size`` clips of each. The union over the ranks of optimiser step ``s`` is then
    exactly the single-process batch ``s``: N processes train on the same batches as one.

    Yields dataset indices; wrap it as the ``base`` of an ``EpochSampler``.
    """

    def __init__(self, num_items: int, batch_size: int, rank: int, world_size: int, *, seed: int = 0,
                 epoch: int = 0):
        if batch_size % world_size:
            raise ConfigError(f"global batch {batch_size} is not divisible by {world_size} processes")
        self.num_items, self.batch_size, self.rank, self.world_size = num_items, batch_size, rank, world_size
        self.seed, self.epoch = seed, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        from dfer.data.dataset import EpochSampler

        order = EpochSampler(self.num_items, shuffle=True, seed=self.seed, epoch=self.epoch).order()
        per_rank = self.batch_size // self.world_size
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            lo = start + self.rank * per_rank
            yield from order[lo:lo + per_rank]

    def __len__(self) -> int:
        return (self.num_items // self.batch_size) * (self.batch_size // self.world_size)


def mean_across(value: float, info: DistInfo, device) -> float:
    """``value`` averaged over the processes (itself in a single process)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item() / info.world_size)


def barrier(info: DistInfo) -> None:
    """Wait for every process (nothing in a single process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def unwrap(model):
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if hasattr(model, "module") else model


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()
