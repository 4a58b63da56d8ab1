"""ClipDataset: a :class:`~dfer.data.table.ClipTable` row -> a training example.

Per item: the sampler picks frame indices (MIDAS section 4.3: 8 segments, one frame each),
the decoder reads only those frames, the transform scales / crops / flips / normalises.
Mixing (MIDAS, mixup) is not done here: it runs on the device, on whole batches.

Randomness is a function of (seed, epoch, index) only: every item gets its own
``torch.Generator`` seeded from those three numbers, so a clip is drawn identically with
0 or 8 workers, on any rank, and after a resume. The DataLoader's order comes from a
generator seeded by (seed, epoch) as well. Because persistent workers keep their own copy
of the dataset, the epoch travels with each index (:class:`EpochSampler` yields
``(epoch, index)`` keys) rather than through an attribute set in the main process.
"""

from __future__ import annotations

import logging
from typing import Iterator, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from dfer.data.decode import num_frames_of, read_frames
from dfer.data.table import ClipTable
from dfer.errors import ConfigError, DataError
from dfer.targets import one_hot

__all__ = ["ClipDataset", "EpochSampler", "collate", "build_loader", "item_seed"]

log = logging.getLogger(__name__)

Target = Literal["soft", "hard", "none"]


def item_seed(seed: int, epoch: int, index: int, stream: int = 0) -> int:
    """A 63-bit seed mixed from (seed, epoch, index) by numpy's SeedSequence, so that
    neighbouring indices or epochs get unrelated streams. ``stream`` separates uses
    (0: items, 1: the epoch's shuffle order)."""
    state = np.random.SeedSequence([int(stream), int(seed), int(epoch), int(index)]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


class ClipDataset(Dataset):
    """Examples from a ClipTable.

    Args:
        table: the clips.
        sampler: object with ``sample(n_available, rng) -> int64 (T,)`` (or (K, T) for a
            multi-clip sampler), see :mod:`dfer.data.sampling`.
        transform: callable ``(uint8 (T, H, W, 3), generator) -> (T, C, H, W)``: uint8
            (what dfer's datasets return, made float on the device by
            :func:`dfer.data.transforms.to_model_input`) or float32,
            e.g. :func:`dfer.data.transforms.build_transforms`. Its ``size_hint``
            attribute, when present, lets the decoder work at reduced resolution.
        seed: base seed of every random draw.
        target: ``"soft"`` soft_label = votes / row sum (one-hot of the label where a clip
            has no votes); ``"hard"`` one-hot of the hard label; ``"none"`` unlabelled
            data (soft_label uniform, label -1).
        on_bad_clip: ``"error"`` raises :class:`DataError`; ``"warn"`` logs the clip and
            returns the next readable clip instead (opt-in, never the default).

    Items are dicts: ``clip`` (T, C, H, W), as the transform returns it (or (K, T, C, H, W) with a multi-clip
    sampler), ``soft_label`` float32 (K,) summing to 1, ``label`` int64 (-1 = none),
    ``index`` int64 row of the table.
    """

    def __init__(self, table: ClipTable, sampler, transform, *, seed: int = 0, target: Target = "soft",
                 on_bad_clip: Literal["error", "warn"] = "error"):
        if target not in ("soft", "hard", "none"):
            raise ConfigError(f"target must be 'soft', 'hard' or 'none', got {target!r}")
        if on_bad_clip not in ("error", "warn"):
            raise ConfigError(f"on_bad_clip must be 'error' or 'warn', got {on_bad_clip!r}")
        self.table = table
        self.sampler = sampler
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.target = target
        self.on_bad_clip = on_bad_clip
        self.size_hint = getattr(transform, "size_hint", None)
        C = table.num_classes
        if target == "none":
            self.labels = np.full(len(table), -1, np.int64)
            self.soft = np.full((len(table), C), 1.0 / C, np.float32)
        else:
            self.labels = table.hard_labels()
            if target == "soft":
                self.soft = table.soft_labels()  # raises, naming clips with neither votes nor label
            else:
                missing = self.labels < 0
                if missing.any():
                    raise DataError(f"{table.name}: clips {[str(c) for c in table.clip_id[missing][:5]]} have no hard label "
                                    f"(no label and no majority vote), expected one for target='hard'")
                self.soft = one_hot(self.labels, C)

    def __len__(self) -> int:
        return len(self.table)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer indices (keys from :class:`EpochSampler` carry their own)."""
        self.epoch = int(epoch)

    def generator(self, index: int, epoch: int | None = None) -> torch.Generator:
        """The generator of item ``index`` in ``epoch`` (default: the current epoch)."""
        g = torch.Generator()
        g.manual_seed(item_seed(self.seed, self.epoch if epoch is None else epoch, index))
        return g

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, int(key))
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        if self.on_bad_clip == "error":
            return self._load(index, epoch)
        for attempt in range(min(len(self), 16)):
            j = (index + attempt) % len(self)
            try:
                return self._load(j, epoch)
            except DataError as exc:
                log.warning("skipping unreadable clip (on_bad_clip='warn'): %s", exc)
        raise DataError(f"{self.table.name}: 16 clips in a row from clip {str(self.table.clip_id[index])!r} are unreadable")

    def _load(self, index: int, epoch: int) -> dict[str, torch.Tensor]:
        t = self.table
        source, kind = str(t.source[index]), int(t.kind[index])
        g = self.generator(index, epoch)
        try:
            n = num_frames_of(source, kind)
            # per-video samplers (RDFER's key-expression sampler) also need to know the clip
            idx = self.sampler.sample(n, g, index=index) if getattr(self.sampler, "uses_index", False) \
                else self.sampler.sample(n, g)
            frames = read_frames(source, kind, idx.reshape(-1), size_hint=self.size_hint)
        except DataError as exc:
            raise DataError(f"clip {str(t.clip_id[index])!r} ({source}): {exc}") from None
        clip = self.transform(frames, g)
        if idx.ndim == 2:  # multi-clip: (K*T, C, H, W) -> (K, T, C, H, W), same crop for all K
            clip = clip.reshape(idx.shape + tuple(clip.shape[1:]))
        return {
            "clip": clip,
            "soft_label": torch.from_numpy(self.soft[index]),
            "label": torch.tensor(self.labels[index], dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }


def collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items: clip (B, T, C, H, W) (uint8 or float32), soft_label (B, K), label (B,), index (B,).

    torch's ``default_collate`` does the stacking: inside a worker it stacks straight into
    shared memory, which saves a copy of every batch on its way to the main process.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    shapes = {tuple(item["clip"].shape) for item in batch}
    if len(shapes) > 1:
        raise ValueError(f"Expected clips of one shape to batch, got {sorted(shapes)}; "
                         "use a transform that crops/resizes every clip to the same size")
    return default_collate(batch)


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys: a permutation seeded by (seed, epoch) when
    ``shuffle``, else ``0..N-1``; or the order of a wrapped ``base`` sampler (e.g.
    DistributedSampler). Call :meth:`set_epoch` before each epoch."""

    def __init__(self, num_items: int, *, shuffle: bool, seed: int = 0, epoch: int = 0, base=None):
        self.num_items = int(num_items)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.base = base

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.base is not None and hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def order(self) -> list[int]:
        """Dataset indices of the current epoch, in order."""
        if self.base is not None:
            return [int(i) for i in self.base]
        if not self.shuffle:
            return list(range(self.num_items))
        g = torch.Generator()
        g.manual_seed(item_seed(self.seed, self.epoch, 0, stream=1))
        return torch.randperm(self.num_items, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, i) for i in self.order()])

    def __len__(self) -> int:
        return len(self.base) if self.base is not None else self.num_items


def _worker_init(worker_id: int) -> None:
    # each worker decodes one clip at a time; intra-op threads would only oversubscribe the CPUs
    torch.set_num_threads(1)


def build_loader(dataset: ClipDataset, batch_size: int, *, shuffle: bool, num_workers: int = 0, seed: int = 0,
                 epoch: int = 0, drop_last: bool = False, pin_memory: bool | None = None,
                 base=None, prefetch_factor: int | None = None) -> DataLoader:
    """A DataLoader over ``dataset`` with a seeded, epoch-aware order.

    Call ``loader.sampler.set_epoch(e)`` at the start of each epoch. ``base``, a sampler of
    dataset indices, replaces the order (e.g. a DDP rank's share of every global batch,
    :class:`dfer.distributed.GlobalBatchShardSampler`); it is told the epoch too. The batch
    is the :func:`collate` dict on the CPU (pinned when ``pin_memory``); move it with
    ``non_blocking=True``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, epoch=epoch, base=base)
    sampler.set_epoch(epoch)
    dataset.set_epoch(epoch)
    extra = {}
    if num_workers > 0:
        extra = dict(persistent_workers=True, worker_init_fn=_worker_init)
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    # The DataLoader draws its workers' base seed when it first builds an iterator: from the
    # global stream unless it has a generator. With persistent workers that draw happens in
    # the first epoch of each process only, so a resumed run would see another global stream
    # (dropout masks) than the uninterrupted one, and num_workers would change results. Its
    # own generator keeps the global stream untouched; items are seeded by (seed, epoch,
    # index) anyway, so no result depends on the workers' seeds.
    generator = torch.Generator().manual_seed(item_seed(seed, 0, 0, stream=5))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate, drop_last=drop_last, generator=generator,
                      pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory, **extra)
