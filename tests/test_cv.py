"""dfer cv: five folds on the synthetic corpus, the summary's numbers, kill -9 and resume,
folds split over jobs and collected with --summarise."""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dfer.cli import main
from dfer.emotions import BASIC7
from dfer.experiments import cv_name, mean_std, parse_folds, summarise_cv
from dfer.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CV = "tsm_resnet18_soft_dfew-cv"
EXTRA = ["UAR clear", "WAR clear", "UAR mixed", "WAR mixed", "KL to votes", "ECE"]


def tiny(root: Path, epochs: int = 1) -> list[str]:
    return [f"data.source.root={root}", "data.num_frames=4", "data.size=32", "data.num_workers=0",
            "data.scales=[1.0,0.875]", f"optim.epochs={epochs}", "optim.lr=0.01", "label_mode=soft", "seed=3",
            "threads=1", "tensorboard=false", "progress=false",
            # pinned: precision auto picks a layout by timing, and two runs compared bit for bit must not differ in it
            "optim.precision=fp32"]


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def fold_values(res: dict) -> list[float | None]:
    """The summary columns of one results.json, as fractions (KL in nats)."""
    amb = res["by_ambiguity"]
    return ([res["per_class_recall"][c] for c in BASIC7] + [res["uar"], res["war"]]
            + [amb["clear"]["uar"], amb["clear"]["war"], amb["mixed"]["uar"], amb["mixed"]["war"],
               res["kl_to_votes"], res["ece"]])


def scale(j: int) -> float:
    return 1.0 if j == len(BASIC7) + 2 + 4 else 100.0  # the KL column is not a percentage


def test_parse_folds_and_sample_std():
    assert parse_folds("3") == [3] and parse_folds("1,2,5") == [1, 2, 5] and parse_folds("1-3,5") == [1, 2, 3, 5]
    assert parse_folds(None) is None
    with pytest.raises(ConfigError, match="--folds 'a,2'"):
        parse_folds("a,2")
    with pytest.raises(ConfigError, match="start at 1"):
        parse_folds("0,1")
    m, s = mean_std([0.5, 0.7, None, 0.9])
    assert m == pytest.approx(0.7) and s == pytest.approx(statistics.stdev([0.5, 0.7, 0.9]))  # ddof = 1
    assert mean_std([0.4]) == (0.4, None) and mean_std([None]) == (None, None)


def test_cv_name_encodes_the_protocol_not_the_fold():
    from dfer.config import load_config

    a = load_config(None, ["data.source.fold=2", "label_mode=midas"])
    b = load_config(None, ["data.source.fold=5", "label_mode=midas"])
    assert cv_name(a) == cv_name(b) == "tsm_resnet18_midas-a0.4_dfew-cv"
    assert cv_name(load_config(ROOT / "configs/paper/table6_clear.yaml")) == "tsm_resnet18_soft_dfew-clear-cv"
    t5 = load_config(ROOT / "configs/paper/table5_afew_midas.yaml")
    assert cv_name(t5) == "tsm_resnet18_midas-a0.4_dfew-test_test-afew-val"


@pytest.mark.slow
def test_five_fold_cv_writes_the_table1_summary(synthetic_dfew, tmp_path, capsys):
    assert main(["cv", *tiny(synthetic_dfew), "--out", str(tmp_path)]) == 0
    cv = tmp_path / CV
    results = {k: json.loads((cv / f"fold{k}" / "results.json").read_text()) for k in range(1, 6)}
    rows = read_csv(cv / "summary.csv")
    assert rows[0] == ["fold", *BASIC7, "UAR", "WAR", *EXTRA]
    assert [r[0] for r in rows[1:]] == ["fold 1", "fold 2", "fold 3", "fold 4", "fold 5", "mean", "std"]
    for k in range(1, 6):
        for j, v in enumerate(fold_values(results[k])):
            cell = rows[k][j + 1]
            if v is None:  # a class absent from this test fold
                assert cell == ""
            else:
                assert float(cell) == pytest.approx(scale(j) * v, abs=0.005 + 1e-9), (k, rows[0][j + 1])
    # mean and sample std (n - 1) computed here from the five results.json
    for j in range(len(rows[0]) - 1):
        vals = [fold_values(results[k])[j] for k in range(1, 6)]
        vals = [v for v in vals if v is not None]
        assert float(rows[6][j + 1]) == pytest.approx(scale(j) * statistics.fmean(vals), abs=0.005 + 1e-9)
        if len(vals) > 1:
            assert float(rows[7][j + 1]) == pytest.approx(scale(j) * statistics.stdev(vals), abs=0.005 + 1e-9)
    s = json.loads((cv / "summary.json").read_text())
    assert s["folds"] == [1, 2, 3, 4, 5] and s["missing"] == []
    cm = sum(np.asarray(results[k]["confusion_matrix"]) for k in range(1, 6))
    assert np.array_equal(np.asarray(s["confusion_matrix"]), cm)
    assert cm.sum() == sum(r["num_clips"] - r["num_unlabelled"] for r in results.values())
    md = (cv / "summary.md").read_text()
    assert "| Fold | happy | sad | neutral | angry | surprise | disgust | fear | UAR | WAR |" in md
    uar = [results[k]["uar"] for k in range(1, 6)]
    assert f"{100 * np.mean(uar):.2f} ± {100 * np.std(uar, ddof=1):.2f}" in md
    assert "INCOMPLETE" not in md
    for png in ("confusion.png", "reliability.png"):
        assert (cv / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second invocation trains nothing and writes the same summary
    stamps = {k: (cv / f"fold{k}/checkpoints/last.safetensors").stat().st_mtime_ns for k in range(1, 6)}
    before = (cv / "summary.csv").read_bytes()
    assert main(["cv", *tiny(synthetic_dfew), "--out", str(tmp_path)]) == 0
    assert {k: (cv / f"fold{k}/checkpoints/last.safetensors").stat().st_mtime_ns for k in range(1, 6)} == stamps
    assert (cv / "summary.csv").read_bytes() == before
    assert "finished, not run again" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_9_mid_fold_then_split_jobs_equal_the_uninterrupted_cv(synthetic_dfew, tmp_path, capsys):
    ov = tiny(synthetic_dfew, epochs=2)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert main(["cv", *ov, "--folds", "1,2", "--out", str(ref)]) == 0

    # the interrupted job: killed (the whole process group, kill -9) once fold 1 is finished
    # and fold 2 has checkpointed its first epoch, i.e. while fold 2's second epoch runs
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "dfer", "cv", *ov, "--folds", "1,2", "--out", str(cut)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    marker = cut / CV / "fold2" / "checkpoints" / "last.json"
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, f"dfer cv ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "fold 2 never checkpointed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    f1, f2 = cut / CV / "fold1", cut / CV / "fold2"
    assert (f1 / "results.json").exists() and not (f2 / "results.json").exists()
    assert json.loads(marker.read_text())["epoch"] == 1
    stamp = (f1 / "checkpoints" / "last.safetensors").stat().st_mtime_ns

    # the rest as a job of its own: fold 2 only, resumed after its first epoch
    capsys.readouterr()
    assert main(["cv", *ov, "--folds", "2", "--out", str(cut)]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert (f1 / "checkpoints" / "last.safetensors").stat().st_mtime_ns == stamp  # fold 1 not re-run

    # collecting: folds 3-5 of the 5-fold protocol are missing and said so, exit status 1
    assert main(["cv", "--summarise", *ov, "--out", str(cut)]) == 1
    err = capsys.readouterr().err
    assert "fold(s) 3, 4, 5 missing" in err
    assert "INCOMPLETE: fold(s) 3, 4, 5 not finished" in (cut / CV / "summary.md").read_text()
    # ... and the summary of folds 1-2 equals the uninterrupted one, bit for bit
    assert main(["cv", "--summarise", "--folds", "1,2", "--cv-dir", str(cut / CV)]) == 0
    assert main(["cv", "--summarise", "--folds", "1,2", "--cv-dir", str(ref / CV)]) == 0
    assert (cut / CV / "summary.csv").read_bytes() == (ref / CV / "summary.csv").read_bytes()
    a, b = summarise_cv(cut / CV, [1, 2]), summarise_cv(ref / CV, [1, 2])
    assert a["per_fold"] == b["per_fold"] and a["mean"] == b["mean"] and a["std"] == b["std"]
    from safetensors.torch import load_file

    wa = load_file(str(f2 / "checkpoints" / "last.safetensors"))
    wb = load_file(str(ref / CV / "fold2" / "checkpoints" / "last.safetensors"))
    for k in wa:
        if k.startswith("model."):
            assert np.array_equal(wa[k].numpy(), wb[k].numpy()), k


def test_summarise_reports_an_empty_cv_folder(tmp_path, capsys):
    cv = tmp_path / "x-cv"
    cv.mkdir()
    assert main(["cv", "--summarise", "--cv-dir", str(cv)]) == 2
    assert "no cv.json" in capsys.readouterr().err
    (cv / "cv.json").write_text(json.dumps({"name": "x-cv", "folds": [1, 2], "config": {}}))
    assert main(["cv", "--summarise", "--cv-dir", str(cv)]) == 2
    assert "no finished fold yet (expected 1, 2)" in capsys.readouterr().err


def test_a_cv_folder_written_before_a_setting_existed_is_still_the_same_protocol(tmp_path):
    from dfer.config import load_config
    from dfer.experiments import _write_manifest

    cfg = load_config(None, tiny(tmp_path / "corpus"))
    cv = tmp_path / "cv"
    _write_manifest(cv, cfg, [1, 2, 3, 4, 5])
    doc = json.loads((cv / "cv.json").read_text())
    assert doc["config"]["data"]["source"]["fold"] == "cv"
    # as a dfer without robust.max_frames wrote it: another hash, the same protocol
    doc["protocol_hash"] = "0123456789abcdef"
    del doc["config"]["robust"]["max_frames"]
    (cv / "cv.json").write_text(json.dumps(doc))
    _write_manifest(cv, cfg, [1, 2, 3, 4, 5])  # accepted
    doc["config"]["optim"]["lr"] = 0.5  # another protocol: refused, as before
    (cv / "cv.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="different config"):
        _write_manifest(cv, cfg, [1, 2, 3, 4, 5])
