"""Evaluation: probabilities for every test clip, metrics, and the run's ``results.json``.

With ``eval.num_clips > 1`` each video is seen as several clips (offsets spread over its
segments) whose class probabilities are averaged; ``results.json`` then holds clip-level
and video-level metrics separately. Metrics are computed from the confusion matrix
(:mod:`dfer.metrics`): UAR over the classes present in the test set, WAR, per-class
recall, KL / JS to the annotator vote distribution, expected calibration error, and the
same split by ambiguity (clear: max soft label > 0.9, mixed: the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from dfer.config import RunConfig, load_config
from dfer.data.table import ClipTable
from dfer.errors import ConfigError


@torch.no_grad()
def predict_table(model, table: ClipTable, cfg: RunConfig, device, *, dist_info=None,
                  num_clips: int | None = None) -> np.ndarray:
    """(N, C) float64 class probabilities for every clip of ``table`` (video level: the
    mean over ``num_clips`` clips per video). In a distributed run each process predicts a
    shard and every process returns the whole array."""
    from dfer.data.dataset import build_loader
    from dfer.train import make_dataset

    num_clips = num_clips or cfg.eval.num_clips
    enabled = dist_info is not None and dist_info.enabled
    rank, world = (dist_info.rank, dist_info.world_size) if enabled else (0, 1)
    shard = np.arange(rank, len(table), world)
    ds = make_dataset(table.take(shard) if enabled else table, cfg, train=False, num_clips=num_clips)
    loader = build_loader(ds, cfg.eval.batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                          seed=cfg.seed, epoch=0, drop_last=False)
    if enabled:
        # Shards differ in length, so the DDP wrapper (whose forward may sync buffers, a
        # collective) is bypassed; every rank evaluates rank 0's weights and BatchNorm
        # statistics, the ones the checkpoint holds (after a training step a rank keeps the
        # running statistics of its own last batch).
        model = model.module if hasattr(model, "module") else model
        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)
    was_training = model.training
    model.eval()
    use_amp = cfg.optim.amp and device.type == "cuda"
    out_idx, out_p = [], []
    for batch in loader:
        clip = batch["clip"].to(device, non_blocking=True)
        B = clip.shape[0]
        if clip.ndim == 6:  # (B, K, T, C, H, W): K clips per video
            K = clip.shape[1]
            clip = clip.flatten(0, 1)
        else:
            K = 1
        with torch.autocast(device.type, enabled=use_amp):
            logits = model(clip)
        p = torch.softmax(logits.float(), dim=-1).view(B, K, -1).mean(1)
        out_p.append(p.cpu().double().numpy())
        out_idx.append(shard[batch["index"].numpy()])
    model.train(was_training)
    C = len(table.classes)
    probs = np.concatenate(out_p) if out_p else np.zeros((0, C))
    idx = np.concatenate(out_idx) if out_idx else np.zeros(0, np.int64)
    if enabled:
        gathered = [None] * world
        dist.all_gather_object(gathered, (idx, probs))
        idx = np.concatenate([g[0] for g in gathered])
        probs = np.concatenate([g[1] for g in gathered])
    full = np.full((len(table), C), np.nan)
    full[idx] = probs
    if np.isnan(full).any():
        raise RuntimeError("evaluation missed some clips")  # a bug, not user data
    return full


def evaluate_model(model, table: ClipTable, cfg: RunConfig, device, *, dist_info=None,
                   run_dir: Path | None = None, tag: str = "") -> dict:
    """Predict ``table``, compute every metric, write results(.tag).json, confusion(.tag).png
    and predictions(.tag).csv into ``run_dir`` (main process only). Returns the results."""
    from dfer.metrics import clear_mask, summarise

    t0 = time.perf_counter()
    probs = predict_table(model, table, cfg, device, dist_info=dist_info)
    seconds = time.perf_counter() - t0
    if dist_info is not None and not dist_info.is_main:
        return {}
    labels = table.hard_labels()
    has_votes = table.has_votes
    soft = table.soft_labels() if (has_votes.all() or (table.label >= 0).all()) else None
    results = summarise(probs, labels, table.classes, soft_labels=soft, has_votes=has_votes)
    results["num_clips_per_video"] = cfg.eval.num_clips
    results["eval_seconds"] = seconds
    if soft is not None and has_votes.any():
        clear = clear_mask(soft)
        results["by_ambiguity"] = {
            "clear": summarise(probs[clear], labels[clear], table.classes, soft_labels=soft[clear],
                               has_votes=has_votes[clear]),
            "mixed": summarise(probs[~clear], labels[~clear], table.classes, soft_labels=soft[~clear],
                               has_votes=has_votes[~clear]),
        }
    results.update(_against_synthetic_truth(table, probs))
    results["classes"] = list(table.classes)
    if run_dir is not None:
        run_dir = Path(run_dir)
        suffix = f".{tag}" if tag else ""
        _write_json(run_dir / f"results{suffix}.json", results)
        _write_predictions(run_dir / f"predictions{suffix}.csv", table, probs)
        from dfer.plots import plot_confusion

        plot_confusion(np.asarray(results["confusion_matrix"]), table.classes, run_dir / f"confusion{suffix}.png")
    return results


def _against_synthetic_truth(table: ClipTable, probs: np.ndarray) -> dict:
    """On a synthetic corpus (its side file holds the true expression mixtures): KL from the
    true mixture to the prediction, and UAR/WAR against the true principal emotion."""
    from dfer.data.corpora.synthetic import TRUTH_FILE, read_truth
    from dfer.emotions import BASIC7
    from dfer.metrics import confusion_matrix, kl_divergence, uar, war

    root = table.meta.get("root")
    if not root or not (Path(root) / TRUTH_FILE).is_file() or set(table.classes) != set(BASIC7):
        return {}
    truth = read_truth(root)
    row = {str(v): i for i, v in enumerate(truth["video_name"])}
    idx = np.array([row.get(str(c).split("#")[0], -1) for c in table.clip_id])
    if (idx < 0).any():
        return {}
    order = [BASIC7.index(c) for c in table.classes]
    mixture = truth["mixture"][idx][:, order]
    true = np.array([table.classes.index(BASIC7[t]) for t in truth["true_label"][idx]])
    cm = confusion_matrix(true, probs.argmax(1), len(table.classes))
    return {"kl_to_truth": float(np.mean(kl_divergence(mixture, probs))),
            "uar_true_emotion": uar(cm), "war_true_emotion": war(cm)}


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_jsonable, allow_nan=False))
    os.replace(tmp, path)


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def _write_predictions(path: Path, table: ClipTable, probs: np.ndarray) -> None:
    import csv

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip_id", "label", "pred", *table.classes])
        labels = table.hard_labels()
        for cid, lab, p in zip(table.clip_id, labels, probs):
            w.writerow([cid, table.classes[lab] if lab >= 0 else "", table.classes[int(p.argmax())],
                        *(f"{x:.6f}" for x in p)])
    os.replace(tmp, path)


# ---------------------------------------------------------------------- runs on disk


def load_run(run_dir: str | Path, *, which: str | None = None, device: str | torch.device = "cpu"):
    """(model in eval mode, config, classes) of a finished or interrupted run.

    ``which`` is ``last`` or ``best`` (default: what the run's ``eval.select`` chose).
    """
    from dfer.models import create_model
    from dfer.train import load_checkpoint

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} is not a dfer run directory (no config.yaml)")
    cfg = load_config(cfg_path)
    if not (run_dir / "classes.json").is_file():
        raise ConfigError(f"{run_dir}: no classes.json; the run never started training")
    classes = tuple(json.loads((run_dir / "classes.json").read_text()))
    which = which or ("best" if cfg.eval.select == "best_val" else "last")
    ckpt = run_dir / "checkpoints" / f"{which}.safetensors"
    if not ckpt.is_file():
        raise ConfigError(f"{run_dir}: no checkpoint {ckpt.name}")
    model = create_model(cfg.model.name, num_classes=len(classes), pretrained=False,
                         dropout=cfg.model.dropout, **cfg.model.kwargs)
    rng = torch.get_rng_state()
    load_checkpoint(ckpt, model)
    torch.set_rng_state(rng)  # loading must not disturb the caller's random stream
    return model.to(device).eval(), cfg, classes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory written by dfer train")
    p.add_argument("--checkpoint", choices=["last", "best"], help="default: the run's own selection rule")
    p.add_argument("--num-clips", type=int, help="clips per video (default: the run's eval.num_clips)")
    p.add_argument("--source", help="evaluate on another corpus: KIND:ROOT (e.g. afew:/data/AFEW)")
    p.add_argument("--split", default=None, help="split of --source to use (default test; AFEW: val)")
    p.add_argument("--fold", type=int, default=None, help="fold of --source to use as test set")
    p.add_argument("--tag", default="", help="suffix for the written files (results.TAG.json)")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from dfer.config import SourceConfig
    from dfer.train import build_splits, init_distributed, load_source_table

    model, cfg, classes = load_run(args.run, which=args.checkpoint)
    info, device = init_distributed(args.device)  # under torchrun the clips are sharded over the ranks
    model = model.to(device)
    if args.num_clips:
        cfg.eval.num_clips = args.num_clips
    if args.source:
        kind, _, root = args.source.partition(":")
        if not root:
            raise ConfigError(f"--source must be KIND:ROOT, got {args.source!r}")
        src = SourceConfig(kind=kind, root=root, fold=args.fold)
        table = load_source_table(src, classes)
        table = table.fold_split(args.fold)[1] if args.fold is not None else table.split_part(
            args.split or ("val" if kind == "afew" else "test"))
        tag = args.tag or kind
    else:
        table = build_splits(cfg).test
        tag = args.tag
    try:
        res = evaluate_model(model, table, cfg, device, dist_info=info, run_dir=Path(args.run), tag=tag)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if not info.is_main:
        return 0
    print(f"{args.run}: UAR {100 * (res['uar'] or 0):.2f}% WAR {100 * (res['war'] or 0):.2f}% "
          f"on {res['num_clips']} clips" + (f" (results.{tag}.json)" if tag else ""))
    return 0
