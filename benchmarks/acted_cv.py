"""dfer's video models on real faces: leave-actors-out cross-validation on acted clips.

Every row is one ``dfer cv`` of ``configs/acted/javanese_frames.yaml`` (4 folds of 2 actors,
the same budget for every row) with the row's overrides: frame averaging against the
temporal shift, the ResNet-18+GRU and RDFER's dual-stream network, all from the shipped
FER+ model's trunk; the trunk against ImageNet-free random initialisation; hard labels
against MIDAS on hard labels (the paper's Table 3) and mixup. Rows already finished are
read back (``dfer cv`` resumes), so rerunning after a stop costs only what is missing.

Prints JSON (and with ``--markdown`` the docs' table): per row the mean ± sample std over
folds of UAR and WAR, and the non-neutral clips called neutral, pooled over folds.

    python benchmarks/acted_cv.py --frames runs/jv_pre --out runs/acted_cv --markdown
    python benchmarks/acted_cv.py --frames runs/jv_pre --out runs/acted_cv --rows frames tsm --epochs 3  # quicker
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "acted" / "javanese_frames.yaml"

#: row name -> (what it is, overrides of the recipe)
ROWS: dict[str, tuple[str, list[str]]] = {
    "zero-shot": ("the shipped model, untrained on these faces (the floor)", []),
    "frames": ("frame averaging (shift off), FER+ trunk, hard", []),
    "tsm": ("TSM-R18 (shift 1/8), FER+ trunk, hard", ["model.kwargs={shift_div: 8}"]),
    "gru": ("R18-GRU, FER+ trunk, hard", ["model.name=resnet18_gru", "model.kwargs={}"]),
    "rdfer": ("RDFER dual-stream network, FER+ trunk, hard",
              ["model.name=rdfer_resnet18", "model.kwargs={snippet_frames: 2, hidden_size: 256}"]),
    "scratch": ("frame averaging, random initialisation, hard", ["model.pretrained=false"]),
    "midas-hard": ("frame averaging, FER+ trunk, MIDAS on hard labels", ["label_mode=midas-hard"]),
    "mixup": ("frame averaging, FER+ trunk, mixup", ["label_mode=mixup"]),
}


def run_zero_shot(frames: str, out: Path, folds: int = 4) -> Path:
    """The shipped model on each fold's test actors through ``dfer predict``'s path
    (``dfer evaluate --pretrained`` on the frame folders), in the layout of a cv folder."""
    cv_dir = out / "zero-shot" / "cv"
    for k in range(1, folds + 1):
        fold = cv_dir / f"fold{k}"
        if (fold / "results.json").is_file():
            continue
        cmd = [sys.executable, "-m", "dfer", "evaluate", "--pretrained", "--source", f"javanese:{frames}",
               "-o", f"folds={folds}", "-o", "classes=neutral,happy,surprise,sad,angry,fear", "--fold", str(k),
               "--out", str(fold)]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            sys.exit(f"zero-shot fold {k}: dfer evaluate failed (exit {done.returncode}):\n{done.stdout[-2000:]}")
    return cv_dir


def run_row(name: str, frames: str, out: Path, epochs: int | None, extra: list[str]) -> Path:
    """Run (or resume) the row's ``dfer cv``; returns its cv folder."""
    if name == "zero-shot":
        return run_zero_shot(frames, out)
    parent = out / name
    overrides = [f"data.source.root={frames}", *ROWS[name][1], *extra, "progress=false"]
    if epochs is not None:
        overrides.append(f"optim.epochs={epochs}")
    cmd = [sys.executable, "-m", "dfer", "cv", "-c", str(CONFIG), "--out", str(parent), *overrides]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (parent / "cv.log").parent.mkdir(parents=True, exist_ok=True)
    (parent / "cv.log").write_text(done.stdout)
    if done.returncode != 0:
        sys.exit(f"row {name}: dfer cv failed (exit {done.returncode}); its output: {parent / 'cv.log'}\n"
                 + "\n".join(done.stdout.splitlines()[-5:]))
    cv_dirs = [p.parent for p in parent.glob("*/summary.json")]
    if len(cv_dirs) != 1:
        sys.exit(f"row {name}: expected one cv folder with summary.json under {parent}, found {cv_dirs}")
    print(f"row {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return cv_dirs[0]


def read_row(cv_dir: Path) -> dict:
    """UAR / WAR per fold and the pooled confusion of one cv folder."""
    folds = sorted(p for p in cv_dir.glob("fold*/results.json"))
    res = [json.loads(p.read_text()) for p in folds]
    classes = res[0]["classes"]
    confusion = np.sum([np.asarray(r["confusion_matrix"]) for r in res], axis=0)
    neutral = classes.index("neutral")
    emotional = np.delete(confusion, neutral, axis=0)
    uar = np.array([r["uar"] for r in res])
    war = np.array([r["war"] for r in res])
    return {"folds": len(res), "uar": uar.tolist(), "war": war.tolist(),
            "uar_mean": float(uar.mean()), "uar_std": float(uar.std(ddof=1)) if len(res) > 1 else None,
            "war_mean": float(war.mean()), "war_std": float(war.std(ddof=1)) if len(res) > 1 else None,
            "emotional_called_neutral": int(emotional[:, neutral].sum()), "emotional": int(emotional.sum()),
            "recall": dict(zip(classes, (np.diag(confusion) / confusion.sum(1)).tolist())),
            "classes": classes, "cv_dir": str(cv_dir)}


def markdown(rows: dict[str, dict]) -> str:
    lines = ["| row | UAR (mean ± std) | WAR (mean ± std) | non-neutral called neutral |", "|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {ROWS[name][0]} | {100 * r['uar_mean']:.1f} ± {100 * (r['uar_std'] or 0):.1f} | "
                     f"{100 * r['war_mean']:.1f} ± {100 * (r['war_std'] or 0):.1f} | "
                     f"{r['emotional_called_neutral']}/{r['emotional']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", required=True, help="dfer preprocess output of the Javanese clips")
    ap.add_argument("--out", required=True, help="parent folder of the rows' cv folders")
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    ap.add_argument("--epochs", type=int, help="override the recipe's epochs (every row alike)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="another override for every row (repeatable)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    rows = {}
    for name in args.rows:
        rows[name] = read_row(run_row(name, args.frames, out, args.epochs, args.set))
        (out / "table.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps(rows, indent=1))
    if args.markdown:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
