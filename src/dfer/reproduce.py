"""Reproduce one table of the MIDAS paper (Kawamura et al.), or the RDFER comparison, with one command.

``dfer reproduce TABLE --data-root ROOT`` runs the recipes (``configs/paper/``; for
``rdfer``, ``configs/rdfer/``) that make the table's rows, each as a cross-validation
(:mod:`dfer.experiments`: resumable, one folder per fold), then writes the table
(:mod:`dfer.compare`) next to them as ``<out>/<table>/<table>.md`` and ``.csv``, with the
paper's UAR/WAR beside the measured ones where the paper gives them.

=======  =========================================================  ===================
table    rows (recipes in configs/paper/)                           data
=======  =========================================================  ===================
table1   3D ResNet-18 hard, ResNet18+GRU hard, TSM MIDAS (per class) DFEW, 5 folds
table2   TSM hard, soft, MIDAS                                      DFEW, 5 folds
table3   TSM hard, soft, MIDAS w/ hard label, MIDAS                 DFEW, 5 folds
table4   TSM MIDAS w/ hard label, lr 0.01                           FERV39K train/test
table5   TSM hard, soft, MIDAS trained on DFEW, tested on AFEW      DFEW (all) -> AFEW val
table6   TSM soft on the clear vs the mixed group                   DFEW, 5 folds
table7   ResNet18+GRU hard, soft, MIDAS                             DFEW, 5 folds
rdfer    TSM hard, TSM MIDAS w/ hard label, RDFER hard, RDFER       DFEW, 5 folds
         MIDAS w/ hard label (configs/rdfer/; no reference column:
         only the RDFER abstract is at hand)
=======  =========================================================  ===================

``--data-root`` is the DFEW folder (FERV39K's for table4); table5 also needs
``--afew-root`` (AFEW preprocessed with ``dfer preprocess``). ``key=value`` overrides are
applied after the recipe and the roots, so they win (``optim.epochs=1
model.pretrained=false`` for a smoke run). Rows that share a recipe (Tables 2 and 3) share
their runs: a finished fold is never trained twice.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from dfer.compare import compare
from dfer.config import load_config
from dfer.errors import ConfigError
from dfer.experiments import cv_name, parse_folds, run_cv


@dataclass(frozen=True)
class TableSpec:
    """One table: its title, recipes (file stems in ``configs/<folder>/``) and the paper's
    (UAR, WAR) per row in percent (empty: no published figures to show beside ours)."""

    title: str
    recipes: tuple[str, ...]
    paper: tuple[tuple[float, float], ...]
    folder: str = "paper"
    per_class: bool = False
    root_kind: str = "DFEW"
    needs_afew: bool = False
    baseline: str | None = None


TABLES: dict[str, TableSpec] = {
    "table1": TableSpec("Table 1: accuracy for each emotion class, UAR and WAR on DFEW",
                        ("table1_r3d_hard", "table7_gru_hard", "table2_tsm_midas"),
                        ((46.52, 58.27), (51.68, 64.02), (57.45, 69.16)), per_class=True),
    "table2": TableSpec("Table 2: MIDAS vs training on soft and hard labels (ResNet18+TSM, DFEW)",
                        ("table2_tsm_hard", "table2_tsm_soft", "table2_tsm_midas"),
                        ((54.03, 64.31), (54.61, 67.27), (57.45, 69.16))),
    "table3": TableSpec("Table 3: MIDAS with and without hard labels (ResNet18+TSM, DFEW)",
                        ("table2_tsm_hard", "table2_tsm_soft", "table3_tsm_midas-hard", "table2_tsm_midas"),
                        ((54.03, 64.31), (54.61, 67.27), (54.93, 65.66), (57.45, 69.16))),
    "table4": TableSpec("Table 4: MIDAS with hard labels on FERV39K (ResNet18+TSM, lr 0.01)",
                        ("table4_ferv39k_midas-hard",), ((39.2, 47.37),), root_kind="FERV39K"),
    "table5": TableSpec("Table 5: trained on DFEW, tested on AFEW (ResNet18+TSM)",
                        ("table5_afew_hard", "table5_afew_soft", "table5_afew_midas"),
                        ((38.20, 40.72), (36.67, 39.61), (39.56, 43.77)), needs_afew=True),
    "table6": TableSpec("Table 6: training with and without ambiguous data (ResNet18+TSM, soft labels, DFEW)",
                        ("table6_clear", "table6_mixed"), ((45.42, 58.46), (48.54, 60.91))),
    "table7": TableSpec("Table 7: the 2DCNN-GRU architecture (ResNet18+GRU, DFEW)",
                        ("table7_gru_hard", "table7_gru_soft", "table7_gru_midas"),
                        ((51.62, 64.00), (51.82, 65.00), (53.70, 67.01))),
    # the synthetic known-truth table of docs/rdfer.md, on the real corpus
    "rdfer": TableSpec("RDFER vs TSM-R18, with and without MIDAS on hard labels (DFEW)",
                       ("tsm_hard", "tsm_midas-hard", "rdfer_hard", "rdfer_midas-hard"), (), folder="rdfer"),
}


def recipe_dir(folder: str = "paper") -> Path:
    """``dfer/configs/<folder>``: the recipes are package data, so any install has them (the
    source tree's ``configs/`` is a link to the same folder)."""
    return Path(__file__).resolve().parent / "configs" / folder


def table_configs(table: str, data_root: str, *, afew_root: str | None = None, overrides: list[str] = (),
                  configs: str | Path | None = None):
    """The resolved RunConfigs of ``table``'s rows: recipe, then the roots, then ``overrides``."""
    key = table.lower().replace(" ", "")
    if key not in TABLES:
        raise ConfigError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    spec = TABLES[key]
    if spec.needs_afew and not afew_root:
        raise ConfigError(f"{key} tests on AFEW: give --afew-root (AFEW preprocessed with dfer preprocess)")
    folder = Path(configs) if configs else recipe_dir(spec.folder)
    cfgs = []
    for stem in spec.recipes:
        path = folder / f"{stem}.yaml"
        if not path.is_file():
            raise ConfigError(f"recipe {path} not found; point --configs at the folder holding "
                              f"configs/{spec.folder}")
        roots = [f"data.source.root={data_root}"]
        if spec.needs_afew:
            roots.append(f"data.test_source.root={afew_root}")
        cfgs.append(load_config(path, roots + list(overrides)))
    return spec, cfgs


def reproduce(table: str, data_root: str, *, afew_root: str | None = None, folds: list[int] | None = None,
              out: str | Path = "runs/paper", overrides: list[str] = (), configs: str | Path | None = None,
              baseline: str | None = None) -> Path:
    """Run every row of ``table`` (resuming finished work) and write ``<out>/<table>/<table>.md``.

    Returns:
        The path of the Markdown table.
    """
    spec, cfgs = table_configs(table, data_root, afew_root=afew_root, overrides=overrides, configs=configs)
    key = table.lower().replace(" ", "")
    table_dir = Path(out) / key
    cv_dirs = []
    for stem, cfg in zip(spec.recipes, cfgs):
        if _is_main():
            print(f"dfer reproduce {key}: {stem} -> {table_dir / cv_name(cfg)}", file=sys.stderr, flush=True)
        cv_dirs.append(run_cv(cfg, table_dir, folds))
    md_path = table_dir / f"{key}.md"
    if _is_main():
        reference = [{"uar": u, "war": w} for u, w in spec.paper] or None
        compare(cv_dirs, baseline=baseline or spec.baseline, per_class=spec.per_class, out=md_path,
                title=spec.title, reference=reference)
    return md_path


def _is_main() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", choices=sorted(TABLES), help="which table of the MIDAS paper, or rdfer")
    p.add_argument("--data-root", required=True, help="the DFEW folder (table4: the FERV39K folder)")
    p.add_argument("--afew-root", help="table5: the preprocessed AFEW folder")
    p.add_argument("--folds", help="folds to run, e.g. 1 or 1,2,3 (default: all five)")
    p.add_argument("--out", default="runs/paper", help="parent folder (default %(default)s); the table goes "
                                                       "to OUT/TABLE/TABLE.md")
    p.add_argument("--configs", help="folder of the recipes (default: configs/paper of the source tree; "
                                     "configs/rdfer for rdfer)")
    p.add_argument("--baseline", help="row the differences are measured from (default: the first)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides applied to every recipe, after the roots")


def run(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    try:
        path = reproduce(args.table, args.data_root, afew_root=args.afew_root, folds=parse_folds(args.folds),
                         out=args.out, overrides=args.overrides, configs=args.configs, baseline=args.baseline)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if _is_main():
        print(path.read_text())
        print(f"dfer reproduce: wrote {path} and {path.with_suffix('.csv')}", file=sys.stderr)
    return 0
