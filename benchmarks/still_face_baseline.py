"""A naive PyTorch loop against dfer's still-face recipe on FER+, in the same budget.

Both train on FER+ Train and are measured on FER+ Valid (the Test split is held out):

(a) **naive**: the plain loop anyone would write first (:func:`naive_arm`, plain PyTorch,
    no dfer code): torchvision ``resnet18(num_classes=8)`` from scratch on the 48-px grey
    faces stacked into three channels, pad-4 random crop + horizontal flip, ImageNet
    normalisation, SGD (nesterov, lr 0.05, momentum 0.9, weight decay 5e-4 on every
    parameter) under ``OneCycleLR`` with 15 % warm-up (PyTorch's defaults otherwise, so
    momentum cycles 0.85-0.95), batch 128, cross-entropy on the majority vote (ties to the
    first class in FER+'s column order), images whose majority is ``unknown``/``NF`` dropped;
(b) **dfer**: :func:`dfer.train.train` on ``configs/ferplus/still_face.yaml`` with
    ``optim.epochs`` set to the same budget, ``data.source.test_split=val`` (Test is held
    out) and ``data.source.val_split=null`` (with ``eval.select: last`` the per-epoch
    validation chooses nothing; it would only evaluate Valid once more per epoch).

Both arms are scored by one function, :func:`score`, on the Valid votes read by this
script: accuracy against the majority vote (ties to the first class), UAR, mean
KL(votes || p) and ECE (:mod:`dfer.metrics`); the dfer arm's probabilities are those of its
final checkpoint, predicted as ``dfer evaluate`` does. Prints one JSON object and writes it
to ``OUT/still_face_baseline.json``::

    .venv/bin/python benchmarks/still_face_baseline.py --out /tmp/still_face [--epochs 3 --threads 2]
    .venv/bin/python benchmarks/still_face_baseline.py --out /tmp/sf_smoke --limit 256 --epochs 1 --threads 1

``train_seconds`` is each arm's whole training call, its pass over Valid included (for
dfer also reading and checking the corpus); ``eval_seconds`` (dfer) is the second pass that
yields the probabilities scored here. Each arm also writes ``OUT/<arm>.json`` with its
settings; a rerun with the same settings reads it instead of training again (``"reused":
true``). ``--limit N`` keeps the first N rows of each split's ``label.csv`` (a folder of
links under OUT), for smoke runs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "ferplus" / "still_face.yaml"
DEFAULT_ROOT = REPO.parent / "shared" / "ferplus"
SPLITS = {"train": "FER2013Train", "val": "FER2013Valid"}  # FER2013Test is never read


# ---------------------------------------------------------------------- FER+ as the naive loop reads it
def read_split(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, grey images uint8 (N, 48, 48), emotion votes float64 (N, 8)) of one FER+ folder;
    images whose most votes (first of ties) go to ``unknown`` or ``NF`` are dropped."""
    from PIL import Image

    names, votes = [], []
    with open(folder / "label.csv", newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            v = [int(c) for c in row[2:12]]
            if int(np.argmax(v)) < 8:
                names.append(row[0].strip())
                votes.append(v[:8])
    images = []
    for n in names:
        with Image.open(folder / n) as img:
            images.append(np.asarray(img.convert("L")))
    return names, np.stack(images), np.asarray(votes, np.float64).reshape(-1, 8)


def limited_root(root: Path, out: Path, limit: int) -> Path:
    """A FER+ folder under ``out`` holding the first ``limit`` rows of Train and of Valid (links)."""
    sub = out / f"ferplus_first{limit}"
    for folder in SPLITS.values():
        (sub / folder).mkdir(parents=True, exist_ok=True)
        lines = [ln for ln in (root / folder / "label.csv").read_text().splitlines() if ln.strip()][:limit]
        for ln in lines:
            name = next(csv.reader([ln]))[0].strip()
            link = sub / folder / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to((root / folder / name).resolve())
        (sub / folder / "label.csv").write_text("\n".join(lines) + "\n")
    return sub


# ---------------------------------------------------------------------- one measurement for both arms
def score(probs: np.ndarray, votes: np.ndarray) -> dict:
    """Accuracy vs the majority vote (ties to the first class), UAR, mean KL(votes || p), ECE.

    Args:
        probs: (N, 8) float predicted probabilities, FER+'s class order.
        votes: (N, 8) emotion vote counts, the same order.
    """
    from dfer.metrics import confusion_matrix, expected_calibration_error, kl_divergence, uar, war

    label = votes.argmax(axis=1)  # numpy's argmax takes the first of tied maxima
    cm = confusion_matrix(label, probs.argmax(axis=1), votes.shape[1])
    return {"accuracy": war(cm), "uar": uar(cm),
            "kl": float(kl_divergence(votes / votes.sum(axis=1, keepdims=True), probs).mean()),
            "ece": expected_calibration_error(probs, label), "num_images": int(len(label))}


# ---------------------------------------------------------------------- (a) the naive loop
def naive_arm(train: tuple, valid: tuple, *, epochs: int, seed: int, device: str) -> np.ndarray:
    """Train the plain loop on ``train`` and return its (N, 8) float64 probabilities on ``valid``.

    ``train`` / ``valid`` are :func:`read_split` results. Randomness: the model's
    initialisation from ``torch.manual_seed(seed)``, order and augmentation from one
    ``torch.Generator`` seeded with ``seed``.
    """
    import torchvision
    from torch.nn import functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    images, labels = torch.from_numpy(train[1]), torch.from_numpy(train[2].argmax(axis=1))
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)

    def prepare(x: torch.Tensor) -> torch.Tensor:  # uint8 (B, 48, 48) -> normalised float (B, 3, 48, 48)
        return (x.to(device).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1) - mean) / std

    model = torchvision.models.resnet18(num_classes=8).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batch, side = 128, images.shape[-1]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, pct_start=0.15,
                                                total_steps=epochs * math.ceil(len(images) / batch))
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(images), generator=gen).split(batch):
            padded = F.pad(images[idx], (4, 4, 4, 4))  # zeros around the face
            top, left = torch.randint(0, 9, (2, len(idx)), generator=gen)
            x = torch.stack([p[t:t + side, s:s + side] for p, t, s in zip(padded, top.tolist(), left.tolist())])
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip.view(-1, 1, 1), x.flip(-1), x)
            loss = F.cross_entropy(model(prepare(x)), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        out = [torch.softmax(model(prepare(x)).double(), dim=1).cpu() for x in torch.from_numpy(valid[1]).split(512)]
    return torch.cat(out).numpy()


# ---------------------------------------------------------------------- (b) dfer's recipe
def dfer_overrides(root: Path, a: argparse.Namespace, extra: tuple[str, ...] = ()) -> list[str]:
    """The recipe's overrides for a run on ``root`` (Valid as its test split), then ``extra``."""
    ov = [f"data.source.root={root}", "data.source.options={splits: [train, val]}", "data.source.test_split=val",
          "data.source.val_split=null", f"optim.epochs={a.epochs}", f"seed={a.seed}", f"threads={a.threads}",
          f"device={a.device}", "tensorboard=false", "progress=false"]
    if a.num_workers is not None:
        ov.append(f"data.num_workers={a.num_workers}")
    return ov + list(extra)


def dfer_arm(root: Path, run_dir: Path, a: argparse.Namespace,
             extra: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray], dict]:
    """Train dfer's recipe (then the overrides ``extra``); ({clip id: probabilities on Valid},
    what to report of the run)."""
    from dfer.config import load_config
    from dfer.emotions import FERPLUS8
    from dfer.rundir import load_run
    from dfer.evaluate import predict_table
    from dfer.data.splits import build_splits
    from dfer.train import train

    overrides = dfer_overrides(root, a, extra)
    cfg = load_config(RECIPE, overrides)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only
        train(cfg, run_dir=run_dir, restart=True)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model, cfg, classes = load_run(run_dir, which="last", device=a.device)
    if tuple(classes) != FERPLUS8:
        raise SystemExit(f"{run_dir}: classes {classes} are not FER+'s column order {FERPLUS8}")
    splits = build_splits(cfg, run_dir)
    probs = predict_table(model, splits.test, cfg, torch.device(a.device))
    return dict(zip(splits.test.clip_id.tolist(), probs)), {
        "train_seconds": train_s, "eval_seconds": time.perf_counter() - t0, "train_images": len(splits.train),
        "run_dir": str(run_dir), "recipe": str(RECIPE.relative_to(REPO)), "overrides": overrides}


# ---------------------------------------------------------------------- driver
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"FER+ folder (default {DEFAULT_ROOT})")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads for both arms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="use the first N rows of Train and of Valid (0: all)")
    p.add_argument("--num-workers", type=int, default=None, help="dfer's loader workers (default: the recipe's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N], for both arms")
    p.add_argument("--out", type=Path, default=Path("/tmp/dfer_still_face_baseline"))
    p.add_argument("--only", choices=["naive", "dfer"], help="run one arm")
    p.add_argument("--dfer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="an override of dfer's recipe after the benchmark's own (repeatable), e.g. "
                        "optim.warmup_epochs=0.45")
    a = p.parse_args(argv)
    if a.epochs < 1 or a.threads < 1 or a.limit < 0:
        p.error("--epochs and --threads must be >= 1, --limit >= 0")
    return a


def _write(path: Path, obj: dict) -> None:
    from dfer.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")


def ferplus_root(root: Path) -> Path | None:
    """``root`` resolved, or None (after one line on stderr) when it lacks FER+'s Train or Valid."""
    root = root.resolve()
    missing = [f for f in SPLITS.values() if not (root / f / "label.csv").is_file()]
    if missing:
        print(f"{root}: no {' or '.join(f + '/label.csv' for f in missing)} (expected FER+'s folders)", file=sys.stderr)
        return None
    return root


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if (root := ferplus_root(a.root)) is None:
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(a.threads)
    settings = {"root": str(root), "epochs": a.epochs, "seed": a.seed, "limit": a.limit, "threads": a.threads,
                "device": a.device, "num_workers": a.num_workers, "dfer_set": a.dfer_set}
    data = limited_root(root, a.out, a.limit) if a.limit else root
    names, images, votes = read_split(data / SPLITS["val"])
    arms = {}
    for arm in ("naive", "dfer") if a.only is None else (a.only,):
        path = a.out / f"{arm}.json"
        mine = settings if arm == "dfer" else {k: v for k, v in settings.items() if k != "dfer_set"}
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.pop("settings", None) == mine:
                arms[arm] = {**saved, "reused": True}
                continue
        if arm == "naive":
            train_split = read_split(data / SPLITS["train"])
            t0 = time.perf_counter()
            probs = naive_arm(train_split, (names, images, votes), epochs=a.epochs, seed=a.seed, device=a.device)
            result = {"train_seconds": time.perf_counter() - t0, "train_images": len(train_split[0]),
                      "recipe": "torchvision resnet18 from scratch, 48 px, pad-4 crop + flip, SGD nesterov lr 0.05 "
                                "wd 5e-4, OneCycleLR 15% warm-up, batch 128, majority vote (ties: first)"}
        else:
            run_dir = a.out / "dfer_run"
            by_id, result = dfer_arm(data, run_dir, a, tuple(a.dfer_set))
            ids = [f"{SPLITS['val']}/{n}" for n in names]
            lost = [i for i in ids if i not in by_id]
            if lost:
                print(f"dfer's Valid table lacks {len(lost)} image(s) the naive reader kept, e.g. {lost[:3]}",
                      file=sys.stderr)
                return 1
            probs = np.stack([by_id[i] for i in ids])
        arms[arm] = {"epochs": a.epochs, **score(probs, votes), **result}
        _write(path, {"settings": mine, **arms[arm]})
        arms[arm]["reused"] = False
    report = {"benchmark": "still_face_baseline", "train": SPLITS["train"], "measured_on": SPLITS["val"],
              "settings": settings, "arms": arms}
    _write(a.out / "still_face_baseline.json", report)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
