"""One table of several cross-validation results, in the layout of the paper's tables.

Tables 2, 3 and 7 of the MIDAS paper list one row per label mode (Hard, Soft, MIDAS,
MIDAS w/ hard label) with the UAR and WAR averaged over DFEW's five folds; Table 6 one row
per training group (clear / mixed); Table 1 the accuracy of each emotion class as well.
``dfer compare CVDIR...`` reads the folders written by ``dfer cv`` (their finished folds,
as :func:`dfer.experiments.summarise_cv` collects them) and prints

    | Label | UAR | WAR | KL to votes | ECE | ΔUAR | ΔWAR |

with mean ± sample std (ddof=1) over folds in percent, and the difference of the means to
a baseline row in percentage points. A Model column appears when the rows differ in the
model, a Data column when they differ in the training group, a Test column when they are
tested on different corpora, a Folds column when they hold different numbers of folds.
``per_class=True`` adds the columns happy .. fear of Table 1. Optional reference values
(the paper's numbers) become extra columns.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from dfer.errors import ConfigError
from dfer.experiments import LABEL_NAMES, MODEL_NAMES, _fold_list, fmt_mean_std, summarise_cv
from dfer.io import atomic_path, claim_file, write_text_atomic


@dataclass
class Row:
    """One cv result: the identifying labels and its summary."""

    cv_dir: Path
    model: str
    label: str
    data: str
    test: str
    summary: dict

    def names(self) -> set[str]:
        """What ``--baseline`` may match (case-insensitive)."""
        return {self.label.lower(), self.cv_dir.name.lower(), f"{self.model} {self.label}".lower(),
                self.data.lower()}


def row_of(cv_dir: str | os.PathLike) -> Row:
    s = summarise_cv(cv_dir)
    cfg = s["config"]
    d = cfg["data"]
    subset = d.get("train_subset", "all")
    data = {"all": "All", "clear": "Clear expression group", "mixed": "Mixed expression group"}.get(subset, subset)
    test = d["test_source"]["kind"] if d.get("test_source") else d["source"]["kind"]
    return Row(Path(cv_dir), MODEL_NAMES.get(cfg["model"]["name"], cfg["model"]["name"]),
               LABEL_NAMES.get(cfg["label_mode"], cfg["label_mode"]), data, test, s)


def pick_baseline(rows: list[Row], name: str | None) -> int:
    """Index of the baseline row: ``name`` matches a label, a cv folder name, "model label",
    a data group, or is a 1-based row number; default the first row."""
    if name is None:
        return 0
    if name.isdigit() and 1 <= int(name) <= len(rows):
        return int(name) - 1
    hits = [i for i, r in enumerate(rows) if name.lower() in r.names()]
    if len(hits) != 1:
        known = ", ".join(repr(r.label if len({x.label for x in rows}) == len(rows) else r.cv_dir.name) for r in rows)
        raise ConfigError(f"--baseline {name!r} matches {len(hits)} rows; expected one of {known} or a row number")
    return hits[0]


def compare_table(rows: list[Row], *, baseline: int = 0, per_class: bool = False,
                  reference: list[dict | None] | None = None, reference_name: str = "Paper") -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the comparison table (cells are strings ready to print).

    Args:
        rows: the cv results, in table order.
        baseline: index of the row the Δ columns are measured from.
        per_class: add the per-class accuracy columns of Table 1.
        reference: per row an optional {"uar": %, "war": %} (e.g. the paper's numbers),
            shown as extra columns.
    """
    def varies(attr: str) -> bool:
        return len({getattr(r, attr) for r in rows}) > 1

    classes = rows[0].summary["classes"]
    if per_class and any(r.summary["classes"] != classes for r in rows):
        raise ConfigError("per-class columns need the same classes in every row: "
                          + "; ".join(f"{r.cv_dir}: {r.summary['classes']}" for r in rows))
    id_cols = [("Model", "model")] if (varies("model") or per_class) else []
    id_cols += [("Label", "label")]
    if varies("data"):
        id_cols += [("Data", "data")]
    if varies("test"):
        id_cols += [("Test", "test")]
    show_folds = len({len(r.summary["folds"]) for r in rows}) > 1 or any(r.summary["missing"] for r in rows)
    metric_keys = ([f"recall.{c}" for c in classes] if per_class else []) + ["uar", "war", "kl_to_votes", "ece"]
    metric_heads = (list(classes) if per_class else []) + ["UAR", "WAR", "KL to votes", "ECE"]
    headers = [h for h, _ in id_cols] + metric_heads + ["ΔUAR", "ΔWAR"]
    if show_folds:
        headers.append("Folds")
    if reference is not None:
        headers += [f"{reference_name} UAR", f"{reference_name} WAR"]
    base = rows[baseline].summary["mean"]
    cells = []
    for i, r in enumerate(rows):
        m, s = r.summary["mean"], r.summary["std"]
        line = [getattr(r, a) for _, a in id_cols]
        line += [fmt_mean_std(k, m.get(k), s.get(k)) for k in metric_keys]
        for k in ("uar", "war"):
            if i == baseline:
                line.append("(baseline)")
            elif m.get(k) is None or base.get(k) is None:
                line.append("")
            else:
                line.append(f"{100 * (m[k] - base[k]):+.2f}")
        if show_folds:
            f = _fold_list(r.summary["folds"])
            line.append(f + (f" (missing {_fold_list(r.summary['missing'])})" if r.summary["missing"] else ""))
        if reference is not None:
            ref = reference[i] or {}
            line += [f"{ref['uar']:.2f}" if "uar" in ref else "", f"{ref['war']:.2f}" if "war" in ref else ""]
        cells.append(line)
    return headers, cells


def to_markdown(headers: list[str], cells: list[list[str]], title: str | None = None, notes: list[str] = ()) -> str:
    out = [f"## {title}", ""] if title else []
    out.append("| " + " | ".join(headers) + " |")
    out.append("|" + "|".join("---" if h in ("Model", "Label", "Data", "Test", "Folds") else "---:"
                              for h in headers) + "|")
    out += ["| " + " | ".join(c) + " |" for c in cells]
    if notes:
        out += [""] + list(notes)
    return "\n".join(out) + "\n"


_MARK = "<!-- written by dfer compare -->"


def _ours(path: Path) -> bool:
    """Whether ``path`` is a table dfer compare wrote (its Markdown carries the mark, its CSV
    the difference columns), so that a rerun may replace it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(1 << 20)
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".csv":
        header = text.split("\n", 1)[0].split(",")
        return "ΔUAR" in header and "ΔWAR" in header
    return _MARK in text


def write_table(path: str | os.PathLike, headers: list[str], cells: list[list[str]], markdown: str) -> list[Path]:
    """``path`` as Markdown (or CSV when it ends in .csv) and the other form beside it."""
    path = Path(path)
    md, cs = (path.with_suffix(".md"), path) if path.suffix == ".csv" else (path, path.with_suffix(".csv"))
    for target in (md, cs):
        claim_file(target, "dfer compare", _ours)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(md, markdown.rstrip("\n") + "\n\n" + _MARK + "\n")
    with atomic_path(cs) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(headers)
        w.writerows(cells)
    return [md, cs]


def compare(cv_dirs: list[str | os.PathLike], *, baseline: str | None = None, per_class: bool = False,
            out: str | os.PathLike | None = None, title: str | None = None,
            reference: list[dict | None] | None = None) -> str:
    """Build (and with ``out`` write) the comparison of ``cv_dirs``; returns the Markdown."""
    if not cv_dirs:
        raise ConfigError("dfer compare needs at least one cv folder")
    rows = [row_of(d) for d in cv_dirs]
    b = pick_baseline(rows, baseline)
    headers, cells = compare_table(rows, baseline=b, per_class=per_class, reference=reference)
    models = {r.model for r in rows}
    notes = ["Mean ± sample standard deviation (ddof=1) over the test folds, in percent (KL to votes in nats). "
             f"Δ: difference of the means to the baseline row ({rows[b].label}), in percentage points."]
    if len(models) == 1 and not per_class:
        notes.append(f"Model: {next(iter(models))}.")
    incomplete = [r for r in rows if r.summary["missing"]]
    if incomplete:
        notes.append("INCOMPLETE: " + "; ".join(f"{r.cv_dir.name} lacks fold(s) {_fold_list(r.summary['missing'])}"
                                                for r in incomplete) + ".")
    md = to_markdown(headers, cells, title, notes)
    if out is not None:
        write_table(out, headers, cells, md)
    return md


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cv_dirs", nargs="+", metavar="CVDIR", help="folders written by dfer cv")
    p.add_argument("--baseline", help="row the differences are measured from: a label (e.g. Hard), a cv folder "
                                      "name or a row number (default: the first row)")
    p.add_argument("--per-class", action="store_true", help="add the accuracy of each class (Table 1 layout)")
    p.add_argument("--title", help="heading of the table")
    p.add_argument("--out", help="write the table to this .md (and a .csv beside it) or .csv file")


def run(args: argparse.Namespace) -> int:
    md = compare(args.cv_dirs, baseline=args.baseline, per_class=args.per_class, out=args.out, title=args.title)
    print(md)
    if "INCOMPLETE" in md:
        print("dfer compare: some cv folders lack folds (see the table's notes)", file=sys.stderr)
    return 0


__all__ = ["Row", "row_of", "pick_baseline", "compare_table", "to_markdown", "write_table", "compare"]
