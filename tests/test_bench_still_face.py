"""benchmarks/still_face_baseline.py: both arms measured the same way on FER+ Valid, reproducibly."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import load_benchmark, write_random_ferplus

FOLDERS = ("FER2013Train", "FER2013Valid")


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("still_face_baseline")


@pytest.fixture(scope="module")
def ferplus_root(tmp_path_factory) -> Path:
    # random faces rather than tests/data/ferplus: 136 training images give the dfer arm
    # (batch 128, last partial batch dropped) one optimiser step; the fixture's 13 give none
    return write_random_ferplus(tmp_path_factory.mktemp("ferplus"))


def _kept(root: Path, folder: str) -> int:
    """Images whose most votes (first of ties) go to one of the eight emotions."""
    with open(root / folder / "label.csv", newline="") as f:
        return sum(int(np.argmax([int(c) for c in row[2:12]])) < 8 for row in csv.reader(f) if row)


def _run(bench, capsys, root: Path, out: Path, *extra: str) -> dict:
    rc = bench.main(["--root", str(root), "--out", str(out), "--epochs", "1", "--threads", "1",
                     "--num-workers", "0", *extra])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "still_face_baseline.json").read_text())
    return report


def test_both_arms_are_measured_alike_and_the_naive_arm_is_reproducible(bench, ferplus_root, tmp_path, capsys):
    first = _run(bench, capsys, ferplus_root, tmp_path / "a", "--only", "naive")["arms"]["naive"]
    both = _run(bench, capsys, ferplus_root, tmp_path / "a")["arms"]
    assert set(both) == {"naive", "dfer"}
    assert both["naive"]["reused"] and not both["dfer"]["reused"]  # same settings: read back, not retrained

    kept = _kept(ferplus_root, "FER2013Valid")
    for arm in both.values():
        for key in ("accuracy", "uar", "ece"):
            assert 0.0 <= arm[key] <= 1.0, key
        assert math.isfinite(arm["kl"]) and arm["kl"] >= 0.0
        assert arm["num_images"] == kept and arm["epochs"] == 1 and arm["train_seconds"] > 0
    assert both["naive"]["train_images"] == both["dfer"]["train_images"] == _kept(ferplus_root, "FER2013Train")

    # the script's scorer on dfer's probabilities gives what dfer's own evaluation wrote
    own = json.loads((Path(both["dfer"]["run_dir"]) / "results.json").read_text())
    assert own["num_clips"] == kept
    assert (own["war"], own["uar"]) == (both["dfer"]["accuracy"], both["dfer"]["uar"])
    # the run may evaluate with channels-last weights (precision auto): equal up to float rounding
    assert own["ece"] == pytest.approx(both["dfer"]["ece"], abs=1e-6)
    assert own["kl_to_votes"] == pytest.approx(both["dfer"]["kl"], rel=1e-6)

    again = _run(bench, capsys, ferplus_root, tmp_path / "b", "--only", "naive")["arms"]["naive"]
    assert not again["reused"]
    same = ("accuracy", "uar", "kl", "ece")
    assert [again[k] for k in same] == [first[k] for k in same]

    other = _run(bench, capsys, ferplus_root, tmp_path / "a", "--only", "naive", "--seed", "1")["arms"]["naive"]
    assert not other["reused"]  # another seed is another measurement


def test_limit_keeps_the_first_rows_of_train_and_valid_only(bench, ferplus_root, tmp_path):
    sub = bench.limited_root(ferplus_root, tmp_path, 5)
    assert sorted(p.name for p in sub.iterdir()) == sorted(FOLDERS)
    for folder in FOLDERS:
        want = (ferplus_root / folder / "label.csv").read_text().splitlines()[:5]
        assert (sub / folder / "label.csv").read_text().splitlines() == want
        names, images, votes = bench.read_split(sub / folder)
        assert images.shape[1:] == (48, 48) and images.dtype == np.uint8 and votes.shape == (len(names), 8)


def test_score_counts_a_tie_as_its_first_class(bench):
    votes = np.array([[5, 5, 0, 0, 0, 0, 0, 0], [0, 0, 0, 4, 4, 2, 0, 0]], float)
    probs = np.full((2, 8), 0.02)
    probs[0, 0] = probs[1, 3] = 0.86  # the first of each tie
    s = bench.score(probs, votes)
    assert (s["accuracy"], s["uar"], s["num_images"]) == (1.0, 1.0, 2)
    probs[[0, 1]] = probs[[0, 1]][:, [1, 0, 2, 4, 3, 5, 6, 7]]  # now the second of each tie
    assert bench.score(probs, votes)["accuracy"] == 0.0


def test_a_folder_without_ferplus_splits_is_one_line(bench, tmp_path, capsys):
    assert bench.main(["--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FER2013Train/label.csv" in err[0]
