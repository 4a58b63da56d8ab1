"""Is the loader what limits still-face training? A FER+ epoch against the compute-only rate.

dfer's still-face recipe (``configs/ferplus/still_face.yaml``: ResNet-18, 64 px, batch 128,
``data.num_workers`` loader workers) trains in two ways, blocks of ``--steps`` optimiser
steps each, alternated ``--rounds`` times so that a change in load touches both:

- ``loader``: batches from dfer's own dataset and loader over FER+ Train (decode, pad crop,
  flip, uint8 collate), then the device-side conversion and the step, as ``dfer train``;
- ``compute``: one fixed uint8 batch of the same shape, the same conversion and step: what
  the model alone allows.

Prints one JSON object with the images/s of each (median over the rounds) and
``loader_over_compute`` (the target is >= 0.9)::

    .venv/bin/python benchmarks/still_face_epoch.py [--root ../shared/ferplus] [--limit 4096]
        [--steps 6 --rounds 3 --threads 2 --num-workers 1]

``--limit N`` trains on the first N images of Train (the loader reads them from disk each
epoch, as in a full run). Time it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dfer.config import load_config
from dfer.data.dataset import build_loader
from dfer.data.splits import build_splits, make_dataset
from dfer.data.transforms import to_model_input
from dfer.models import create_model
from dfer.runtime import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "ferplus" / "still_face.yaml"
DEFAULT_ROOT = REPO.parent / "shared" / "ferplus"


def first_rows(root: Path, out: Path, limit: int) -> Path:
    """A FER+ folder under ``out`` whose Train holds the first ``limit`` rows of ``label.csv`` (links)."""
    src, dst = root / "FER2013Train", out / "FER2013Train"
    dst.mkdir(parents=True)
    rows = (src / "label.csv").read_text().splitlines()[:limit]
    (dst / "label.csv").write_text("\n".join(rows) + "\n")
    for row in rows:
        name = row.split(",")[0].strip()
        os.symlink(src / name, dst / name)
    return out


def step(model, opt, clip_u8: torch.Tensor, soft: torch.Tensor, device) -> None:
    clip = to_model_input(clip_u8, device)
    loss = torch.sum(-soft.to(device) * F.log_softmax(model(clip), dim=-1), dim=-1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--limit", type=int, default=4096, help="first N images of Train")
    p.add_argument("--steps", type=int, default=6, help="optimiser steps per block")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--num-workers", type=int, default=None, help="loader workers (default: the recipe's)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if not (a.root / "FER2013Train" / "label.csv").is_file():
        print(f"{a.root}: no FER2013Train/label.csv (expected FER+'s folders)", file=sys.stderr)
        return 2
    kept = keep_freed_memory()  # as dfer's command line does (MALLOC_MMAP_MAX_=65536 measures without)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = first_rows(a.root.resolve(), Path(tmp) / "ferplus", a.limit)
        ov = [f"data.source.root={root}", "data.source.options={splits: [train]}", "data.source.val_split=null",
              "data.source.test_split=train", f"threads={a.threads}"]
        if a.num_workers is not None:
            ov.append(f"data.num_workers={a.num_workers}")
        cfg = load_config(RECIPE, ov)
        splits = build_splits(cfg, None)
        ds = make_dataset(splits.train, cfg, train=True)
        batch = cfg.optim.batch_size
        loader = build_loader(ds, batch, shuffle=True, num_workers=cfg.data.num_workers, seed=0, drop_last=True)
        torch.manual_seed(0)
        model = create_model(cfg.model.name, len(splits.classes), dropout=cfg.model.dropout, **cfg.model.kwargs)
        model = model.to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        fixed = next(iter(loader))
        fixed_clip, fixed_soft = fixed["clip"].clone(), fixed["soft_label"].clone()
        for _ in range(2):  # warm-up: allocator, kernels
            step(model, opt, fixed_clip, fixed_soft, device)
        epoch, batches = 1, None
        rates: dict[str, list[float]] = {"loader": [], "compute": []}
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            for _ in range(a.steps):
                step(model, opt, fixed_clip, fixed_soft, device)
            rates["compute"].append(batch * a.steps / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for _ in range(a.steps):
                b = next(batches, None) if batches is not None else None
                if b is None:  # a new epoch (workers persist; their start is not timed twice)
                    loader.sampler.set_epoch(epoch)
                    epoch += 1
                    batches = iter(loader)
                    b = next(batches)
                step(model, opt, b["clip"], b["soft_label"], device)
            rates["loader"].append(batch * a.steps / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(json.dumps({
        "benchmark": "still_face_epoch", "keep_freed_memory": kept, "recipe": str(RECIPE.relative_to(REPO)), "images": len(ds),
        "batch": batch, "size": cfg.data.size, "num_workers": cfg.data.num_workers, "threads": a.threads,
        "device": str(device), "load_avg_1min": os.getloadavg()[0],
        "images_per_s": {k: round(v, 1) for k, v in med.items()},
        "rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "loader_over_compute": round(med["loader"] / med["compute"], 3), "target": 0.9}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
