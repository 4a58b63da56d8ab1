"""Processes and devices: the rank of this process, its device, the global-batch shard
sampler and the collective helpers the training loop uses (DDP via torchrun)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dfer.data.dataset import EpochSampler
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


def resolve_device(spec: str, local_rank: int | None = None) -> torch.device:
    """The device of ``spec``: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``,
    ``cuda`` or ``cuda:N``. A process of a torchrun job (``local_rank`` given) on CUDA takes
    the GPU of its local rank. The one place dfer turns a device setting into a device.

    Raises:
        ConfigError: not one of those forms, or CUDA asked for on a machine without it.
    """
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if device.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} asks for CUDA, but torch sees no GPU on this machine")
    if local_rank is not None:
        return torch.device("cuda", local_rank)
    return torch.device("cuda", device.index or 0)


def init_distributed(device_spec: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun set up (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_spec, info.local_rank if info.enabled else None)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
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


def autocast_dtype(cfg, device: torch.device) -> torch.dtype | None:
    """The dtype evaluation and the robust learner's predictions compute in under
    ``optim.precision``: on CUDA bf16 or fp16 as set (``auto``: bf16 where the GPU has it,
    else fp16); None (fp32, no autocast) for ``fp32`` and on the CPU, where a prediction
    pass is short and fp32 answers do not depend on which CPU gave them. Training's own
    precision is :func:`dfer.precision.choose_precision`'s."""
    precision = cfg.optim.precision
    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16
