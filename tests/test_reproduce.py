"""dfer reproduce / dfer compare: every table maps to recipes, overrides win, and Table 2
runs end to end on the synthetic corpus in the paper's layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dfer.cli import main
from dfer.errors import ConfigError
from dfer.reproduce import TABLES, recipe_dir, table_configs

ROOT = Path(__file__).resolve().parents[1]
TINY = ["optim.epochs=1", "data.size=32", "data.num_frames=4", "model.pretrained=false", "data.num_workers=0",
        "threads=1", "tensorboard=false", "progress=false", "data.scales=[1.0,0.875]"]


def test_every_paper_recipe_belongs_to_a_table_and_every_table_to_recipes():
    import dfer

    # inside the package (package data, so a plain `pip install` has the recipes), and the
    # source tree's configs/ is the same folder
    assert recipe_dir() == Path(dfer.__file__).resolve().parent / "configs" / "paper"
    assert recipe_dir() == (ROOT / "configs" / "paper").resolve()
    on_disk = {p.stem for p in recipe_dir().glob("*.yaml") if not p.stem.startswith("_")}
    used = {r for spec in TABLES.values() if spec.folder == "paper" for r in spec.recipes}
    assert used == on_disk
    assert sorted(TABLES) == ["rdfer"] + [f"table{i}" for i in range(1, 8)]
    for spec in TABLES.values():
        assert len(spec.paper) == (len(spec.recipes) if spec.folder == "paper" else 0)
        assert all((recipe_dir(spec.folder) / f"{r}.yaml").is_file() for r in spec.recipes)


def test_table_rows_follow_the_paper():
    # (label mode, model) of each row, in the paper's order
    expect = {
        "table2": [("hard", "tsm_resnet18"), ("soft", "tsm_resnet18"), ("midas", "tsm_resnet18")],
        "table3": [("hard", "tsm_resnet18"), ("soft", "tsm_resnet18"), ("midas-hard", "tsm_resnet18"),
                   ("midas", "tsm_resnet18")],
        "table7": [("hard", "resnet18_gru"), ("soft", "resnet18_gru"), ("midas", "resnet18_gru")],
        "table1": [("hard", "r3d_18"), ("hard", "resnet18_gru"), ("midas", "tsm_resnet18")],
    }
    for table, rows in expect.items():
        _, cfgs = table_configs(table, "/data/DFEW")
        assert [(c.label_mode, c.model.name) for c in cfgs] == rows, table
    _, (clear, mixed) = table_configs("table6", "/data/DFEW")
    assert (clear.data.train_subset, mixed.data.train_subset) == ("clear", "mixed")
    _, (f39,) = table_configs("table4", "/data/FERV39K")
    assert (f39.data.source.kind, f39.data.source.root, f39.optim.lr, f39.label_mode) == \
        ("ferv39k", "/data/FERV39K", 0.01, "midas-hard")


def test_roots_and_overrides_win_over_the_recipes():
    spec, cfgs = table_configs("table5", "/d/DFEW", afew_root="/d/AFEW",
                               overrides=["model.pretrained=false", "optim.epochs=3"])
    for c in cfgs:
        assert c.data.source.root == "/d/DFEW" and c.data.test_source.root == "/d/AFEW"
        assert c.model.pretrained is False and c.optim.epochs == 3  # the recipes say true / 450
    _, (tsm, tsm_midas, rdfer, rdfer_midas) = table_configs("rdfer", "/d/DFEW")
    # the RDFER table's baselines are the MIDAS recipes themselves, the RDFER rows differ in the model
    # and robust learning only
    _, t3 = table_configs("table3", "/d/DFEW")  # hard, soft, MIDAS w/ hard label, MIDAS
    assert tsm == t3[0] and tsm_midas == t3[2]
    assert [(c.label_mode, c.model.name, c.robust.enabled) for c in (tsm, tsm_midas, rdfer, rdfer_midas)] == [
        ("hard", "tsm_resnet18", False), ("midas-hard", "tsm_resnet18", False),
        ("hard", "rdfer_resnet18", True), ("midas-hard", "rdfer_resnet18", True)]
    assert (rdfer.optim, rdfer.data.source, rdfer.data.num_frames) == (tsm.optim, tsm.data.source, tsm.data.num_frames)
    _, cfgs = table_configs("table2", "/d/DFEW", overrides=["data.source.root=/elsewhere"])
    assert all(c.data.source.root == "/elsewhere" for c in cfgs)
    with pytest.raises(ConfigError, match="table5 tests on AFEW: give --afew-root"):
        table_configs("table5", "/d/DFEW")
    with pytest.raises(ConfigError, match="unknown table 'table9'"):
        table_configs("table9", "/d/DFEW")


@pytest.mark.slow
def test_reproduce_table2_end_to_end_and_compare(synthetic_dfew, tmp_path, capsys):
    rc = main(["reproduce", "table2", "--data-root", str(synthetic_dfew), "--folds", "1", "--out", str(tmp_path),
               *TINY])
    assert rc == 0
    out = capsys.readouterr().out
    md = (tmp_path / "table2" / "table2.md").read_text()
    assert md in out
    rows = list(csv.reader(open(tmp_path / "table2" / "table2.csv")))
    assert rows[0][:7] == ["Label", "UAR", "WAR", "KL to votes", "ECE", "ΔUAR", "ΔWAR"]
    assert rows[0][-2:] == ["Paper UAR", "Paper WAR"]
    assert [r[0] for r in rows[1:]] == ["Hard", "Soft", "MIDAS"]
    assert [r[-2:] for r in rows[1:]] == [["54.03", "64.31"], ["54.61", "67.27"], ["57.45", "69.16"]]
    dirs = {m: tmp_path / "table2" / name for m, name in
            (("hard", "tsm_resnet18_hard_dfew-cv"), ("soft", "tsm_resnet18_soft_dfew-cv"),
             ("midas", "tsm_resnet18_midas-a0.4_dfew-cv"))}
    res = {m: json.loads((d / "fold1" / "results.json").read_text()) for m, d in dirs.items()}
    for row, m in zip(rows[1:], ("hard", "soft", "midas")):
        assert row[1] == f"{100 * res[m]['uar']:.2f}" and row[2] == f"{100 * res[m]['war']:.2f}"
        assert json.loads((dirs[m] / "fold1" / "checkpoints" / "last.json").read_text())["epoch"] == 1
    assert rows[1][5:7] == ["(baseline)", "(baseline)"]
    assert rows[3][5] == f"{100 * (res['midas']['uar'] - res['hard']['uar']):+.2f}"

    # dfer compare on the same folders, measured from the Soft row, written to a file
    table = tmp_path / "cmp.md"
    assert main(["compare", str(dirs["hard"]), str(dirs["midas"]), str(dirs["soft"]), "--baseline", "soft",
                 "--out", str(table)]) == 0
    rows = list(csv.reader(open(tmp_path / "cmp.csv")))
    assert [r[0] for r in rows[1:]] == ["Hard", "MIDAS", "Soft"]
    assert rows[3][5] == "(baseline)"
    assert rows[1][5] == f"{100 * (res['hard']['uar'] - res['soft']['uar']):+.2f}"
    assert rows[1][6] == f"{100 * (res['hard']['war'] - res['soft']['war']):+.2f}"
    assert "| Label | UAR | WAR |" in table.read_text()
    # a rerun replaces its own table; a file of the user's is refused, untouched
    assert main(["compare", str(dirs["hard"]), str(dirs["soft"]), "--out", str(table)]) == 0, capsys.readouterr().err
    assert [r[0] for r in csv.reader(open(tmp_path / "cmp.csv"))][1:] == ["Hard", "Soft"]
    notes = tmp_path / "notes.md"
    notes.write_text("my notes\n")
    capsys.readouterr()
    assert main(["compare", str(dirs["hard"]), "--out", str(notes)]) == 2
    assert "notes.md exists and was not written by dfer compare" in capsys.readouterr().err
    assert notes.read_text() == "my notes\n" and not (tmp_path / "notes.csv").exists()
    capsys.readouterr()
    assert main(["compare", str(dirs["hard"]), "--baseline", "mixup"]) == 2
    assert "--baseline 'mixup' matches 0 rows" in capsys.readouterr().err
    # Table 1's layout: a column per class
    assert main(["compare", str(dirs["hard"]), str(dirs["midas"]), "--per-class"]) == 0
    assert "| Model | Label | happy | sad | neutral | angry | surprise | disgust | fear | UAR | WAR |" in \
        capsys.readouterr().out
