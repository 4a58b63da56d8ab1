"""The training loop: one process, or several with torch.distributed (DDP via torchrun).

Label modes (MIDAS paper, Tables 2 and 3): ``hard`` (one-hot majority label), ``soft``
(annotator vote distribution), ``midas`` (soft labels mixed with eq. (1)-(3)),
``midas-hard`` (the same mixing on one-hot labels) and ``mixup`` (Zhang et al.). Mixing
runs on the device after the batch arrives (see :mod:`dfer.mixing`).

Exact resume: the data order is seeded by (seed, epoch), each clip's augmentation by
(seed, epoch, index), and the checkpoint holds the model, the optimiser, the AMP scaler,
the mixer's generator and the global RNG states, so a run interrupted at any point and
resumed from its last checkpoint ends with the same weights as an uninterrupted run.

Nothing is ever chosen on the test clips: model selection (``eval.select=best_val``) uses
a validation split held out from the training clips.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from dfer.config import HARD_LABEL_MODES, RunConfig, config_hash, dump_config, load_config, saved_config, to_dict
from dfer.data.table import ClipTable
from dfer.emotions import resolve_classes
from dfer.errors import ConfigError, DataError, first_line
from dfer.io import atomic_path, exclusive_folder, refuse_foreign_folder, write_text_atomic
from dfer.metrics import clear_mask

# ---------------------------------------------------------------------- small pure helpers


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, schedule: str = "cosine") -> float:
    """Learning rate at optimiser step ``step`` (0-based): linear warm-up, then cosine decay to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------------- devices and processes


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


# ---------------------------------------------------------------------- data


def load_source_table(source, classes: tuple[str, ...]) -> ClipTable:
    from dfer.data.corpora.registry import load_source

    if not source.root:
        raise ConfigError(f"data source {source.kind!r} has no root: set data.source.root=PATH")
    table = load_source(source.kind, source.root, **source.options)
    return table.to_classes(classes)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Bool mask of a validation subset: ``fraction`` of each class (or of the groups, when
    clips carry group ids, so a subject never sits on both sides)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    if groups is not None and (groups != "").all():
        uniq = np.unique(groups)
        chosen = rng.permutation(uniq)[: max(1, round(fraction * len(uniq)))]
        return np.isin(groups, chosen)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(fraction * len(idx)))
        if k and len(idx) > 1:
            mask[rng.choice(idx, size=min(k, len(idx) - 1), replace=False)] = True
    return mask


def ambiguity_subset(table: ClipTable, which: str, seed: int, size: int | None = None) -> ClipTable:
    """The paper's Table 6 training groups, matched in size and class distribution.

    ``clear``: clips whose largest soft label exceeds 0.9; ``mixed``: clips drawn from all
    clips regardless of agreement. Both are re-sampled (down-sampling, or over-sampling with
    replacement where a class is short) to ``size`` clips (default: the number of clear
    clips) with the class distribution of the whole table, as section 5.5 describes.
    """
    if which == "all":
        return table
    soft = table.soft_labels()
    labels = table.hard_labels()
    clear = clear_mask(soft)  # the paper's clear group, as every table of dfer counts it
    pool = clear if which == "clear" else np.ones(len(table), bool)
    size = int(size or clear.sum())
    if size == 0:
        raise DataError(f"{table.name}: no clear clips (max soft label > 0.9) to build the {which!r} group")
    rng = np.random.default_rng(seed)
    valid = labels >= 0
    dist_ = np.bincount(labels[valid], minlength=table.num_classes) / valid.sum()
    counts = np.floor(dist_ * size).astype(int)
    counts[np.argsort(-(dist_ * size - counts))[: size - counts.sum()]] += 1
    picks = []
    for c, k in enumerate(counts):
        idx = np.flatnonzero(pool & (labels == c))
        if k == 0:
            continue
        if len(idx) == 0:
            raise DataError(f"{table.name}: the {which!r} group has no clip of class {table.classes[c]!r}")
        picks.append(rng.choice(idx, size=k, replace=len(idx) < k))
    order = np.concatenate(picks)
    sub = table.take(order)
    # re-sampled duplicates need distinct ids
    ids = np.char.add(sub.clip_id.astype(str), np.char.add("#", np.arange(len(sub)).astype(str)))
    return sub.with_columns(clip_id=ids)


@dataclass
class Splits:
    classes: tuple[str, ...]
    train: ClipTable
    val: ClipTable | None
    test: ClipTable
    #: part name -> dfer.data.check.CheckReport of the disk check (empty if not checked)
    reports: dict


def build_splits(cfg: RunConfig, run_dir: Path | None = None) -> Splits:
    """Tables for training, validation (held out from training) and test."""
    classes = resolve_classes(cfg.data.classes)
    src = cfg.data.source
    table = load_source_table(src, classes)
    if src.fold is not None:
        train, test = table.fold_split(src.fold)
    else:
        part = lambda name: table if name == "all" else table.split_part(name)  # noqa: E731
        train, test = part(src.train_split), part(src.test_split)
    if cfg.data.test_source is not None:
        ts = cfg.data.test_source
        other = load_source_table(ts, classes)
        if ts.fold is not None:
            test = other.fold_split(ts.fold)[1]
        else:
            test = other if ts.test_split == "all" else other.split_part(ts.test_split)
    val = None
    if src.val_split:
        val = table.split_part(src.val_split)
        if len(val) == 0:
            raise DataError(f"{src.root}: no clips in the validation split {src.val_split!r}")
    # every hard label is decided here, before a model or a loader exists (data.ties); a tie
    # left undecided stops only a run whose training targets are hard labels
    hard_targets = cfg.label_mode in HARD_LABEL_MODES
    test_root = cfg.data.test_source.root if cfg.data.test_source is not None else src.root
    train = train.resolve_labels(cfg.data.ties, cfg.seed, f"{src.root} (training clips)", required=hard_targets)
    test = test.resolve_labels(cfg.data.ties, cfg.seed, f"{test_root} (test clips)", required=False)
    if val is not None:
        val = val.resolve_labels(cfg.data.ties, cfg.seed, f"{src.root} (validation clips)", required=False)
    if len(train) == 0:
        raise DataError(f"{src.root}: no training clips for fold={src.fold} split={src.train_split!r}")
    if len(test) == 0:
        raise DataError(f"no test clips for fold={src.fold} split={src.test_split!r}")
    reports: dict = {}
    if cfg.data.check_disk:
        from dfer.data.check import check_table

        cache = (run_dir / "cache") if run_dir is not None else None
        train, reports["train"] = check_table(train, on_bad_clip=cfg.data.on_bad_clip, cache_dir=cache)
        test, reports["test"] = check_table(test, on_bad_clip=cfg.data.on_bad_clip, cache_dir=cache)
        if val is not None:
            val, reports["val"] = check_table(val, on_bad_clip=cfg.data.on_bad_clip, cache_dir=cache)
    train = ambiguity_subset(train, cfg.data.train_subset, cfg.seed)
    if cfg.data.val_fraction > 0:
        mask = stratified_holdout(train.label, cfg.data.val_fraction, cfg.seed,
                                  train.group if (train.group != "").all() else None)
        val, train = train.take(mask), train.take(~mask)
    return Splits(classes, train, val, test, reports)


def make_dataset(table: ClipTable, cfg: RunConfig, train: bool, num_clips: int = 1, sampler=None, transform=None):
    """The dataset of ``table`` as ``cfg`` samples and transforms it; ``transform`` replaces
    the config's (a model with its own input pipeline, e.g. the shipped one)."""
    from dfer.data.dataset import ClipDataset
    from dfer.data.sampling import MultiClipSampler, SegmentSampler
    from dfer.data.transforms import build_transforms

    d = cfg.data
    if sampler is None:
        sampler = (SegmentSampler(d.num_frames, mode="train") if train else
                   MultiClipSampler(d.num_frames, num_clips) if num_clips > 1 else
                   SegmentSampler(d.num_frames, mode="test"))
    if transform is None:
        transform = build_transforms(train=train, size=d.size, scales=tuple(d.scales), flip=d.flip, crop=d.crop,
                                     pad=d.pad)
    # clips that fail the disk check are dropped (and listed) before this point; a clip that
    # still fails to decode mid-run stops the run unless the user asked to skip bad clips
    return ClipDataset(table, sampler, transform, seed=cfg.seed,
                       on_bad_clip="warn" if d.on_bad_clip == "skip" else "error")


# ---------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, model, optimizer, scaler, mixer, state: dict, robust=None) -> None:
    """One safetensors file (weights, optimiser buffers, RNG states) + a JSON sidecar.

    The safetensors file is written to a temporary name and renamed, so a crash never
    leaves a half-written checkpoint; its metadata carries the JSON state as well, so the
    sidecar is informational.
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for k, v in _unwrap(model).state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    opt = optimizer.state_dict()
    for pid, st in opt["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{name}"] = v.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    if mixer is not None:
        tensors["rng.mixer"] = mixer.state_dict()["rng_state"]
    if robust is not None:
        for k, v in robust.state_dict().items():
            tensors[f"robust.{k}"] = v.detach().cpu().contiguous()
    meta = dict(state)
    meta["optim_param_groups"] = opt["param_groups"]
    meta["optim_scalars"] = {str(pid): {n: v for n, v in st.items() if not torch.is_tensor(v)}
                             for pid, st in opt["state"].items()}
    meta["scaler"] = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
    meta["numpy_rng"] = None
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"dfer_state": json.dumps(meta)})
    write_text_atomic(path.with_suffix(".json"), json.dumps(
        {k: v for k, v in meta.items() if k not in ("optim_param_groups", "optim_scalars")}, indent=1, default=str))


def _damaged(path: Path, e: BaseException, what: str = "is not a readable dfer checkpoint") -> ConfigError:
    return ConfigError(f"{path}: {what} ({type(e).__name__}: {first_line(e)}); it is damaged or was not written by "
                       f"dfer train (--restart trains the run again from scratch)")


def read_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(state metadata, tensors) of a checkpoint of dfer train; one line naming the file on
    a truncated, foreign or damaged one. Safetensors holds tensors and strings only: nothing
    in a checkpoint is ever unpickled."""
    from safetensors.torch import load_file

    meta = load_checkpoint_meta(path)
    try:
        return meta, load_file(str(path))
    except Exception as e:  # SafetensorError on a truncated file, OSError
        raise _damaged(path, e) from None


def load_checkpoint(path: Path, model, optimizer=None, scaler=None, mixer=None, map_location="cpu",
                    robust=None) -> dict:
    meta, tensors = read_checkpoint(path)
    try:
        return _restore(meta, tensors, model, optimizer, scaler, mixer, robust)
    except ConfigError:
        raise
    except Exception as e:  # tensors that do not fit the model or optimiser: a checkpoint of another run
        raise _damaged(path, e, "does not fit this run's model and optimiser") from None


def _restore(meta: dict, tensors: dict, model, optimizer, scaler, mixer, robust) -> dict:
    msd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    _unwrap(model).load_state_dict(msd)
    if optimizer is not None:
        state: dict = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = v
        for pid, scalars in meta.get("optim_scalars", {}).items():
            state.setdefault(int(pid), {}).update(scalars)
        optimizer.load_state_dict({"state": state, "param_groups": meta["optim_param_groups"]})
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    if mixer is not None and "rng.mixer" in tensors:
        mixer.load_state_dict({"rng_state": tensors["rng.mixer"]})
    if robust is not None:
        robust.load_state_dict({k[len("robust."):]: v for k, v in tensors.items() if k.startswith("robust.")})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    return meta


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


# ---------------------------------------------------------------------- the loop


class _Progress:
    """A rich progress bar on a terminal, a plain line per epoch elsewhere."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True)
            self.bar.start()

    def task(self, desc: str, total: int):
        return self.bar.add_task(desc, total=total, info="") if self.bar else None

    def update(self, task, info: str = "") -> None:
        if self.bar is not None and task is not None:
            self.bar.update(task, advance=1, info=info)

    def done(self, task) -> None:
        if self.bar is not None and task is not None:
            self.bar.remove_task(task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def train(cfg: RunConfig, *, run_dir: Path | None = None, restart: bool = False,
          stop_after_epochs: int | None = None) -> Path:
    """Train (or resume) the run described by ``cfg``; evaluate on the test clips at the end.

    Args:
        run_dir: defaults to ``cfg.out_dir / cfg.run_name()``.
        restart: start from scratch even if the run directory holds a checkpoint.
        stop_after_epochs: stop after this many epochs *of this invocation* without the
            final evaluation, as an interruption would (used to test resume).

    Returns:
        The run directory.
    """
    cfg.validate()
    info, device = init_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir or Path(cfg.out_dir) / cfg.run_name())
    # one writer per run: the main process holds the run's lock from here to the end
    with exclusive_folder(run_dir, "dfer train") if info.is_main else contextlib.nullcontext():
        if info.is_main:
            refuse_foreign_folder(run_dir, RUN_MARKS, "dfer train")
        _barrier(info)
        return _train(cfg, info, device, run_dir, restart, stop_after_epochs)


#: what a run directory holds once dfer train has begun in it (written before anything else)
RUN_MARKS = ("config.yaml", "checkpoints")


def _train(cfg: RunConfig, info: DistInfo, device: torch.device, run_dir: Path, restart: bool,
           stop_after_epochs: int | None) -> Path:
    from dfer.losses import soft_target_cross_entropy
    from dfer.mixing import BatchMixer, MixConfig, one_hot
    from dfer.models import create_model

    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.safetensors"
    chash = config_hash(cfg)

    resume_meta = None
    if last_path.exists() and not restart:
        resume_meta = load_checkpoint_meta(last_path)
        if resume_meta.get("config_hash") != chash:
            # checkpoints record their config: one saved before a setting was added still matches
            same, why = False, ""
            if isinstance(resume_meta.get("config"), dict):
                try:
                    same = config_hash(saved_config(resume_meta["config"])) == chash
                except ConfigError as e:
                    why = f" (its saved config no longer reads: {e})"
            if not same:
                raise ConfigError(f"{run_dir} holds a run with a different config{why}; use another name, or "
                                  f"--restart to overwrite it")
        if resume_meta.get("finished") and (run_dir / "results.json").exists():
            if info.is_main:
                print(f"{run_dir}: already finished; nothing to do")
            return run_dir

    if info.is_main:  # first, so that the folder is known as a run from now on
        dump_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    splits = build_splits(cfg, run_dir)
    C = len(splits.classes)
    if info.is_main:
        (run_dir / "classes.json").write_text(json.dumps(list(splits.classes)))
        from dfer.data.check import write_skipped

        for part, report in splits.reports.items():
            if report.skipped:
                path = write_skipped(report, run_dir / f"skipped_{part}_clips.csv")
                print(f"{len(report.skipped)} unreadable {part} clip(s) skipped, listed in {path}", file=sys.stderr)
            if report.differs_id:
                print(f"{len(report.differs_id)} {part} clip(s) have fewer or more frames on disk than listed "
                      f"(e.g. {report.differs_id[:3]}); the disk counts are used", file=sys.stderr)

    if cfg.optim.batch_size % info.world_size:
        raise ConfigError(f"optim.batch_size={cfg.optim.batch_size} (the global batch) must be divisible by the "
                          f"{info.world_size} processes")
    per_rank_batch = cfg.optim.batch_size // info.world_size
    robust = None
    if cfg.robust.enabled:
        # RDFER: clip agreement -> per-sample weights / corrected labels, key-expression sampling
        from dfer.robust.learner import RobustLearner

        robust = RobustLearner(cfg.robust, splits.train, num_classes=C, seed=cfg.seed)
    train_set = make_dataset(splits.train, cfg, train=True,
                             sampler=robust.train_sampler(cfg) if robust is not None else None)
    if len(train_set) < cfg.optim.batch_size:
        raise ConfigError(f"the training clips ({len(train_set)}) are fewer than optim.batch_size="
                          f"{cfg.optim.batch_size}: an epoch would make no optimiser step (a partial last batch is "
                          f"dropped); lower optim.batch_size")
    from dfer.data.dataset import build_loader, item_seed

    model = create_model(cfg.model.name, num_classes=C, pretrained=cfg.model.pretrained,
                         dropout=cfg.model.dropout, **cfg.model.kwargs).to(device)
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    decay, no_decay = [], []
    for n, p in _unwrap(model).named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optim.name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr)
    else:
        optimizer = torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                    nesterov=cfg.optim.nesterov)
    use_amp = cfg.optim.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    mix_mode = {"hard": "none", "soft": "none"}.get(cfg.label_mode, cfg.label_mode)
    mixer = None
    if mix_mode != "none":
        mixer = BatchMixer(MixConfig(mode=mix_mode, alpha=cfg.mixing.alpha, normalise=cfg.mixing.normalise,
                                     temperature=cfg.mixing.temperature, lam_per=cfg.mixing.lam_per),
                           num_classes=C, generator=cfg.seed * 1000 + info.rank)

    steps_per_epoch = max(1, len(train_set) // cfg.optim.batch_size)
    total_steps = steps_per_epoch * cfg.optim.epochs
    warmup_steps = int(cfg.optim.warmup_epochs * steps_per_epoch)
    start_epoch, step, best = 0, 0, -1.0
    if resume_meta is not None:
        meta = load_checkpoint(last_path, model, optimizer, scaler, mixer, robust=robust)
        start_epoch, step, best = meta["epoch"], meta["step"], meta.get("best", -1.0)
        if info.is_main:
            print(f"{run_dir}: resuming after epoch {start_epoch}")
    metrics_path = run_dir / "metrics.csv"
    if info.is_main:
        _truncate_metrics(metrics_path, start_epoch)
    writer = None
    if info.is_main and cfg.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tb"), purge_step=step)
        except ImportError:  # pragma: no cover - tensorboard is a dependency, but stay usable without
            writer = None

    loader = build_loader(train_set, per_rank_batch, shuffle=True, num_workers=cfg.data.num_workers,
                          seed=cfg.seed, epoch=start_epoch, drop_last=True)
    if info.enabled:  # each rank takes its slice of the single-process global batches (see the class)
        loader.sampler.base = GlobalBatchShardSampler(len(train_set), cfg.optim.batch_size, info.rank,
                                                      info.world_size, seed=cfg.seed, epoch=start_epoch)
    progress = _Progress(cfg.progress and info.is_main)
    epochs_run = 0
    try:
        for epoch in range(start_epoch, cfg.optim.epochs):
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
                return run_dir
            model.train()
            loader.sampler.set_epoch(epoch)  # keys carry the epoch, so persistent workers see it too
            # dropout and mixing draw from streams that are a function of (seed, epoch, rank):
            # ranks draw different masks, and a resumed DDP run (whose checkpoint holds rank
            # 0's generators only) continues every rank exactly
            torch.manual_seed(item_seed(cfg.seed, epoch, info.rank, stream=3))
            if mixer is not None:
                mixer.generator.manual_seed(item_seed(cfg.seed, epoch, info.rank, stream=4))
            if robust is not None:
                robust.on_epoch_start(epoch, model, cfg, device, dist_info=info)
            task = progress.task(f"epoch {epoch + 1}/{cfg.optim.epochs}", steps_per_epoch)
            t0, seen, loss_sum, n_loss = time.perf_counter(), 0, 0.0, 0
            for batch in loader:
                clip = batch["clip"].to(device, non_blocking=True)
                soft = batch["soft_label"].to(device, non_blocking=True)
                label = batch["label"].to(device, non_blocking=True)
                lr = lr_at(step, total_steps, cfg.optim.lr, warmup_steps, cfg.optim.schedule)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                weight = None
                if robust is not None:
                    soft, label, weight = robust.adjust(batch["index"].to(device), soft, label)
                if mixer is not None:
                    mixed = mixer(clip, soft, label)
                    clip, target = mixed.clip, mixed.target
                    if weight is not None:  # a mixed clip weighs what its two sources weigh, by λ
                        weight = mixed.lam * weight + (1 - mixed.lam) * weight[mixed.partner]
                elif cfg.label_mode == "hard":
                    target = one_hot(label, C)  # DataError naming the batch positions without a label
                else:
                    target = soft
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    logits = model(clip)
                loss = soft_target_cross_entropy(logits.float(), target, weight=weight)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1} step {step}; "
                                             f"lower optim.lr or check the inputs")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.optim.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                seen += clip.shape[0]
                loss_sum += loss.item()
                n_loss += 1
                progress.update(task, f"loss {loss_sum / n_loss:.3f}")
                if writer is not None and step % cfg.log_every == 0:
                    writer.add_scalar("train/loss", loss.item(), step)
                    writer.add_scalar("train/lr", lr, step)
            progress.done(task)
            elapsed = time.perf_counter() - t0
            row = {"epoch": epoch + 1, "train_loss": _mean_across(loss_sum / max(1, n_loss), info, device),
                   "lr": lr_at(step - 1, total_steps, cfg.optim.lr, warmup_steps, cfg.optim.schedule),
                   "clips_per_s": seen * info.world_size / max(elapsed, 1e-9), "epoch_s": elapsed,
                   "val_uar": "", "val_war": ""}
            is_last = epoch + 1 == cfg.optim.epochs
            if splits.val is not None and ((epoch + 1) % cfg.eval.every == 0 or is_last):
                from dfer.evaluate import predict_table
                from dfer.metrics import summarise

                probs = predict_table(model, splits.val, cfg, device, dist_info=info)
                if info.is_main:
                    s = summarise(probs, splits.val.label.astype(np.int64), splits.classes)
                    row["val_uar"], row["val_war"] = s["uar"], s["war"]
                    if writer is not None:
                        writer.add_scalar("val/uar", s["uar"] or 0.0, step)
                        writer.add_scalar("val/war", s["war"] or 0.0, step)
                    if cfg.eval.select == "best_val" and (s["uar"] or 0.0) > best:
                        best = s["uar"] or 0.0
                        save_checkpoint(ckpt_dir / "best.safetensors", model, optimizer, scaler, mixer,
                                        {"epoch": epoch + 1, "step": step, "config_hash": chash, "val_uar": best})
            if info.is_main:
                _append_metrics(metrics_path, row)
                if writer is not None:
                    writer.add_scalar("train/epoch_loss", row["train_loss"], epoch + 1)
                    writer.add_scalar("train/clips_per_s", row["clips_per_s"], epoch + 1)
                    writer.flush()
                if robust is not None:
                    robust.on_epoch_end(epoch, run_dir)
                save_checkpoint(last_path, model, optimizer, scaler, mixer,
                                {"epoch": epoch + 1, "step": step, "config_hash": chash, "best": best,
                                 "finished": False, "config": to_dict(cfg)}, robust=robust)
                if not (cfg.progress and sys.stderr.isatty()):
                    val = f" val UAR {row['val_uar']:.3f}" if row["val_uar"] != "" else ""
                    print(f"epoch {epoch + 1}/{cfg.optim.epochs} loss {row['train_loss']:.4f} "
                          f"{row['clips_per_s']:.1f} clips/s{val}", file=sys.stderr, flush=True)
            _barrier(info)
            epochs_run += 1
    finally:
        progress.close()
        if writer is not None:
            writer.close()

    from dfer.evaluate import evaluate_model

    results = evaluate_model(model, splits.test, cfg, device, dist_info=info, run_dir=run_dir)
    if info.is_main:
        meta = load_checkpoint_meta(last_path)
        meta["finished"] = True
        _rewrite_meta(last_path, meta)
        print(f"{run_dir}: test UAR {_pct(results['uar'])} WAR {_pct(results['war'])} "
              f"({results['num_clips']} clips)")
    _barrier(info)
    return run_dir


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def load_checkpoint_meta(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {})["dfer_state"])
    except Exception as e:  # SafetensorError, KeyError (no dfer state), JSON errors, OSError
        raise _damaged(path, e) from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: its dfer state is {type(meta).__name__}, not a mapping; it is damaged "
                          f"(--restart trains the run again from scratch)")
    return meta


def _rewrite_meta(path: Path, meta: dict) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt", device="cpu") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"dfer_state": json.dumps(meta)})


def _mean_across(value: float, info: DistInfo, device) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item() / info.world_size)


def _barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


_METRIC_FIELDS = ["epoch", "train_loss", "val_uar", "val_war", "lr", "clips_per_s", "epoch_s"]


def _append_metrics(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_METRIC_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in _METRIC_FIELDS})


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop rows of epochs after the checkpoint (written before an interruption)."""
    if not path.exists():
        return
    rows = []
    with open(path, newline="") as f:
        for line, r in enumerate(csv.DictReader(f), start=2):
            try:
                epoch = int(r.get("epoch") or "")
            except ValueError:
                raise ConfigError(f"{path}:{line}: epoch {r.get('epoch')!r} is not an integer; the file is damaged "
                                  f"(delete it to resume without the earlier rows, or --restart)") from None
            if epoch <= epochs_done:
                rows.append(r)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)


# ---------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML recipe (defaults: the paper's settings)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. data.source.root=/data/DFEW optim.epochs=10")
    p.add_argument("--run-dir", help="run directory (default: OUT_DIR/<name encoding the protocol>)")
    p.add_argument("--restart", action="store_true", help="overwrite an existing run instead of resuming it")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    try:
        train(cfg, run_dir=Path(args.run_dir) if args.run_dir else None, restart=args.restart)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
