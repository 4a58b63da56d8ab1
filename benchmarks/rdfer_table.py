"""RDFER known-truth table: detection quality and UAR/WAR under label noise.

Writes three synthetic DFEW corpora (``SynthConfig(label_noise=0 / 0.2 / 0.4,
hard_fraction=...)``), trains on fold 1 of each

* TSM-R18 (``tsm_resnet18``, TSN segment sampling, no robust learning) and
* RDFER (``rdfer_resnet18`` + clip agreement + key-expression re-sampling),
* and, on request (``--models tsm-robust``), TSM-R18 with RDFER's robust learning, which
  separates the network from the agreement machinery,

each with hard labels and with MIDAS on hard labels (``midas-hard``; the corruption changes
the hard label only, the votes are untouched, so soft-label modes would not see it), and
reports test UAR / WAR, and for RDFER the precision / recall of noisy and hard detection
at the end of training against the corpus's truth file. Prints one JSON object and writes
a Markdown table::

    .venv/bin/python benchmarks/rdfer_table.py --out /tmp/rdfer_table --threads 1 --jobs 2 [--epochs 12]

CPU budget: the defaults (1000-clip corpora at 32 px, 12 epochs) took 84 minutes on 2 cores
with ``--threads 1 --jobs 2`` (TSM-R18 runs about 8.5 minutes each, RDFER 14: the agreement
passes). ``--skip-done`` reads runs that already finished and resumes unfinished ones instead
of training them again; it refuses a run whose saved config differs from the one asked for.
``--noisy-weight``, ``--hard-weight`` and ``--robust KEY=VALUE ...`` change the robust
runs' ``robust.*`` settings (a run's name does not show them: give each variant its own
``--out``). A corpus already under ``--out`` is reused only if it was written with the same
settings (seed, size, corruption, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import yaml


#: --models key -> (row name, registry model, robust learning on)
MODELS = {"tsm": ("TSM-R18", "tsm_resnet18", False), "rdfer": ("RDFER", "rdfer_resnet18", True),
          "tsm-robust": ("TSM-R18 + robust", "tsm_resnet18", True)}


def run_config(root: Path, out: Path, name: str, model: str, mode: str, robust: bool, a) -> dict:
    d = {
        "name": name, "out_dir": str(out), "seed": a.seed, "label_mode": mode,
        "data": {"source": {"kind": "dfew", "root": str(root), "fold": 1}, "num_frames": a.frames,
                 "size": a.size, "num_workers": 0, "scales": [1.0, 0.875], "check_disk": False},
        "model": {"name": model, "dropout": 0.2},
        # AdamW: from scratch on a few hundred clips it learns in a few epochs (see dfer demo)
        "optim": {"name": "adamw", "epochs": a.epochs, "batch_size": 16, "lr": a.lr, "weight_decay": 0.05},
        "eval": {"batch_size": 64}, "tensorboard": False, "progress": False, "threads": a.threads,
    }
    if robust:
        d["robust"] = {"enabled": True, "warmup_epochs": a.robust_warmup, "every": a.every, "num_clips": 4}
        for key in ("noisy_weight", "hard_weight"):
            if getattr(a, key) is not None:
                d["robust"][key] = getattr(a, key)
        for item in a.robust:
            key, _, value = item.partition("=")
            d["robust"][key] = yaml.safe_load(value)
    return d


def corpus_mismatch(root: Path, synth) -> str:
    """The settings in which the corpus under ``root`` differs from ``synth`` ("" when it matches)."""
    from dfer.data.corpora.synthetic import CONFIG_FILE, GENERATOR

    saved = json.loads((root / CONFIG_FILE).read_text())
    # a field missing from an older corpus's file had its default then (nuisance 1: byte-identical)
    default = dataclasses.asdict(type(synth)())
    diff = [f"{k}={saved.get(k, default[k])!r} (asked: {v!r})" for k, v in dataclasses.asdict(synth).items()
            if k != "workers" and saved.get(k, default[k]) != v]  # workers changes the speed only
    if saved.get("generator", 1) != GENERATOR:
        diff.append(f"generator={saved.get('generator', 1)} (this dfer: {GENERATOR})")
    return ", ".join(diff)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/rdfer_table")
    p.add_argument("--clips", type=int, default=1000)
    p.add_argument("--video-frames", type=int, default=12)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--robust-warmup", type=int, default=3)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--noisy-weight", type=float, default=None,
                   help="robust.noisy_weight of the robust runs (default: RobustConfig's)")
    p.add_argument("--hard-weight", type=float, default=None,
                   help="robust.hard_weight of the robust runs (default: RobustConfig's)")
    p.add_argument("--robust", nargs="+", default=[], metavar="KEY=VALUE",
                   help="any other robust.* setting of the robust runs, e.g. support_threshold=0.25 momentum=0.9")
    p.add_argument("--hard-fraction", type=float, default=0.15)
    p.add_argument("--nuisance", type=float, default=0.0,
                   help="pose/lighting/noise/occlusion strength of the corpora (0: label noise is the only difficulty "
                        "besides the expressions themselves)")
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2, 0.4])
    p.add_argument("--models", nargs="+", default=["tsm", "rdfer"], choices=sorted(MODELS))
    p.add_argument("--modes", nargs="+", default=["hard", "midas-hard"])
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, one process each")
    p.add_argument("--skip-done", action="store_true",
                   help="read the results of runs that already finished under --out and resume unfinished ones, "
                        "instead of training them again (a run made with other settings is an error; one whose "
                        "checkpoints were deleted is trained again)")
    p.add_argument("--seed", type=int, default=1)  # thresholds were chosen on seed 0
    a = p.parse_args(argv)
    bad = [item for item in a.robust if "=" not in item]
    if bad:
        p.error(f"--robust expects KEY=VALUE, got {bad}")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)

    from dfer.data.corpora.synthetic import CONFIG_FILE, SynthConfig, write_synthetic_dfew

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    jobs = []
    for noise in a.noise:
        root = out / f"corpus_noise{noise:g}"
        synth = SynthConfig(num_clips=a.clips, num_frames=a.video_frames, size=a.size, seed=a.seed,
                            label_noise=noise, hard_fraction=a.hard_fraction, nuisance=a.nuisance,
                            workers=a.threads * a.jobs)
        if (root / CONFIG_FILE).exists():
            stale = corpus_mismatch(root, synth)
            if stale:
                print(f"rdfer_table: {root} was written with {stale}; give these settings their own --out",
                      file=sys.stderr)
                return 2
        else:
            write_synthetic_dfew(root, synth)
        jobs += [(root, out, noise, model, mode, a) for model in a.models for mode in a.modes]
    if a.jobs > 1:  # one process per run, a.threads threads each (spawn: no forked torch state)
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("spawn")) as ex:
            rows = list(ex.map(_run_one, jobs))
    else:
        rows = [_run_one(j) for j in jobs]
    table = _markdown(rows)
    (out / "table.md").write_text(table)
    print(json.dumps({"rows": rows, "total_seconds": round(time.perf_counter() - t_all, 1),
                      "args": vars(a)}, indent=1))
    print(table, file=sys.stderr)
    return 0


def _run_one(job) -> dict:
    """Train one row of the table and read its results."""
    root, out, noise, model, mode, a = job
    import torch

    from dfer.config import RunConfig, from_dict
    from dfer.errors import ConfigError
    from dfer.robust.learner import read_robust_log
    from dfer.rundir import ROBUST_FILE
    from dfer.train import train

    torch.set_num_threads(a.threads)
    row_name, net, robust = MODELS[model]
    name = f"{model}_{mode}_noise{noise:g}"
    cfg = from_dict(RunConfig, run_config(root, out / "runs", name, net, mode, robust, a)).validate()
    t0 = time.perf_counter()
    run = out / "runs" / name
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the one JSON object
        # --skip-done: train() returns a finished run of the same config, resumes an unfinished one and
        # refuses one trained with other settings (config_hash); without it the run is trained afresh
        try:
            run = train(cfg, restart=not a.skip_done)
        except ConfigError as e:
            raise ConfigError(f"{e} (here: give these settings their own --out, or drop --skip-done)") from None
    res = json.loads((run / "results.json").read_text())
    with open(run / "metrics.csv", newline="") as f:
        train_s = sum(float(r["epoch_s"]) for r in csv.DictReader(f))
    row = {"model": row_name, "labels": mode, "noise": noise,
           "uar": res["uar"], "war": res["war"], "seconds": round(time.perf_counter() - t0, 1),
           "train_seconds": round(train_s, 1)}
    if robust:
        last = read_robust_log(run / ROBUST_FILE, cfg.optim.epochs)[-1]  # one line on a damaged file
        for k in ("noisy_precision", "noisy_recall", "hard_precision", "hard_recall", "clean", "hard",
                  "noisy", "truth_noisy", "truth_hard"):
            row[k] = float(last[k]) if last.get(k) not in (None, "") else None
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _markdown(rows: list[dict]) -> str:
    f = lambda x: "–" if x is None else f"{100 * x:.1f}"  # noqa: E731
    lines = ["| model | labels | corrupted | UAR | WAR | noisy P | noisy R | hard P | hard R |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = [m[0] for m in MODELS.values()]
    for r in sorted(rows, key=lambda r: (r["noise"], order.index(r["model"]), r["labels"])):
        lines.append(f"| {r['model']} | {r['labels']} | {100 * r['noise']:.0f}% | {f(r['uar'])} | {f(r['war'])} | "
                     f"{f(r.get('noisy_precision'))} | {f(r.get('noisy_recall'))} | {f(r.get('hard_precision'))} | "
                     f"{f(r.get('hard_recall'))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
