"""Hard / soft / MIDAS / midas-hard / mixup on real votes: FER+ Valid, several seeds.

Every row trains dfer's still-face recipe (``configs/ferplus/still_face.yaml``) with one
label mode (and, for MIDAS, one normalisation of the mixed label: none, softmax at tau = 1,
softmax at tau = 1/10; the rows of ``benchmarks/label_modes.py``), in one budget, and is
scored on FER+ Valid by :func:`still_face_baseline.score` (accuracy against the majority
vote with ties to the first class, UAR, mean KL(votes || p), ECE). The Test split is never
read.

The budget is chosen for mixing to have a chance on two CPU cores: mixing is a
regulariser, which pays when a model sees its images many times and begins to fit them, so
each run trains for ``--epochs`` on a seeded, class-stratified ``--fraction`` of FER+ Train
(the same subset for every row and seed) at ``--size`` px, with a smaller batch than the
recipe's so that the budget holds enough optimiser steps. Valid is whole.

Runs are jobs ``(row, seed)``. Several processes may share one ``--out``: each claims the
next unclaimed job (an exclusive claim file; a claim whose process has died is taken over),
so a second process started later shares the rest of the work; jobs go seed by seed (every
row's first seed, then every row's second). A finished job's ``jobs/<key>.json`` is reused
when its settings match. Each process, when it runs out of jobs, prints one JSON object
(per row: each finished seed's figures, their mean and standard deviation; ``complete``
and ``missing`` say whether any job is still running) and writes it to
``OUT/ferplus_label_modes.json``::

    .venv/bin/python benchmarks/ferplus_label_modes.py --out runs/flm --threads 1 &
    .venv/bin/python benchmarks/ferplus_label_modes.py --out runs/flm --threads 1     # a second core
    .venv/bin/python benchmarks/ferplus_label_modes.py --out /tmp/flm_smoke --fraction 0.02 --epochs 1 --rows hard soft
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_modes import ROWS  # noqa: E402  (the benchmarks folder is not a package)
from still_face_baseline import (  # noqa: E402
    DEFAULT_ROOT, SPLITS, _write, dfer_arm, ferplus_root, read_split, score)

def job_key(mode: str, mixing: dict, seed: int) -> str:
    return f"{mode}_{'_'.join(f'{k}{v}' for k, v in mixing.items()) or 'default'}_seed{seed}"


def row_overrides(mode: str, mixing: dict) -> tuple[str, ...]:
    return (f"label_mode={mode}", *(f"mixing.{k}={v}" for k, v in mixing.items()))


def _majority(row: list[str]) -> int:
    votes = [int(c) for c in row[2:12]]
    return int(np.argmax(votes))


def subset_root(root: Path, out: Path, fraction: float, seed: int) -> Path:
    """A FER+ folder under ``out``: a class-stratified ``fraction`` of Train's rows (drawn with
    ``seed``, kept in their order) and all of Valid, as links to ``root``'s images."""
    sub = out / f"ferplus_train{fraction:g}_seed{seed}"
    rng = np.random.default_rng(seed)
    for split, folder in SPLITS.items():
        with open(root / folder / "label.csv", newline="") as f:
            rows = [r for r in csv.reader(f) if r]
        keep = np.ones(len(rows), bool)
        if split == "train" and fraction < 1:
            keep[:] = False
            major = np.array([_majority(r) for r in rows])
            for c in np.unique(major):
                members = np.flatnonzero(major == c)
                take = max(1, round(len(members) * fraction))
                keep[rng.choice(members, take, replace=False)] = True
        (sub / folder).mkdir(parents=True, exist_ok=True)
        kept = [r for r, k in zip(rows, keep) if k]
        for r in kept:
            link = sub / folder / r[0].strip()
            if not link.is_symlink():
                link.symlink_to((root / folder / r[0].strip()).resolve())
        tmp = sub / folder / f".label.csv.{os.getpid()}"
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)
        tmp.replace(sub / folder / "label.csv")
    return sub


def _claim(path: Path) -> bool:
    """Claim a job by creating ``path`` exclusively; a claim left by a dead process is taken over."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(path.read_text() or 0)
            os.kill(pid, 0)
            return False
        except (ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)
            return _claim(path)
        except PermissionError:
            return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _saved(path: Path, settings: dict) -> dict | None:
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return saved if saved.get("settings") == settings else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"FER+ folder (default {DEFAULT_ROOT})")
    p.add_argument("--out", type=Path, default=Path("/tmp/dfer_ferplus_label_modes"))
    p.add_argument("--fraction", type=float, default=0.1, help="stratified share of FER+ Train to train on")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--size", type=int, default=48, help="input side (the recipe's is 64)")
    p.add_argument("--batch-size", type=int, default=32, help="(the recipe's is 128)")
    p.add_argument("--lr", type=float, default=0.025, help="SGD's peak learning rate (the recipe's is 0.05)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--rows", nargs="+", choices=sorted({name.split(" (")[0] for name, _, _ in ROWS}),
                   help="label modes to run (default: every row)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    if not 0 < a.fraction <= 1 or a.epochs < 1 or a.threads < 1 or a.size < 16:
        p.error("--fraction must be in (0, 1], --epochs and --threads >= 1, --size >= 16")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if (root := ferplus_root(a.root)) is None:
        return 2
    (a.out / "jobs").mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(a.threads)
    data = subset_root(root, a.out, a.fraction, a.subset_seed)
    names, _, votes = read_split(data / SPLITS["val"])
    ids = [f"{SPLITS['val']}/{n}" for n in names]
    budget = {"root": str(root), "fraction": a.fraction, "subset_seed": a.subset_seed, "epochs": a.epochs,
              "size": a.size, "batch_size": a.batch_size, "lr": a.lr}
    rows = [(name, mode, mixing) for name, mode, mixing in ROWS if a.rows is None or name.split(" (")[0] in a.rows]
    # seed by seed: every row has its first seed before any has its second
    jobs = [(label, mode, mixing, seed) for seed in a.seeds for label, mode, mixing in rows]
    for label, mode, mixing, seed in jobs:
        key = job_key(mode, mixing, seed)
        result, claim = a.out / "jobs" / f"{key}.json", a.out / "jobs" / f"{key}.claim"
        settings = {**budget, "label_mode": mode, "mixing": mixing, "seed": seed}
        if _saved(result, settings) or not _claim(claim):
            continue
        try:
            ns = argparse.Namespace(epochs=a.epochs, seed=seed, threads=a.threads, device=a.device,
                                    num_workers=a.num_workers)
            extra = (f"data.size={a.size}", f"optim.batch_size={a.batch_size}", f"optim.lr={a.lr}",
                     *row_overrides(mode, mixing))
            by_id, info = dfer_arm(data, a.out / "runs" / key, ns, extra)
            lost = [i for i in ids if i not in by_id]
            if lost:
                print(f"{key}: dfer's Valid table lacks {len(lost)} image(s), e.g. {lost[:3]}", file=sys.stderr)
                return 1
            figures = score(np.stack([by_id[i] for i in ids]), votes)
            _write(result, {"settings": settings, "row": label, **figures, **info})
            print(json.dumps({"job": key, **figures, "train_seconds": round(info["train_seconds"])}),
                  file=sys.stderr, flush=True)
        finally:
            claim.unlink(missing_ok=True)
    report_rows, missing = [], []
    for label, mode, mixing in rows:
        done, seeds = [], []
        for seed in a.seeds:
            key = job_key(mode, mixing, seed)
            saved = _saved(a.out / "jobs" / f"{key}.json", {**budget, "label_mode": mode, "mixing": mixing,
                                                             "seed": seed})
            if saved is None:
                missing.append(key)
            else:
                done.append(saved)
                seeds.append(seed)
        if not done:
            continue
        entry = {"row": label, "label_mode": mode, **mixing, "seeds": seeds,
                 "train_images": done[0]["train_images"], "train_seconds": [round(d["train_seconds"]) for d in done]}
        for m in ("accuracy", "uar", "kl", "ece"):
            v = np.array([d[m] for d in done])
            entry[m] = v.tolist()
            entry[f"{m}_mean"], entry[f"{m}_sd"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
        report_rows.append(entry)
    if missing:  # another process may still be running them; the report says what it lacks
        print(f"not finished yet: {', '.join(missing)}", file=sys.stderr)
    report = {"benchmark": "ferplus_label_modes", "measured_on": SPLITS["val"], "num_images": len(ids),
              **budget, "complete": not missing, "missing": missing, "rows": report_rows}
    _write(a.out / "ferplus_label_modes.json", report)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
