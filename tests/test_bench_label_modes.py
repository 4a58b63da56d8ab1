"""benchmarks/ferplus_label_modes.py: every row and seed trained once, jobs shared by
processes, the subset stratified and fixed, the report complete only when every job is."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import load_benchmark, write_random_ferplus


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ferplus_label_modes")


def _majority(folder: Path) -> list[int]:
    with open(folder / "label.csv", newline="") as f:
        return [int(np.argmax([int(c) for c in r[2:12]])) for r in csv.reader(f) if r]


def test_the_subset_is_stratified_seeded_and_keeps_valid_whole(bench, tmp_path):
    root = write_random_ferplus(tmp_path / "ferplus", sizes=(400, 30))
    a = bench.subset_root(root, tmp_path / "a", 0.25, seed=0)
    b = bench.subset_root(root, tmp_path / "b", 0.25, seed=0)
    c = bench.subset_root(root, tmp_path / "c", 0.25, seed=1)
    train = [(x / "FER2013Train" / "label.csv").read_text() for x in (a, b, c)]
    assert train[0] == train[1] != train[2]  # fixed by its seed
    full, sub = np.bincount(_majority(root / "FER2013Train"), minlength=10), \
        np.bincount(_majority(a / "FER2013Train"), minlength=10)
    assert np.all(np.abs(sub - np.round(full * 0.25)) <= 1) and np.all(sub[full > 0] >= 1)  # per class
    assert (a / "FER2013Valid" / "label.csv").read_text().splitlines() == \
        (root / "FER2013Valid" / "label.csv").read_text().splitlines()
    for line in (a / "FER2013Train" / "label.csv").read_text().splitlines():
        name = line.split(",")[0]
        assert (a / "FER2013Train" / name).resolve() == (root / "FER2013Train" / name).resolve()


@pytest.mark.slow
def test_every_row_and_seed_once_and_a_rerun_trains_nothing(bench, tmp_path, capsys, monkeypatch):
    root = write_random_ferplus(tmp_path / "ferplus", sizes=(300, 24))
    args = ["--root", str(root), "--out", str(tmp_path / "out"), "--fraction", "0.5", "--epochs", "1", "--size", "32",
            "--batch-size", "32", "--rows", "hard", "mixup", "--seeds", "0", "1"]
    # another process holds mixup seed 1: this one leaves it, and its report says so
    claim = tmp_path / "out" / "jobs" / f"{bench.job_key('mixup', {}, 1)}.claim"
    claim.parent.mkdir(parents=True)
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        claim.write_text(str(holder.pid))
        assert bench.main(args) == 0
        partial = json.loads(capsys.readouterr().out)
        assert partial["complete"] is False and partial["missing"] == ["mixup_default_seed1"]
        assert [(r["row"], r["seeds"]) for r in partial["rows"]] == [("hard", [0, 1]), ("mixup", [0])]
    finally:
        holder.kill()
        holder.wait()
    # the holder died without finishing: its claim is taken over
    assert bench.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] is True and not claim.exists()
    subset = next((tmp_path / "out").glob("ferplus_train0.5_seed0"))
    kept = sum(m < 8 for m in _majority(subset / "FER2013Train"))  # the unknown-majority image is dropped
    for row in report["rows"]:
        assert row["seeds"] == [0, 1] and row["train_images"] == kept
        assert len(row["accuracy"]) == 2 and row["accuracy_mean"] == pytest.approx(np.mean(row["accuracy"]))
        assert 0 <= row["accuracy_mean"] <= 1 and row["kl_mean"] > 0
    runs = sorted(p.name for p in (tmp_path / "out" / "runs").iterdir())
    assert runs == ["hard_default_seed0", "hard_default_seed1", "mixup_default_seed0", "mixup_default_seed1"]
    # a rerun reuses every job
    import dfer.train

    monkeypatch.setattr(dfer.train, "train", lambda *a, **k: pytest.fail("trained again"))
    assert bench.main(args) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == report["rows"]
