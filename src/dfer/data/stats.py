"""``dfer data``: look at a corpus the way the MIDAS paper does before training on it.

Kawamura et al. (MIDAS) describe DFEW by three views, computed here for any corpus:

- Fig. 4, the class distribution: clips per (hard) class — the given label, else the
  majority of the votes (ties count nowhere);
- Table 6 / Sec. 5.5, the clear/mixed partition: a clip is *clear* when its maximum soft
  label exceeds 0.9 (:func:`dfer.metrics.clear_mask`; with ten annotators, unanimous), the
  others are *ambiguous*. The paper's "mixed expression group" is drawn from all clips
  (clear and ambiguous) and matched to the clear group's size, so both counts are shown;
- Fig. 5, vote coexistence: row ``i`` is the mean soft label of the clips whose class is
  ``i`` (:func:`dfer.metrics.coexistence_matrix`).

Only clips with annotator votes enter the partition and the coexistence matrix (a one-hot
hard label would count as "clear" and say nothing about coexistence).

Commands::

    dfer data stats SOURCE [--kind K] [-o KEY=VALUE] [--out DIR]   print the views, write two PNGs
    dfer data check SOURCE [--on-bad-clip skip] ...   the disk check (dfer.data.check)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from dfer.config import MAX_THREADS, arg
from dfer.data.check import check_table, is_skipped_list, write_skipped
from dfer.data.corpora.registry import KINDS, detect_kind, load_source, option_values
from dfer.data.table import ClipTable, Split
from dfer.errors import ConfigError
from dfer.io import claim_file, claim_folder, holds, write_text_atomic
from dfer.metrics import clear_mask, coexistence_matrix

CLEAR_THRESHOLD = 0.9


def compute_stats(table: ClipTable, clear_threshold: float = CLEAR_THRESHOLD) -> dict:
    """The three views of a table as a JSON-ready dict.

    Returns:
        ``classes``; ``counts`` (C,) clips per hard class (Fig. 4); ``num_clips``,
        ``num_unlabelled`` (no label, tied votes); ``num_with_votes``; ``clear`` and
        ``ambiguous`` (C,) per-class counts among clips with votes (Table 6);
        ``coexistence`` (C, C) or None without votes (Fig. 5); ``clear_threshold``;
        ``splits``: clips per fixed split present (``{"train": n, "val": m}``; empty when
        the corpus has none, e.g. cross-validation folds only); ``num_classes_present``
        (classes with a clip); ``num_groups`` (distinct actors, scenes, ...: the table's
        ``group``) and ``group_kind`` (what a group is, from ``meta["group_kind"]``);
        ``folds``; ``num_skipped`` (clips the adapter left out, ``meta["skipped"]``).
    """
    C = table.num_classes
    hard = table.hard_labels()
    counts = np.bincount(hard[hard >= 0], minlength=C)
    has = table.has_votes
    out = {
        "name": table.name, "classes": list(table.classes), "num_clips": len(table),
        "num_unlabelled": int((hard < 0).sum()), "counts": counts.tolist(),
        "num_with_votes": int(has.sum()), "clear_threshold": clear_threshold,
        "clear": None, "ambiguous": None, "coexistence": None,
        "splits": {s.name.lower(): int((table.split == s).sum()) for s in Split
                   if s != Split.NONE and (table.split == s).any()},
        "num_classes_present": int((counts > 0).sum()),
        "num_groups": len(np.unique(table.group[table.group != ""])),
        "group_kind": table.meta.get("group_kind", "group"), "folds": table.folds(),
        "num_skipped": len(table.meta.get("skipped") or ()),
    }
    if has.any():
        v = table.votes[has].astype(np.float64)
        soft = v / v.sum(axis=1, keepdims=True)  # (clips without votes need no soft label here)
        h = hard[has]
        clear = clear_mask(soft, clear_threshold)
        keep = h >= 0
        out["clear"] = np.bincount(h[keep & clear], minlength=C).tolist()
        out["ambiguous"] = np.bincount(h[keep & ~clear], minlength=C).tolist()
        out["num_clear"] = int(clear.sum())
        m = coexistence_matrix(soft, table.classes, labels=h)
        out["coexistence"] = [[None if not np.isfinite(v) else float(v) for v in row] for row in m]
    return out


def format_stats(stats: dict) -> str:
    """Plain-text tables of :func:`compute_stats` (fixed width, no colour: pipes cleanly)."""
    classes = stats["classes"]
    w = max(9, *(len(c) for c in classes))
    splits = stats.get("splits") or {}
    per_split = f" ({', '.join(f'{k} {v}' for k, v in splits.items())})" if splits else ""
    lines = [f"{stats['name']}: {stats['num_clips']} clips{per_split}, {stats['num_with_votes']} with votes, "
             f"{stats['num_unlabelled']} without a class (no label or tied votes)", _shape(stats), ""]
    total = max(1, sum(stats["counts"]))
    head = f"{'class':<{w}} {'clips':>7} {'share':>6}"
    if stats["clear"] is not None:
        head += f" {'clear':>7} {'ambig.':>7} {'%clear':>7}"
    lines += ["Class distribution (Fig. 4) and clear/ambiguous partition (Table 6, clear = max soft label > "
              f"{stats['clear_threshold']:g})", head]
    for k, c in enumerate(classes):
        row = f"{c:<{w}} {stats['counts'][k]:>7} {100 * stats['counts'][k] / total:>5.1f}%"
        if stats["clear"] is not None:
            cl, am = stats["clear"][k], stats["ambiguous"][k]
            row += f" {cl:>7} {am:>7} " + (f"{100 * cl / (cl + am):>6.1f}%" if cl + am else f"{'-':>7}")
        lines.append(row)
    row = f"{'total':<{w}} {sum(stats['counts']):>7} {'100%':>6}"
    if stats["clear"] is not None:
        cl, am = sum(stats["clear"]), sum(stats["ambiguous"])
        row += f" {cl:>7} {am:>7} {100 * cl / max(1, cl + am):>6.1f}%"
        lines += [row, "", f"Table 6 groups: clear = {cl} clips; the mixed group is drawn from all {cl + am} "
                           f"labelled clips with votes, matched to the clear group's size and class distribution."]
    else:
        lines += [row, "", "No votes in this corpus: no clear/ambiguous partition, no coexistence matrix."]
    if stats["coexistence"] is not None:
        lines += ["", "Coexistence (Fig. 5): mean soft label (columns) of the clips of each class (rows)",
                  " " * w + " " + " ".join(f"{c[:6]:>6}" for c in classes)]
        for c, r in zip(classes, stats["coexistence"]):
            lines.append(f"{c:<{w}} " + " ".join(f"{'-':>6}" if v is None else f"{v:>6.2f}" for v in r))
    return "\n".join(lines)


def _shape(stats: dict) -> str:
    """``6 classes present (7 in the class set), 8 actors, 4 folds``: what a split by
    person or fold has to work with."""
    parts = [f"{stats['num_classes_present']} classes present ({len(stats['classes'])} in the class set)"]
    if stats.get("num_groups"):
        parts.append(f"{stats['num_groups']} {stats['group_kind']}s")
    if stats.get("folds"):
        parts.append(f"{len(stats['folds'])} folds")
    if stats.get("num_skipped"):
        parts.append(f"{stats['num_skipped']} clips skipped by the reader (listed in the table's meta)")
    return ", ".join(parts)


def write_figures(stats: dict, out_dir: str | os.PathLike) -> list[Path]:
    """``class_distribution.png`` (Fig. 4) and, with votes, ``coexistence.png`` (Fig. 5)."""
    from dfer.plots import plot_class_distribution, plot_coexistence

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = stats["classes"]
    paths = [plot_class_distribution(np.asarray(stats["counts"]), classes, out / "class_distribution.png",
                                     title=f"{stats['name']}: clips per class")]
    if stats["coexistence"] is not None:
        m = np.array([[np.nan if v is None else v for v in r] for r in stats["coexistence"]], np.float64)
        paths.append(plot_coexistence(m, classes, out / "coexistence.png",
                                      title=f"{stats['name']}: mean soft label per class"))
    return [Path(p) for p in paths]


# ---------------------------------------------------------------------------- CLI
def _source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="corpus folder, list file or manifest")
    p.add_argument("--kind", choices=KINDS, help="corpus kind (default: detected from SOURCE)")
    p.add_argument("--root", help="re-root the paths of a list file or manifest (none may leave it)")
    p.add_argument("--classes", help="class set: basic7, mafw11, ... or a comma-separated list of names")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the corpus kind, e.g. -o folds=5 -o votes=processedResults/tabulatedVotes.csv "
                        "-o pattern='(?P<actor>\\d+)_(?P<emotion>\\w+)' (repeat for several)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("stats", help="class distribution, clear/ambiguous partition, coexistence + two PNGs")
    _source_arguments(s)
    s.add_argument("--out", default="dfer_stats",
                   help="folder for the PNGs and stats.json: a new one, or one dfer data stats wrote "
                        "(default: %(default)s)")
    s.add_argument("--clear-threshold", type=float, default=CLEAR_THRESHOLD,
                   help="a clip is clear when its max soft label exceeds this (default %(default)s)")
    c = sub.add_parser("check", help="check files and frame counts against the disk")
    _source_arguments(c)
    c.add_argument("--workers", type=arg(int, range="[1, inf)", limit=MAX_THREADS), help="threads (default 4 x CPUs, at most 32)")
    c.add_argument("--cache-dir", help="cache folder for the check results")
    c.add_argument("--on-bad-clip", choices=("error", "skip"), default="error")
    c.add_argument("--skipped-out", help="CSV to list the skipped clips in (with --on-bad-clip skip): a new file, or "
                                         "one dfer data check wrote")
    c.add_argument("--overwrite", action="store_true", help="replace --skipped-out even if it is not dfer's")
    c.add_argument("--no-verify", action="store_true", help="count frames only, decode nothing")
    c.add_argument("--deep", action="store_true",
                   help="decode every frame of every clip (the default decodes a folder's first and last "
                        "frame, a video's first)")


def _load(args) -> ClipTable:
    kind = args.kind or (detect_kind(args.source) if args.option else None)
    options = option_values(kind, args.option) if args.option else {}
    for key, value in (("root", args.root), ("classes", args.classes)):
        if value is not None:
            if key in options:
                raise ConfigError(f"--{key} and -o {key}=... both given; give one")
            options[key] = value
    return load_source(kind, args.source, **options)


def _is_earlier_stats(folder: Path) -> bool:
    """A folder dfer data stats wrote before dfer marked its folders."""
    return holds(folder, "stats.json", "class_distribution.png")


def _is_earlier_check_cache(folder: Path) -> bool:
    """A --cache-dir dfer data check wrote before dfer marked its folders."""
    return holds(folder, "check-*.npz")


def run(args: argparse.Namespace) -> int:
    if args.action == "check" and args.deep and args.no_verify:
        raise ConfigError("--deep decodes every frame, --no-verify none: give one of them")
    # the folder this action writes: checked before the source is read (a Kaggle FER+ source
    # writes its cache), claimed once there is something to write
    target = ((args.cache_dir, "check-cache", "dfer data check", _is_earlier_check_cache) if args.action == "check"
              else (args.out, "stats", "dfer data stats", _is_earlier_stats))
    if target[0]:
        claim_folder(*target, create=False)
    if args.action == "check" and args.skipped_out:
        claim_file(args.skipped_out, "dfer data check", is_skipped_list, overwrite=args.overwrite, flag="--overwrite")
    table = _load(args)
    if args.action == "check":
        if target[0]:
            claim_folder(*target)
        _, report = check_table(table, workers=args.workers, cache_dir=args.cache_dir,
                                on_bad_clip=args.on_bad_clip, verify=not args.no_verify, deep=args.deep)
        read = ("every frame decoded" if args.deep else "frames counted, none decoded" if args.no_verify else
                "a folder's first and last frame and a video's first decoded; --deep decodes all")
        print(f"dfer data check: {table.name}: {report.summary()} in {report.seconds:.1f}s ({read})")
        if report.skipped and args.skipped_out:
            print(f"skipped clips listed in {write_skipped(report, args.skipped_out)}")
        return 0
    stats = compute_stats(table, args.clear_threshold)
    print(format_stats(stats))
    # the figures replace only those of an earlier dfer data stats, never a user's files
    out = claim_folder(*target)
    paths = write_figures(stats, out)
    write_text_atomic(out / "stats.json", json.dumps(stats, indent=1))
    print("\nwrote " + ", ".join(str(p) for p in paths + [out / "stats.json"]))
    return 0
