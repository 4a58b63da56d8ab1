"""End-to-end training: a tiny run learns, resume is exact, runs on disk are complete."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import dfer.train as train_mod
from conftest import kill_9_into_epoch_2
from dfer.cli import main
from dfer.config import from_dict, RunConfig
from dfer.data.splits import ambiguity_subset, stratified_holdout
from dfer.metrics import confusion_matrix, uar
from dfer.train import train


def tiny_config(root: Path, out: Path, **over) -> RunConfig:
    d = {
        "out_dir": str(out), "seed": 3, "label_mode": "midas",
        "data": {"source": {"kind": "dfew", "root": str(root), "fold": 1}, "num_frames": 4, "size": 32,
                 "num_workers": 0, "scales": [1.0, 0.875]},
        "model": {"name": "tsm_resnet18"},
        # fp32: two fresh runs compared weight for weight must not depend on a speed measurement
        "optim": {"epochs": 2, "batch_size": 8, "lr": 0.01, "precision": "fp32"},
        "eval": {"batch_size": 16}, "tensorboard": False, "progress": False,
    }
    for k, v in over.items():
        node = d
        *path, last = k.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v
    return from_dict(RunConfig, d).validate()


def model_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(run_dir / "checkpoints" / "last.safetensors")).items()
            if k.startswith(("model.", "optim.", "rng.mixer"))}


@pytest.mark.slow
def test_resume_after_interruption_reproduces_the_uninterrupted_weights(synthetic_dfew, tmp_path, monkeypatch):
    full = train(tiny_config(synthetic_dfew, tmp_path, name="full"))
    # interrupt mid-way through epoch 2 (a Ctrl-C between two optimiser steps), then resume
    cfg = tiny_config(synthetic_dfew, tmp_path, name="cut")
    real_lr_at = train_mod.lr_at

    def interrupting_lr_at(step, *a, **k):
        if step == 9:
            raise KeyboardInterrupt
        return real_lr_at(step, *a, **k)

    monkeypatch.setattr(train_mod, "lr_at", interrupting_lr_at)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(train_mod, "lr_at", real_lr_at)
    cut = tmp_path / cfg.run_name()
    assert not (cut / "results.json").exists()
    meta = json.loads((cut / "checkpoints" / "last.json").read_text())
    assert meta["epoch"] == 1  # the checkpoint of the last finished epoch
    from dfer.config import saved_config

    assert saved_config(meta["config"]) == cfg  # the checkpoint records the config it was trained with
    train(cfg)
    a, b = model_tensors(full), model_tensors(cut)
    assert a.keys() == b.keys() and len(a) > 50
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = list(csv.DictReader(open(cut / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert json.loads((cut / "results.json").read_text())["uar"] == json.loads((full / "results.json").read_text())["uar"]
    # a finished run is not redone
    before = (cut / "checkpoints" / "last.safetensors").stat().st_mtime_ns
    train(cfg)
    assert (cut / "checkpoints" / "last.safetensors").stat().st_mtime_ns == before


def _interrupt_at_step(monkeypatch, step_to_stop: int):
    real_lr_at = train_mod.lr_at

    def interrupting_lr_at(step, *a, **k):
        if step == step_to_stop:
            raise KeyboardInterrupt
        return real_lr_at(step, *a, **k)

    monkeypatch.setattr(train_mod, "lr_at", interrupting_lr_at)
    return lambda: monkeypatch.setattr(train_mod, "lr_at", real_lr_at)


@pytest.mark.slow
def test_resume_with_loader_workers_is_exact_and_workers_do_not_change_results(synthetic_dfew, tmp_path, monkeypatch):
    """Persistent workers make the DataLoader draw its base seed in a process's first epoch
    only; that draw must not come from the global stream that dropout uses."""
    workers = {"data.num_workers": 2, "model.dropout": 0.5}
    full = train(tiny_config(synthetic_dfew, tmp_path, name="w2_full", **workers))
    cfg = tiny_config(synthetic_dfew, tmp_path, name="w2_cut", **workers)
    restore = _interrupt_at_step(monkeypatch, 9)  # in epoch 2: the resumed process starts there
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    restore()
    cut = train(cfg)
    serial = train(tiny_config(synthetic_dfew, tmp_path, name="w0", **{**workers, "data.num_workers": 0}))
    a = model_tensors(full)
    for other in (cut, serial):
        b = model_tensors(other)
        assert a.keys() == b.keys() and len(a) > 50
        for k in a:
            assert torch.equal(a[k], b[k]), (other.name, k)
        assert (other / "predictions.csv").read_text() == (full / "predictions.csv").read_text()
    loss = [[r["train_loss"] for r in csv.DictReader(open(r / "metrics.csv"))] for r in (full, cut, serial)]
    assert loss[0] == loss[1] == loss[2] and len(loss[0]) == 2


@pytest.mark.slow
def test_kill_9_at_the_default_workers_then_the_same_command_equals_the_uninterrupted_run(synthetic_dfew,
                                                                                          tmp_path):
    """A real SIGKILL of the whole process group (the loader's 2 workers too) once epoch 1
    is checkpointed, i.e. while epoch 2 runs; the same command then finishes the run."""
    import os
    import sys

    from dfer.config import DataConfig

    assert DataConfig().num_workers == 2  # the default this test is about
    ov = [f"data.source.root={synthetic_dfew}", "data.num_frames=4", "data.size=32", "data.scales=[1.0,0.875]",
          "optim.epochs=3", "optim.batch_size=8", "optim.lr=0.01", "label_mode=midas", "seed=3", "threads=1",
          "tensorboard=false", "progress=false",
          "optim.precision=fp32"]  # auto picks a layout by timing: two processes compared bit for bit must share it
    full, cut = tmp_path / "full", tmp_path / "cut"
    root = Path(__file__).resolve().parents[1]
    assert main(["train", "--run-dir", str(full), *ov]) == 0
    kill_9_into_epoch_2([sys.executable, "-m", "dfer", "train", "--run-dir", cut, *ov], cut,
                        env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=root, after=0.5)
    assert not (cut / "results.json").exists()
    assert main(["train", "--run-dir", str(cut), *ov]) == 0
    a, b = model_tensors(full), model_tensors(cut)
    assert a.keys() == b.keys() and len(a) > 50
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (cut / "predictions.csv").read_text() == (full / "predictions.csv").read_text()
    loss = [[r["train_loss"] for r in csv.DictReader(open(r / "metrics.csv"))] for r in (full, cut)]
    assert loss[0] == loss[1] and len(loss[0]) == 3


def _finished_checkpoint(run: Path, state: dict) -> None:
    from safetensors.torch import save_file

    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n")  # train writes its config first
    save_file({"x": torch.zeros(1)}, str(run / "checkpoints" / "last.safetensors"),
              metadata={"dfer_state": json.dumps(dict(state, finished=True))})
    (run / "results.json").write_text(json.dumps({"uar": 0.5, "war": 0.6}))


def test_a_run_saved_before_a_setting_existed_is_still_recognised(tmp_path, capsys):
    """Resume compares the checkpoint's own config, read with today's defaults, not only its hash."""
    from dfer.config import config_hash, to_dict
    from dfer.errors import ConfigError

    cfg = tiny_config(tmp_path / "corpus", tmp_path, name="old")
    saved = to_dict(cfg)
    del saved["robust"]["max_frames"]  # written by a dfer without that setting: its hash was another
    _finished_checkpoint(tmp_path / "old", {"epoch": 2, "config_hash": "0123456789abcdef", "config": saved})
    assert train(cfg) == tmp_path / "old"
    assert "already finished" in capsys.readouterr().out
    # a checkpoint of another config (or one without its config) is refused as before
    other = to_dict(cfg)
    other["optim"]["lr"] = 0.5
    _finished_checkpoint(tmp_path / "other", {"epoch": 2, "config_hash": "0123456789abcdef", "config": other})
    with pytest.raises(ConfigError, match="different config"):
        train(tiny_config(tmp_path / "corpus", tmp_path, name="other"))
    _finished_checkpoint(tmp_path / "bare", {"epoch": 2, "config_hash": "0123456789abcdef"})
    with pytest.raises(ConfigError, match="different config"):
        train(tiny_config(tmp_path / "corpus", tmp_path, name="bare"))
    # a setting renamed since: refused, and the message says which
    renamed = to_dict(cfg)
    renamed["optim"]["learning_rate"] = renamed["optim"].pop("lr")
    _finished_checkpoint(tmp_path / "renamed", {"epoch": 2, "config_hash": "0123456789abcdef", "config": renamed})
    with pytest.raises(ConfigError, match="no longer reads.*learning_rate"):
        train(tiny_config(tmp_path / "corpus", tmp_path, name="renamed"))
    assert config_hash(cfg) != "0123456789abcdef"


@pytest.mark.slow
def test_run_directory_holds_everything_a_reader_needs(synthetic_dfew, tmp_path):
    run = train(tiny_config(synthetic_dfew, tmp_path, label_mode="soft", **{"optim.epochs": 1,
                                                                            "data.val_fraction": 0.2,
                                                                            "eval.select": "best_val"}))
    for name in ("config.yaml", "metrics.csv", "results.json", "confusion.png", "predictions.csv",
                 "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        assert (run / name).is_file(), name
    res = json.loads((run / "results.json").read_text())
    cm = np.asarray(res["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == res["num_clips"]
    assert res["war"] == pytest.approx(np.trace(cm) / cm.sum())
    for key in ("uar", "per_class_recall", "kl_to_votes", "js_to_votes", "ece"):
        assert key in res, key
    assert 0.0 <= res["kl_to_votes"] and 0.0 <= res["js_to_votes"] <= np.log(2) + 1e-9
    row = next(csv.DictReader(open(run / "metrics.csv")))
    assert float(row["val_uar"]) >= 0.0 and float(row["clips_per_s"]) > 0


def test_cli_bad_root_is_one_line_and_exit_2(tmp_path, capsys):
    rc = main(["train", f"data.source.root={tmp_path / 'nope'}", f"out_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nope" in err[0] and "Traceback" not in err[0]


def test_cli_missing_root_is_reported(tmp_path, capsys):
    rc = main(["train", f"out_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert rc == 2 and "data.source.root" in err


def test_stratified_holdout_keeps_every_class_in_training():
    labels = np.repeat(np.arange(4), [50, 20, 5, 2])
    mask = stratified_holdout(labels, 0.2, seed=0)
    for c, n in zip(range(4), [50, 20, 5, 2]):
        held = int(mask[labels == c].sum())
        assert held == min(round(0.2 * n), n - 1)
        assert (~mask[labels == c]).any()
    groups = np.repeat(np.array(["s1", "s2", "s3", "s4", "s5"]), [10, 20, 15, 20, 12])
    gm = stratified_holdout(labels, 0.2, seed=0, groups=groups)
    for g in np.unique(groups):  # a subject is never on both sides
        assert len(set(gm[groups == g])) == 1


def test_ambiguity_subset_matches_size_and_class_distribution():
    from dfer.data.table import ClipTable
    from dfer.emotions import BASIC7

    rng = np.random.default_rng(0)
    n = 400
    label = rng.choice(7, size=n, p=[.3, .15, .25, .1, .1, .05, .05])
    votes = np.zeros((n, 7), np.float32)
    clear = rng.random(n) < 0.4
    votes[np.arange(n), label] = np.where(clear, 10, 6)
    votes[np.arange(n), (label + 1) % 7] += np.where(clear, 0, 4)
    t = ClipTable.build(BASIC7, [f"c{i}" for i in range(n)], [f"/x/{i}" for i in range(n)], votes=votes, label=label)
    c = ambiguity_subset(t, "clear", seed=0)
    m = ambiguity_subset(t, "mixed", seed=0)
    assert len(c) == len(m) == clear.sum()
    assert (c.soft_labels().max(axis=1) > 0.9).all()
    assert not (m.soft_labels().max(axis=1) > 0.9).all()
    target = np.bincount(label, minlength=7) / n
    for sub in (c, m):
        got = np.bincount(sub.label, minlength=7) / len(sub)
        assert np.abs(got - target).max() < 1.0 / len(sub) + 1e-9
    assert len(set(c.clip_id)) == len(c)


@pytest.mark.slow
def test_a_short_run_learns_the_synthetic_expressions(tmp_path):
    """The demo's recipe, smaller: a from-scratch TSM-ResNet-18 must beat chance clearly."""
    from dfer.data.corpora.synthetic import SynthConfig, write_synthetic_dfew
    from dfer.demo import demo_config

    root = tmp_path / "DFEW"
    write_synthetic_dfew(root, SynthConfig(num_clips=400, num_frames=16, size=48, seed=0))
    cfg = demo_config(root, tmp_path, "hard", epochs=6, size=48, num_frames=8, seed=0, threads=0)
    run = train(cfg)
    res = json.loads((run / "results.json").read_text())
    support = np.asarray(res["confusion_matrix"]).sum(axis=1)
    majority = support.max() / support.sum()
    # a permutation test, no threshold tuned to a machine: the run's UAR must beat the 99.9th
    # percentile of the UARs of its own predictions against shuffled labels
    with open(run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = res["classes"]
    y = np.array([classes.index(r["label"]) for r in rows])
    pred = np.array([classes.index(r["pred"]) for r in rows])
    rng = np.random.default_rng(0)
    null = [uar(confusion_matrix(rng.permutation(y), pred, len(classes))) for _ in range(2000)]
    assert res["uar"] == pytest.approx(uar(confusion_matrix(y, pred, len(classes))))
    assert res["uar"] > np.quantile(null, 0.999), (res["uar"], np.quantile(null, 0.999))
    # and WAR beats always guessing the most frequent test class
    assert res["war"] > majority, (res["war"], majority)
    # and it also tracks the hidden truth better than the majority class does
    assert res["war_true_emotion"] > majority
