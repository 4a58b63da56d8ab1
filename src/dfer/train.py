"""The training loop: one process, or several with torch.distributed (DDP via torchrun).
Kept as one module: the loop with its resume, checkpoint and metrics-file rules, read top
to bottom.

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
from typing import Any

import numpy as np
import torch

from dfer.checkpoint import load_checkpoint, load_checkpoint_meta, mark_finished, resume_point, save_checkpoint
from dfer.config import MIXING_LABEL_MODES, RunConfig, config_hash, dump_config, load_config, saved_config, to_dict
from dfer.data.check import write_skipped
from dfer.data.dataset import build_loader, item_seed
from dfer.data.splits import Splits, build_splits, make_dataset
from dfer.data.transforms import to_model_input
from dfer.distributed import (DistInfo, GlobalBatchShardSampler, barrier, init_distributed,
                              mean_across, shutdown, unwrap)
from dfer.errors import ConfigError
from dfer.evaluate import evaluate_model, predict_table
from dfer.inference import channels_last
from dfer.io import atomic_path, exclusive_folder
from dfer.losses import soft_target_cross_entropy
from dfer.metrics import summarise
from dfer.mixing import BatchMixer
from dfer.precision import Precision, choose_precision, read_record, write_record
from dfer.models import create_model
from dfer.models.weights import load_pretrained_classifier
from dfer.robust.learner import RobustLearner, read_robust_log
from dfer.rundir import (CLASSES_FILE, CONFIG_FILE, METRICS_FILE, RESULTS_FILE, ROBUST_FILE, RUN_FILES, RUN_KIND,
                         checkpoint_path, evaluation_files, is_earlier_run, read_epoch_log,
                         refuse_folders_in_the_way)
from dfer.targets import batch_targets


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, schedule: str = "cosine") -> float:
    """Learning rate at optimiser step ``step`` (0-based): linear warm-up, then cosine decay to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


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

    def update(self, task, info: str | None = None) -> None:
        """One step done; ``info`` replaces the text beside the bar (None keeps it)."""
        if self.bar is not None and task is not None:
            self.bar.update(task, advance=1, **({} if info is None else {"info": info}))

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
    # one writer per run, and only into a run of dfer's: the main process holds the run's
    # lock from here to the end (a folder of the user's is not touched, not even by the lock)
    with (exclusive_folder(run_dir, "dfer train", RUN_KIND, is_earlier_run) if info.is_main
          else contextlib.nullcontext()):
        barrier(info)
        return _train(cfg, info, device, run_dir, restart, stop_after_epochs)


@dataclass
class _Run:
    """What one training run holds while it trains: set up by :func:`_set_up`, then
    advanced by :func:`train_one_epoch` and :func:`_validate_and_checkpoint`."""

    cfg: RunConfig
    info: DistInfo
    device: torch.device
    run_dir: Path
    splits: Splits
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None  # None: fp32
    mixer: BatchMixer | None
    robust: RobustLearner | None
    loader: torch.utils.data.DataLoader
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    config_hash: str
    writer: Any = None
    step: int = 0
    best: float = -1.0

    @property
    def last_path(self) -> Path:
        return checkpoint_path(self.run_dir, "last")

    def lr(self, step: int) -> float:
        o = self.cfg.optim
        return lr_at(step, self.total_steps, o.lr, self.warmup_steps, o.schedule)


def _train(cfg: RunConfig, info: DistInfo, device: torch.device, run_dir: Path, restart: bool,
           stop_after_epochs: int | None) -> Path:
    refuse_folders_in_the_way(run_dir, RUN_FILES + evaluation_files(), "dfer train")
    resume_meta = _resume_meta(cfg, run_dir, restart)
    if resume_meta is not None and resume_meta.get("finished") is True and (run_dir / RESULTS_FILE).exists():
        if info.is_main:
            print(f"{run_dir}: already finished; nothing to do")
        return run_dir
    run, start_epoch = _set_up(cfg, info, device, run_dir, resume_meta)
    progress = _Progress(cfg.progress and info.is_main)
    try:
        for epoch in range(start_epoch, cfg.optim.epochs):
            if stop_after_epochs is not None and epoch - start_epoch >= stop_after_epochs:
                return run_dir
            row = train_one_epoch(run, epoch, progress)
            _validate_and_checkpoint(run, epoch, row)
            barrier(info)
    finally:
        progress.close()
        if run.writer is not None:
            run.writer.close()

    results = evaluate_model(run.model, run.splits.test, cfg, device, dist_info=info, run_dir=run_dir)
    if info.is_main:
        mark_finished(run.last_path)
        print(f"{run_dir}: test UAR {_pct(results['uar'])} WAR {_pct(results['war'])} "
              f"({results['num_clips']} clips)")
    barrier(info)
    return run_dir


def _precision(cfg: RunConfig, info: DistInfo, device: torch.device, model: torch.nn.Module, run_dir: Path,
               resuming: bool, num_classes: int) -> Precision:
    """The run's precision: read back when resuming, else chosen (measured under ``auto`` on
    the CPU, by the main process for all) and recorded in the run (:mod:`dfer.precision`)."""
    if resuming:
        return read_record(run_dir, device)
    chosen = [None]
    if info.is_main:
        shape = (cfg.optim.batch_size // info.world_size, cfg.data.num_frames, 3, cfg.data.size, cfg.data.size)
        chosen[0] = choose_precision(cfg.optim.precision, model, device, shape, num_classes)
        write_record(run_dir, chosen[0])
        if chosen[0].how == "measured":
            times = ", ".join(f"{k} {v:.3f} s" for k, v in chosen[0].seconds_per_step.items())
            layout = ", channels-last weights" if chosen[0].channels_last else ""
            print(f"{run_dir}: precision {chosen[0].name}{layout} (measured a training step: {times})")
    if info.enabled:
        torch.distributed.broadcast_object_list(chosen, src=0)
    return chosen[0]


def _resume_meta(cfg: RunConfig, run_dir: Path, restart: bool) -> dict | None:
    """The state of the run's last checkpoint to resume from (None: start afresh); a
    checkpoint of another config is refused."""
    last_path = checkpoint_path(run_dir, "last")
    if not last_path.exists() or restart:
        return None
    meta = load_checkpoint_meta(last_path)
    chash = config_hash(cfg)
    if meta.get("config_hash") != chash:
        # checkpoints record their config: one saved before a setting was added still matches
        same, why = False, ""
        if isinstance(meta.get("config"), dict):
            try:
                same = config_hash(saved_config(meta["config"])) == chash
            except ConfigError as e:
                why = f" (its saved config no longer reads: {e})"
        if not same:
            raise ConfigError(f"{run_dir} holds a run with a different config{why}; use another name, or "
                              f"--restart to overwrite it")
    return meta


def _set_up(cfg: RunConfig, info: DistInfo, device: torch.device, run_dir: Path,
            resume_meta: dict | None) -> tuple[_Run, int]:
    """Splits, model, optimiser, AMP, mixer, RDFER and loader of a run, restored from its
    checkpoint when resuming; (the run, the first epoch to train)."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    splits = build_splits(cfg, run_dir)  # every label decided, every clip checked: nothing written yet
    if info.is_main:
        _write_run_files(cfg, splits, run_dir)
    if cfg.optim.batch_size % info.world_size:
        raise ConfigError(f"optim.batch_size={cfg.optim.batch_size} (the global batch) must be divisible by the "
                          f"{info.world_size} processes")
    num_classes = len(splits.classes)
    # RDFER: clip agreement -> per-sample weights / corrected labels, key-expression sampling
    robust = RobustLearner(cfg.robust, splits.train, num_classes=num_classes, seed=cfg.seed) \
        if cfg.robust.enabled else None
    train_set = make_dataset(splits.train, cfg, train=True,
                             sampler=robust.train_sampler(cfg) if robust is not None else None)
    if len(train_set) < cfg.optim.batch_size:
        raise ConfigError(f"the training clips ({len(train_set)}) are fewer than optim.batch_size="
                          f"{cfg.optim.batch_size}: an epoch would make no optimiser step (a partial last batch is "
                          f"dropped); lower optim.batch_size")

    model = create_model(cfg.model.name, num_classes=num_classes, pretrained=cfg.model.pretrained,
                         dropout=cfg.model.dropout, **cfg.model.kwargs)
    if cfg.model.pretrained_classifier and not load_pretrained_classifier(model, splits.classes,
                                                                          cfg.model.pretrained):
        raise ConfigError(f"model.pretrained_classifier: the run's classes {list(splits.classes)} are not those of "
                          f"model.pretrained={cfg.model.pretrained} in its order (the shipped model's: data.classes: "
                          f"ferplus8), or {cfg.model.name} has no linear classifier of its size")
    model = model.to(device)
    precision = _precision(cfg, info, device, model, run_dir, resume_meta is not None, num_classes)
    if precision.channels_last:
        channels_last(model)
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    amp_dtype = precision.dtype
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    mixer = None
    if cfg.label_mode in MIXING_LABEL_MODES:
        mixer = BatchMixer(cfg.label_mode, cfg.mixing, num_classes=num_classes,
                           generator=cfg.seed * 1000 + info.rank)
    optimizer = _optimizer(cfg, model)

    start_epoch, step, best = 0, 0, -1.0
    last_path = checkpoint_path(run_dir, "last")
    steps_per_epoch = max(1, len(train_set) // cfg.optim.batch_size)
    if resume_meta is not None:
        start_epoch, step, best = resume_point(last_path, resume_meta, cfg.optim.epochs, steps_per_epoch)
        load_checkpoint(last_path, model, optimizer, scaler, mixer, robust=robust)
        if info.is_main:
            print(f"{run_dir}: resuming after epoch {start_epoch}")
    if info.is_main:
        _truncate_metrics(run_dir / METRICS_FILE, start_epoch)
        if robust is not None:  # its rows are kept at the end of the epoch: refuse a damaged file now
            read_robust_log(run_dir / ROBUST_FILE, start_epoch, len(splits.train))
    # each DDP rank takes its slice of the single-process global batches (see the class)
    shard = GlobalBatchShardSampler(len(train_set), cfg.optim.batch_size, info.rank, info.world_size,
                                    seed=cfg.seed, epoch=start_epoch) if info.enabled else None
    loader = build_loader(train_set, cfg.optim.batch_size // info.world_size, shuffle=True,
                          num_workers=cfg.data.num_workers, seed=cfg.seed, epoch=start_epoch, drop_last=True,
                          base=shard)
    run = _Run(cfg, info, device, run_dir, splits, model, optimizer, scaler, amp_dtype, mixer, robust, loader,
               steps_per_epoch, steps_per_epoch * cfg.optim.epochs, int(cfg.optim.warmup_epochs * steps_per_epoch),
               config_hash(cfg), _summary_writer(cfg, info, run_dir, step), step, best)
    return run, start_epoch


def _write_run_files(cfg: RunConfig, splits: Splits, run_dir: Path) -> None:
    """config.yaml, classes.json, and the lists of clips the disk check skipped."""
    dump_config(cfg, run_dir / CONFIG_FILE)
    (run_dir / CLASSES_FILE).write_text(json.dumps(list(splits.classes)))
    for part, report in splits.reports.items():
        if report.skipped:
            path = write_skipped(report, run_dir / f"skipped_{part}_clips.csv")
            print(f"{len(report.skipped)} unreadable {part} clip(s) skipped, listed in {path}", file=sys.stderr)
        if report.differs_id:
            print(f"{len(report.differs_id)} {part} clip(s) have fewer or more frames on disk than listed "
                  f"(e.g. {report.differs_id[:3]}); the disk counts are used", file=sys.stderr)


def _optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW; weight decay on weights only (not on biases and norm parameters)."""
    decay, no_decay = [], []
    for _, p in unwrap(model).named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optim.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.optim.lr)
    return torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov)


def _summary_writer(cfg: RunConfig, info: DistInfo, run_dir: Path, step: int):
    """TensorBoard's writer for the main process when ``cfg.tensorboard`` (else None)."""
    if not (info.is_main and cfg.tensorboard):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency, but stay usable without
        return None
    return SummaryWriter(str(run_dir / "tb"), purge_step=step)


def train_one_epoch(run: _Run, epoch: int, progress: _Progress) -> dict:
    """One pass over the training clips; the epoch's row of ``metrics.csv`` (no validation yet)."""
    cfg, info, model = run.cfg, run.info, run.model
    model.train()
    run.loader.sampler.set_epoch(epoch)  # keys carry the epoch, so persistent workers see it too
    # dropout and mixing draw from streams that are a function of (seed, epoch, rank): ranks
    # draw different masks, and a resumed DDP run (whose checkpoint holds rank 0's
    # generators only) continues every rank exactly
    torch.manual_seed(item_seed(cfg.seed, epoch, info.rank, stream=3))
    if run.mixer is not None:
        run.mixer.generator.manual_seed(item_seed(cfg.seed, epoch, info.rank, stream=4))
    if run.robust is not None:
        run.robust.on_epoch_start(epoch, model, cfg, run.device, dist_info=info)
    task = progress.task(f"epoch {epoch + 1}/{cfg.optim.epochs}", run.steps_per_epoch)
    # the losses add up on the device (in float64, as Python floats would): the host reads
    # them every log_every steps and at the end, so a step never waits for the GPU
    t0, seen, n_loss = time.perf_counter(), 0, 0
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    for batch in run.loader:
        loss, lr = _train_step(run, batch)
        run.step += 1
        seen += batch["clip"].shape[0]
        loss_sum += loss.double()
        n_loss += 1
        if run.step % cfg.log_every == 0:
            mean = _finite_mean(loss_sum, n_loss, epoch, run.step)
            progress.update(task, f"loss {mean:.3f}")
            if run.writer is not None:
                run.writer.add_scalar("train/loss", loss.item(), run.step)
                run.writer.add_scalar("train/lr", lr, run.step)
        else:
            progress.update(task)
    progress.done(task)
    elapsed = time.perf_counter() - t0
    mean = _finite_mean(loss_sum, n_loss, epoch, run.step)
    return {"epoch": epoch + 1, "train_loss": mean_across(mean, info, run.device),
            "lr": run.lr(run.step - 1), "clips_per_s": seen * info.world_size / max(elapsed, 1e-9),
            "epoch_s": elapsed, "val_uar": "", "val_war": ""}


def _finite_mean(loss_sum: torch.Tensor, n: int, epoch: int, step: int) -> float:
    """The epoch's mean loss so far (a host sync); a loss that became inf or NaN is a
    setting to change, in one line."""
    total = loss_sum.item()
    if not math.isfinite(total):
        raise ConfigError(f"the training loss became {total} in epoch {epoch + 1} (by step {step}); lower "
                          f"optim.lr (or set optim.grad_clip), or check the inputs")
    return total / max(1, n)


def _train_step(run: _Run, batch: dict) -> tuple[torch.Tensor, float]:
    """One optimiser step on a batch: labels (RDFER's corrections, mixing), forward under
    autocast, loss, backward, clipping, update; (the detached loss, on the device, and the
    learning rate). Nothing in it waits for the device."""
    device, cfg = run.device, run.cfg
    clip = to_model_input(batch["clip"], device)
    soft = batch["soft_label"].to(device, non_blocking=True)
    label = batch["label"].to(device, non_blocking=True)
    lr = run.lr(run.step)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    weight = None
    if run.robust is not None:
        soft, label, weight = run.robust.adjust(batch["index"].to(device), soft, label)
    if run.mixer is not None:
        mixed = run.mixer(clip, soft, label)
        clip, target = mixed.clip, mixed.target
        if weight is not None:  # a mixed clip weighs what its two sources weigh, by λ
            weight = mixed.lam * weight + (1 - mixed.lam) * weight[mixed.partner]
    else:  # hard: one-hot rows (DataError naming the batch positions without a label); soft: as they are
        target = batch_targets(cfg.label_mode, soft, label, len(run.splits.classes))
    with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        logits = run.model(clip)
    loss = soft_target_cross_entropy(logits.float(), target, weight=weight)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if cfg.optim.grad_clip:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return loss.detach(), lr


def _validate_and_checkpoint(run: _Run, epoch: int, row: dict) -> None:
    """Validate when due (a better one is saved as ``best``), then write the epoch's row
    and the ``last`` checkpoint."""
    cfg, info, splits, writer = run.cfg, run.info, run.splits, run.writer
    is_last = epoch + 1 == cfg.optim.epochs
    if splits.val is not None and ((epoch + 1) % cfg.eval.every == 0 or is_last):
        probs = predict_table(run.model, splits.val, cfg, run.device, dist_info=info)
        if info.is_main:
            s = summarise(probs, splits.val.label.astype(np.int64), splits.classes)
            row["val_uar"], row["val_war"] = s["uar"], s["war"]
            if writer is not None:
                writer.add_scalar("val/uar", s["uar"] or 0.0, run.step)
                writer.add_scalar("val/war", s["war"] or 0.0, run.step)
            if cfg.eval.select == "best_val" and (s["uar"] or 0.0) > run.best:
                run.best = s["uar"] or 0.0
                save_checkpoint(checkpoint_path(run.run_dir, "best"), run.model, run.optimizer, run.scaler, run.mixer,
                                {"epoch": epoch + 1, "step": run.step, "config_hash": run.config_hash,
                                 "val_uar": run.best})
    if not info.is_main:
        return
    _append_metrics(run.run_dir / METRICS_FILE, row)
    if writer is not None:
        writer.add_scalar("train/epoch_loss", row["train_loss"], epoch + 1)
        writer.add_scalar("train/clips_per_s", row["clips_per_s"], epoch + 1)
        writer.flush()
    if run.robust is not None:
        run.robust.on_epoch_end(epoch, run.run_dir)
    save_checkpoint(run.last_path, run.model, run.optimizer, run.scaler, run.mixer,
                    {"epoch": epoch + 1, "step": run.step, "config_hash": run.config_hash, "best": run.best,
                     "finished": False, "config": to_dict(cfg)}, robust=run.robust)
    if not (cfg.progress and sys.stderr.isatty()):
        val = f" val UAR {row['val_uar']:.3f}" if row["val_uar"] != "" else ""
        print(f"epoch {epoch + 1}/{cfg.optim.epochs} loss {row['train_loss']:.4f} "
              f"{row['clips_per_s']:.1f} clips/s{val}", file=sys.stderr, flush=True)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


_METRIC_FIELDS = ["epoch", "train_loss", "val_uar", "val_war", "lr", "clips_per_s", "epoch_s"]


def _append_metrics(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_METRIC_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in _METRIC_FIELDS})


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop the rows of epochs after the checkpoint (written before an interruption).

    The rows of the epochs done are kept as they are, so they must be dfer's own
    (:func:`dfer.rundir.read_epoch_log` refuses any other file in one line naming its line,
    and it is never replaced).
    """
    if not os.path.lexists(path):
        return
    if epochs_done == 0:  # no epoch done: no row to keep
        with atomic_path(path) as tmp:
            tmp.write_text(",".join(_METRIC_FIELDS) + "\r\n", encoding="utf-8")
        return
    header, kept, more = read_epoch_log(path, _METRIC_FIELDS, epochs_done)
    if more:
        with atomic_path(path) as tmp:
            tmp.write_bytes(header + b"".join(kept))


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
        shutdown()
    return 0
