"""k-fold cross-validation: one run per fold, resumable, and a summary in the paper's layout.

The MIDAS paper (section 4.3) evaluates on DFEW's official five-fold split and reports the
mean over the five test folds of the UAR, the WAR and (Table 1) the accuracy of each
emotion class. ``dfer cv`` trains one run per fold in ``<out>/<cv-name>/fold<k>/`` (the cv
name encodes the protocol, like a run name, with ``cv`` in place of the fold) and writes

- ``summary.md`` / ``summary.csv``: per fold and mean ± std, columns happy .. fear, UAR,
  WAR in percent with two decimals (the layout of Table 1), then what the paper does not
  report (clear / mixed UAR and WAR, KL divergence to the annotator votes, ECE);
- ``summary.json``: the same numbers at full precision (read by ``dfer compare``);
- ``confusion.png``: the confusion matrix summed over the folds, row-normalised (Fig. 6);
- ``reliability.png``: the reliability diagram of the pooled test predictions.

The std is the **sample** standard deviation over folds (``ddof=1``, the n - 1 divisor);
with a single fold it is left empty. A fold is finished when its ``results.json`` exists and
its last checkpoint is marked finished; such a fold is never run again. An interrupted
fold resumes from its last checkpoint (:func:`dfer.train.train` resumes exactly). Folds
can be trained by separate jobs on separate machines (``--folds 3``) into copies of the
same folder, gathered, and summarised with ``dfer cv --summarise``, which names the folds
still missing. Recipes with a fixed train/test split (``data.source.fold: null``) are run
once, in ``<cv-name>/split/``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from dfer.checkpoint import load_checkpoint_meta
from dfer.config import MIXING_LABEL_MODES, RunConfig, config_hash, load_config, saved_config, to_dict
from dfer.data.splits import load_source_table
from dfer.emotions import resolve_classes
from dfer.errors import ConfigError, DataError
from dfer.evaluate import _write_json
from dfer.io import atomic_path, claim_folder, exclusive_folder, holds, write_text_atomic
from dfer.metrics import reliability_curve
from dfer.rundir import RESULTS_FILE, RUN_KIND, checkpoint_path, is_earlier_run, read_results
from dfer.train import train

MANIFEST = "cv.json"
#: the kind of folder (:func:`dfer.io.claim_folder`) of a cross-validation
CV_KIND = "cv"
SPLIT_DIR = "split"
#: the metrics besides the per-class recalls, in the order of the summary's columns
EXTRA_METRICS = ("uar_clear", "war_clear", "uar_mixed", "war_mixed", "kl_to_votes", "ece")
_HEADINGS = {"uar": "UAR", "war": "WAR", "uar_clear": "UAR clear", "war_clear": "WAR clear",
             "uar_mixed": "UAR mixed", "war_mixed": "WAR mixed", "kl_to_votes": "KL to votes",
             "ece": "ECE"}
#: metrics shown as percentages (the KL divergence is in nats)
PERCENT = frozenset({"uar", "war", "uar_clear", "war_clear", "uar_mixed", "war_mixed", "ece"})


# ---------------------------------------------------------------------- names and folders


def cv_name(cfg: RunConfig) -> str:
    """The folder name of a cross-validation: the run name with ``cv`` for the fold,
    e.g. ``tsm_resnet18_midas-a0.4_dfew-cv`` (a fixed split: ``..._dfew-test``).

    It does not depend on the folds a job runs, so the jobs of one cv share the folder.
    """
    return cfg.run_name(cv=True)


def _is_earlier_cv(folder: Path) -> bool:
    """A cv folder written before dfer marked its folders: it holds its cv.json."""
    return holds(folder, MANIFEST)


def fold_dir(cv_dir: str | os.PathLike, fold: int | None) -> Path:
    """``cv_dir/fold<k>`` (``cv_dir/split`` for a fixed train/test split)."""
    return Path(cv_dir) / (SPLIT_DIR if fold is None else f"fold{fold}")


def fold_config(cfg: RunConfig, fold: int | None) -> RunConfig:
    """A copy of ``cfg`` whose test set is fold ``fold`` (``None``: the fixed split)."""
    out = copy.deepcopy(cfg)
    if fold is not None:
        out.data.source.fold = int(fold)
    return out.validate()


def fold_finished(run_dir: str | os.PathLike) -> bool:
    """True when the run wrote ``results.json`` and marked its last checkpoint finished."""

    run_dir = Path(run_dir)
    last = checkpoint_path(run_dir, "last")
    if not (run_dir / RESULTS_FILE).is_file() or not last.is_file():
        return False
    try:
        return load_checkpoint_meta(last).get("finished") is True
    except Exception:  # a truncated file from a killed job: not finished, train() redoes it
        return False


def source_folds(cfg: RunConfig) -> list[int] | None:
    """The folds of the training corpus (DFEW: 1..5); ``None`` for a fixed split."""
    if cfg.data.source.fold is None:
        return None

    table = load_source_table(cfg.data.source, resolve_classes(cfg.data.classes))
    folds = sorted(int(f) for f in np.unique(table.fold) if f > 0)
    if not folds:
        raise DataError(f"{cfg.data.source.root}: the {cfg.data.source.kind} corpus has no folds; "
                        f"set data.source.fold=null to use its train/test split")
    return folds


#: the largest fold number a corpus can have (folds are kept as int8)
MAX_FOLD = 127


def parse_folds(spec: str | None) -> list[int] | None:
    """``"1,2,5"`` or ``"1-3"`` -> [1, 2, 5] / [1, 2, 3]; None -> None (all folds).

    Raises:
        ConfigError: a part that is not a fold number or an ascending range ``a-b`` (a
            reversed range such as ``5-3`` would name no fold, and no folds would mean all),
            or a fold outside 1..:data:`MAX_FOLD`.
    """
    if spec is None or spec.strip() in ("", "all"):
        return None
    folds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        a, dash, b = (x.strip() for x in part.partition("-"))
        if not (a.isascii() and a.isdigit() and (not dash or (b.isascii() and b.isdigit()))):
            raise ConfigError(f"--folds {spec!r}: expected fold numbers like 1,2,3 or 1-5, found {part!r}")
        first, last = int(a), int(b) if dash else int(a)
        if not 1 <= first <= last <= MAX_FOLD:
            why = "a range goes up (1-5, not 5-1)" if first > last else f"fold numbers start at 1 and go up to {MAX_FOLD}"
            raise ConfigError(f"--folds {spec!r}: {part!r} names no fold: {why}")
        folds.extend(range(first, last + 1))
    return sorted(set(folds))


def _protocol_hash(cfg: RunConfig) -> str:
    """Hash of what defines the cv (not the fold, not where the data or runs live)."""
    c = copy.deepcopy(cfg)
    c.data.source.fold = 0 if c.data.source.fold is not None else None
    c.data.source.root = ""
    if c.data.test_source is not None:
        c.data.test_source.root = ""
    c.out_dir = ""
    return config_hash(c)


def _saved_protocol_hash(base) -> str | None:
    """The protocol hash of a manifest's recipe as this version of dfer reads it (settings
    added since it was written take their defaults); None if it no longer reads."""
    if not isinstance(base, dict):
        return None
    base = copy.deepcopy(base)
    src = base.get("data", {}).get("source", {})
    if src.get("fold") == "cv":
        src["fold"] = 1  # any fold: the protocol hash ignores which
    try:
        return _protocol_hash(saved_config(base))
    except ConfigError:  # a setting renamed or removed since: another protocol
        return None


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ---------------------------------------------------------------------- running


def run_cv(cfg: RunConfig, out_dir: str | os.PathLike | None = None, folds: list[int] | None = None, *,
           summarise: bool = True) -> Path:
    """Train (or resume, or skip when finished) the runs of ``folds`` and summarise.

    Args:
        cfg: the recipe; its ``data.source.fold`` is replaced by each fold.
        out_dir: parent of the cv folder (default ``cfg.out_dir``).
        folds: folds to run (default: every fold of the corpus); ignored for a fixed split.
        summarise: write the summary of the folds finished so far at the end.

    Returns:
        The cv folder ``out_dir/cv_name(cfg)``.
    """
    cfg.validate()
    cv_dir = Path(out_dir or cfg.out_dir) / cv_name(cfg)
    expected = source_folds(cfg)
    if expected is None:
        todo: list[int | None] = [None]
    else:
        todo = list(folds or expected)
        unknown = sorted(set(todo) - set(expected))
        if unknown:
            raise ConfigError(f"--folds {unknown} not in the folds of {cfg.data.source.root} ({expected})")
    claim_folder(cv_dir, CV_KIND, "dfer cv", _is_earlier_cv, create=_is_main())
    _write_manifest(cv_dir, cfg, expected)
    with contextlib.ExitStack() as locks:
        if _is_main():  # every fold of this job is locked before any trains: jobs of other folds
            for fold in todo:  # may share the folder, a job that overlaps this one stops at once
                locks.enter_context(exclusive_folder(fold_dir(cv_dir, fold), "dfer cv", RUN_KIND, is_earlier_run))
        for fold in todo:
            run_dir = fold_dir(cv_dir, fold)
            if fold_finished(run_dir):
                if _is_main():
                    print(f"{run_dir}: finished, not run again", file=sys.stderr)
                continue
            train(fold_config(cfg, fold), run_dir=run_dir)
    if summarise and _is_main():
        summarise_cv(cv_dir, write=True)
    return cv_dir


def _write_manifest(cv_dir: Path, cfg: RunConfig, expected: list[int] | None) -> None:
    """cv.json: the recipe, its protocol hash and the folds a complete cv holds. A folder
    holding another protocol is refused (it would mix two experiments in one table)."""
    path = cv_dir / MANIFEST
    h = _protocol_hash(cfg)
    if path.is_file():
        old = read_manifest(cv_dir)
        if old.get("protocol_hash") != h and _saved_protocol_hash(old.get("config")) != h:
            raise ConfigError(f"{cv_dir} holds a cross-validation of a different config (protocol hash "
                              f"{old.get('protocol_hash')}, this config {h}); use another --out or name=")
        return
    if not _is_main():
        return
    cv_dir.mkdir(parents=True, exist_ok=True)
    base = to_dict(fold_config(cfg, None))
    base["data"]["source"]["fold"] = None if expected is None else "cv"
    doc = {"name": cv_name(cfg), "protocol_hash": h, "folds": expected, "config": base}
    write_text_atomic(path, json.dumps(doc, indent=1))


# ---------------------------------------------------------------------- summary


def read_manifest(cv_dir: str | os.PathLike) -> dict:
    path = Path(cv_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"{cv_dir} is not a dfer cv folder (no {MANIFEST}); run dfer cv first")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    folds = manifest.get("folds", ()) if isinstance(manifest, dict) else ()
    if (not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict)
            or not (folds is None or (isinstance(folds, list) and all(type(f) is int for f in folds)))):
        raise DataError(f"{path}: not a dfer cv manifest (expected an object with config and folds: a list of "
                        f"fold numbers or null)")
    return manifest


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1) of the finite values; None where
    undefined (no value; one value for the std)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def fold_metrics(results: dict) -> dict[str, float | None]:
    """The flat metrics of one fold's results.json: ``uar``, ``war``, ``recall.<class>``,
    and those of :data:`EXTRA_METRICS`."""
    out: dict[str, float | None] = {"uar": results.get("uar"), "war": results.get("war")}
    for c, r in results.get("per_class_recall", {}).items():
        out[f"recall.{c}"] = r
    amb = results.get("by_ambiguity") or {}
    for part in ("clear", "mixed"):
        out[f"uar_{part}"] = (amb.get(part) or {}).get("uar")
        out[f"war_{part}"] = (amb.get(part) or {}).get("war")
    out["kl_to_votes"] = results.get("kl_to_votes")
    out["ece"] = results.get("ece")
    return out


def summarise_cv(cv_dir: str | os.PathLike, folds: list[int] | None = None, *, write: bool = False) -> dict:
    """Collect the finished folds of ``cv_dir`` into one summary.

    Args:
        cv_dir: folder written by :func:`run_cv`.
        folds: the folds a complete cv holds (default: those of the manifest).
        write: write summary.md/.csv/.json, confusion.png and reliability.png.

    Returns:
        dict with ``name``, ``classes``, ``folds`` (finished), ``missing`` (expected but
        not finished), ``per_fold`` {fold: metrics}, ``mean`` and ``std`` {metric: value}
        (fractions; std with ddof=1), ``confusion_matrix`` (summed over folds), ``config``.

    Raises:
        DataError: no fold is finished.
    """
    cv_dir = Path(cv_dir)
    man = read_manifest(cv_dir)
    expected: list[int | None] = [None] if man["folds"] is None else list(folds or man["folds"])
    done, missing, per_fold, results = [], [], {}, {}
    for fold in expected:
        rd = fold_dir(cv_dir, fold)
        if not fold_finished(rd):
            missing.append(fold)
            continue
        res = read_results(rd / RESULTS_FILE)
        key = SPLIT_DIR if fold is None else str(fold)
        done.append(fold)
        results[key] = res
        per_fold[key] = fold_metrics(res)
    if not done:
        raise DataError(f"{cv_dir}: no finished fold yet (expected {_fold_list(expected)}); "
                        f"run dfer cv --folds ... first")
    classes = list(next(iter(results.values()))["classes"])
    keys = ["uar", "war", *(f"recall.{c}" for c in classes), *EXTRA_METRICS]
    mean, std = {}, {}
    for k in keys:
        mean[k], std[k] = mean_std([m.get(k) for m in per_fold.values()])
    cm = np.sum([np.asarray(r["confusion_matrix"], np.int64) for r in results.values()], axis=0)
    summary = {"name": man["name"], "classes": classes, "folds": done, "missing": missing,
               "expected_folds": expected, "per_fold": per_fold, "mean": mean, "std": std,
               "confusion_matrix": cm.tolist(), "num_clips": int(sum(r["num_clips"] for r in results.values())),
               "config": man["config"]}
    if write:
        claim_folder(cv_dir, CV_KIND, "dfer cv --summarise", _is_earlier_cv)
        _write_summary(cv_dir, summary)
    return summary


def _fold_list(folds) -> str:
    return ", ".join(SPLIT_DIR if f is None else str(f) for f in folds)


def fmt_value(key: str, x: float | None) -> str:
    """A metric as the tables print it: percent with 2 decimals, the KL in nats with 4."""
    if x is None:
        return ""
    return f"{100 * x:.2f}" if key in PERCENT or key.startswith("recall.") else f"{x:.4f}"


def fmt_mean_std(key: str, mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    return fmt_value(key, mean) + ("" if std is None else f" ± {fmt_value(key, std)}")


def _write_summary(cv_dir: Path, s: dict) -> None:
    classes = s["classes"]
    table1 = [f"recall.{c}" for c in classes] + ["uar", "war"]
    extra = list(EXTRA_METRICS)
    cols = table1 + extra
    headers = [*classes, "UAR", "WAR", *(_HEADINGS[k] for k in extra)]
    rows = [(f"fold {k}" if k != SPLIT_DIR else "split", s["per_fold"][k]) for k in s["per_fold"]]

    # summary.csv: one row per fold, then mean and std (sample, ddof=1)
    with atomic_path(cv_dir / "summary.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["fold", *headers])
        for label, m in rows:
            w.writerow([label, *(fmt_value(k, m.get(k)) for k in cols)])
        w.writerow(["mean", *(fmt_value(k, s["mean"][k]) for k in cols)])
        w.writerow(["std", *(fmt_value(k, s["std"][k]) for k in cols)])

    cfg = s["config"]
    n = len(s["folds"])
    lines = [f"# {s['name']}", ""]
    lines.append(f"{describe_config(cfg)}.")
    lines.append("")
    if s["expected_folds"] == [None]:
        lines.append("One run on the corpus' fixed train/test split.")
    else:
        lines.append(f"Test folds: {_fold_list(s['folds'])} ({s['num_clips']} test clips in all). Mean ± sample "
                     f"standard deviation (n - 1 divisor) over the {n} fold(s); percentages with two decimals.")
    if s["missing"]:
        lines += ["", f"**INCOMPLETE: fold(s) {_fold_list(s['missing'])} not finished.** Run "
                      f"`dfer cv ... --folds {','.join(str(f) for f in s['missing'] if f is not None)}`, "
                      f"then `dfer cv --summarise`."]
    lines += ["", "## Accuracy for each emotion class, UAR and WAR (%) — layout of the paper's Table 1", ""]
    lines += _md_table(["Fold", *classes, "UAR", "WAR"], rows, table1, s)
    lines += ["", "## Beyond the paper: clear vs mixed test clips, agreement with the votes, calibration", "",
              "Clear: test clips whose largest vote share exceeds 0.9; mixed: the others. KL to votes: mean "
              "KL(votes || prediction) in nats. ECE: expected calibration error (15 bins), %.", ""]
    lines += _md_table(["Fold", *(_HEADINGS[k] for k in extra)], rows, extra, s)
    lines += ["", "Confusion matrix summed over the folds, row-normalised (Fig. 6): `confusion.png`. Reliability "
                  "diagram of the pooled test predictions: `reliability.png`.", ""]
    write_text_atomic(cv_dir / "summary.md", "\n".join(lines))

    _write_json(cv_dir / "summary.json", s)
    from dfer.plots import plot_confusion, plot_reliability

    plot_confusion(np.asarray(s["confusion_matrix"]), classes, cv_dir / "confusion.png",
                   title=f"{s['name']} ({n} fold{'s' if n > 1 else ''})")
    probs, labels = pooled_predictions(cv_dir, s["folds"], classes)
    if len(labels):
        curve = reliability_curve(probs, labels)
        plot_reliability(curve, cv_dir / "reliability.png",
                         title=f"{len(labels)} test clips of {n} fold(s) pooled: ECE = {100 * curve['ece']:.2f}%")


def _md_table(headers: list[str], rows, keys: list[str], s: dict) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    for label, m in rows:
        out.append("| " + " | ".join([label, *(fmt_value(k, m.get(k)) for k in keys)]) + " |")
    out.append("| " + " | ".join(["**mean ± std**", *(fmt_mean_std(k, s["mean"][k], s["std"][k])
                                                       for k in keys)]) + " |")
    return out


def pooled_predictions(cv_dir: Path, folds, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) probabilities and (N,) labels of the labelled test clips of all ``folds``,
    read from each fold's predictions.csv."""
    probs, labels = [], []
    index = {c: i for i, c in enumerate(classes)}
    for fold in folds:
        path = fold_dir(cv_dir, fold) / "predictions.csv"
        if not path.is_file():
            raise DataError(f"{path}: missing (the fold's results.json exists; was the folder copied partly?)")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                if not row["label"]:
                    continue  # a clip without a hard label (tied votes) has no accuracy
                if row["label"] not in index:
                    raise DataError(f"{path}, line {reader.line_num}: label {row['label']!r} is not one of {classes}")
                labels.append(index[row["label"]])
                probs.append([float(row[c]) for c in classes])
    return np.asarray(probs, np.float64).reshape(-1, len(classes)), np.asarray(labels, np.int64)


MODEL_NAMES = {"tsm_resnet18": "ResNet18+TSM", "resnet18_gru": "ResNet18+GRU", "r3d_18": "3D ResNet18",
               "rdfer_resnet18": "RDFER ResNet18"}
LABEL_NAMES = {"hard": "Hard", "soft": "Soft", "midas": "MIDAS", "midas-hard": "MIDAS w/ hard label",
               "mixup": "Mixup"}


def describe_config(cfg: dict) -> str:
    """One line stating the protocol: model, labels, input, schedule, global batch and lr."""
    d, o, m = cfg["data"], cfg["optim"], cfg["model"]
    mode = LABEL_NAMES.get(cfg["label_mode"], cfg["label_mode"])
    if cfg["label_mode"] in MIXING_LABEL_MODES:
        mode += f" (alpha {cfg['mixing']['alpha']:g})"
    src = d["source"]
    split = "cross-validation" if src["fold"] == "cv" else f"{src['train_split']}/{src['test_split']}"
    where = f"{src['kind']} {split}"
    if d.get("test_source"):
        where += f", tested on {d['test_source']['kind']} {d['test_source']['test_split']}"
    subset = "" if d.get("train_subset", "all") == "all" else f", trained on the {d['train_subset']} group"
    return (f"{MODEL_NAMES.get(m['name'], m['name'])}, {mode} labels, {where}{subset}; {d['num_frames']} frames at "
            f"{d['size']} px; {o['epochs']} epoch(s), global batch {o['batch_size']}, "
            f"{'AdamW' if o.get('name') == 'adamw' else 'SGD'} lr {o['lr']:g} "
            f"({o['schedule']}), seed {cfg['seed']}")


# ---------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML recipe (e.g. configs/paper/table2_tsm_midas.yaml)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. data.source.root=/data/DFEW")
    p.add_argument("--folds", help="folds to run, e.g. 1,2,3 or 3 (one job per machine); default all")
    p.add_argument("--out", help="parent folder of the cv folder (default: the config's out_dir)")
    p.add_argument("--summarise", "--summarize", action="store_true",
                   help="train nothing: collect the finished folds and write the summary; exit status 1 "
                        "when folds are missing")
    p.add_argument("--cv-dir", help="with --summarise: the cv folder itself (instead of --config/--out)")


def run(args: argparse.Namespace) -> int:
    folds = parse_folds(args.folds)
    if args.summarise:
        if args.cv_dir:
            cv_dir = Path(args.cv_dir)
        else:
            cfg = load_config(args.config, args.overrides)
            cv_dir = Path(args.out or cfg.out_dir) / cv_name(cfg)
        s = summarise_cv(cv_dir, folds, write=True)
        print((cv_dir / "summary.md").read_text())
        if s["missing"]:
            print(f"dfer cv: {cv_dir}: fold(s) {_fold_list(s['missing'])} missing; the summary covers "
                  f"fold(s) {_fold_list(s['folds'])} only", file=sys.stderr)
            return 1
        return 0
    import torch.distributed as dist

    cfg = load_config(args.config, args.overrides)
    try:
        cv_dir = run_cv(cfg, args.out, folds)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if _is_main():
        s = summarise_cv(cv_dir, write=False)
        print((cv_dir / "summary.md").read_text())
        if s["missing"]:
            print(f"dfer cv: {cv_dir}: fold(s) {_fold_list(s['missing'])} not finished yet (other jobs?); "
                  f"`dfer cv --summarise` collects them", file=sys.stderr)
    return 0
