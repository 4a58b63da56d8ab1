"""Distributed training (DDP over gloo on the CPU) against the single-process run.

What 2 processes must reproduce of 1 process with the same global batch:

- the batches: every rank takes its slice of the single-process global batches
  (``GlobalBatchShardSampler``), so the union over ranks of step ``s`` is the 1-process
  batch ``s`` (checked exactly, without processes);
- the evaluation: the sharded prediction gathered over 2 ranks equals the 1-process
  prediction of the same checkpoint (same UAR, WAR and confusion matrix; probabilities
  to 1e-6);
- the training: with a model without BatchNorm or dropout the per-rank mean losses
  averaged by DDP are the global-batch mean loss, so 1 and 2 processes end with the same
  weights up to float summation order (rtol 1e-4) and the same UAR/WAR. With BatchNorm
  (the paper's TSM recipe) each rank normalises its half-batch with its own statistics,
  which is a different computation; there the 2-process run is checked to train, write
  once, and land within the tolerance stated in ``test_tsm_recipe_under_torchrun``.

This file is also the torchrun entry point of the BatchNorm-free run: ``python
tests/test_ddp.py train ...`` registers the tiny model and calls ``dfer``'s CLI, so the
model never enters the registry of the pytest process; with ``DFER_TEST_STOP_AFTER_EPOCH=N``
every rank exits after epoch N (the interrupted run of the resume test).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import kill_9_into_epoch_2

ROOT = Path(__file__).resolve().parents[1]
PY = ROOT / ".venv" / "bin" / "python"
TORCHRUN = ROOT / ".venv" / "bin" / "torchrun"


def tiny_overrides(root: Path, **over) -> list[str]:
    d = {"data.source.root": str(root), "data.num_frames": 4, "data.size": 32, "data.num_workers": 0,
         "data.scales": "[1.0,0.875]", "optim.epochs": 2, "optim.batch_size": 8, "optim.lr": 0.01,
         "label_mode": "soft", "seed": 3, "threads": 1, "tensorboard": "false", "progress": "false",
         "optim.precision": "fp32"}  # auto picks a layout by timing; runs compared bit for bit must share it
    d.update(over)
    return [f"{k}={v}" for k, v in d.items()]


def env() -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(k, None)
    return e


def run(cmd: list, timeout: int = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def torchrun(*args) -> list:
    return [TORCHRUN, "--standalone", "--nproc_per_node", "2", *args]


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(str(run_dir / "checkpoints" / "last.safetensors")).items()
            if k.startswith("model.")}


def predictions(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        return {row[0]: np.asarray(row[3:], float) for row in r}


# ---------------------------------------------------------------------- no processes


@pytest.mark.parametrize("n,batch,world", [(54, 8, 2), (67, 8, 4), (13, 4, 2), (8, 8, 8)])
def test_ranks_share_the_single_process_global_batches(n, batch, world):
    from dfer.data.dataset import EpochSampler
    from dfer.distributed import GlobalBatchShardSampler

    for epoch in (0, 3):
        single = EpochSampler(n, shuffle=True, seed=5, epoch=epoch).order()
        shards = []
        for r in range(world):
            s = GlobalBatchShardSampler(n, batch, r, world, seed=5)
            s.set_epoch(epoch)
            shards.append(list(s))
            assert len(shards[-1]) == len(s) == (n // batch) * (batch // world)
        per = batch // world
        for step in range(n // batch):
            union = [i for sh in shards for i in sh[step * per:(step + 1) * per]]
            assert union == single[step * batch:(step + 1) * batch]
    with pytest.raises(Exception, match="not divisible"):
        GlobalBatchShardSampler(10, 6, 0, 4)


# ---------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_tsm_recipe_under_torchrun(synthetic_dfew, tmp_path):
    """The tiny TSM recipe with 2 gloo processes: one writer, and the sharded evaluation
    of a checkpoint equals the single-process evaluation exactly."""
    ov = tiny_overrides(synthetic_dfew)
    one, two = tmp_path / "one", tmp_path / "two"
    run([PY, "-m", "dfer", "train", *ov, "--run-dir", one])
    p = run(torchrun("-m", "dfer", "train", *ov, "--run-dir", two))
    # only rank 0 writes: one metrics row per epoch, one results.json, one line of results
    rows = list(csv.DictReader(open(two / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert p.stdout.count("test UAR") == 1
    res1 = json.loads((one / "results.json").read_text())
    res2 = json.loads((two / "results.json").read_text())
    pred2 = predictions(two / "predictions.csv")
    assert sum(1 for _ in open(two / "predictions.csv")) - 1 == len(pred2) == res2["num_clips"] == res1["num_clips"]
    assert np.asarray(res2["confusion_matrix"]).sum() == res2["num_clips"] - res2["num_unlabelled"]
    # the same global batch, different BatchNorm statistics per rank (4 clips instead of 8):
    # stated tolerance on the test fold (13 clips): WAR within 3 clips, UAR within 0.25
    assert abs(res1["war"] - res2["war"]) <= 3 / res1["num_clips"] + 1e-9
    assert abs(res1["uar"] - res2["uar"]) <= 0.25

    # the same checkpoint evaluated by 2 processes (each predicts half the clips, rank 0
    # gathers) and by the one process that trained it
    q = run(torchrun("-m", "dfer", "evaluate", one, "--tag", "ddp", "--device", "cpu"))
    assert q.stdout.count("UAR") == 1
    ev = json.loads((one / "results.ddp.json").read_text())
    for k in ("uar", "war", "confusion_matrix", "per_class_recall", "num_clips"):
        assert ev[k] == res1[k], k
    a, b = predictions(one / "predictions.csv"), predictions(one / "predictions.ddp.csv")
    assert a.keys() == b.keys()
    for cid in a:
        np.testing.assert_allclose(a[cid], b[cid], atol=1e-6, err_msg=cid)


@pytest.mark.slow
def test_without_batchnorm_two_processes_train_like_one(synthetic_dfew, tmp_path):
    """Same global batch, no BatchNorm, no dropout: DDP must give the 1-process weights
    (up to float summation order) and exactly its UAR/WAR."""
    ov = tiny_overrides(synthetic_dfew, **{"model.name": "tiny_nobn", "model.dropout": 0.0, "optim.lr": 0.05})
    one, two = tmp_path / "one", tmp_path / "two"
    run([PY, __file__, "train", *ov, "--run-dir", one])
    run(torchrun(__file__, "train", *ov, "--run-dir", two))
    wa, wb = weights(one), weights(two)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wb[k].numpy(), wa[k].numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
    la = list(csv.DictReader(open(one / "metrics.csv")))
    lb = list(csv.DictReader(open(two / "metrics.csv")))
    for ra, rb in zip(la, lb, strict=True):
        assert float(ra["train_loss"]) == pytest.approx(float(rb["train_loss"]), rel=1e-5)
        assert float(ra["lr"]) == float(rb["lr"])
    # the training moved (else equal weights would prove nothing)
    assert abs(float(la[0]["train_loss"]) - float(la[-1]["train_loss"])) > 1e-3
    r1 = json.loads((one / "results.json").read_text())
    r2 = json.loads((two / "results.json").read_text())
    assert (r1["uar"], r1["war"], r1["confusion_matrix"]) == (r2["uar"], r2["war"], r2["confusion_matrix"])


@pytest.mark.slow
def test_a_two_process_run_killed_9_resumes_to_the_uninterrupted_weights(synthetic_dfew, tmp_path):
    """A real SIGKILL of the whole torchrun job (agent, both ranks, their 2 loader workers
    each) once epoch 1 is checkpointed, i.e. while epoch 2 runs; the same torchrun command
    then resumes from rank 0's checkpoint and ends bit-identical to a 2-process run that was
    never interrupted (same process count: the same computation)."""
    ov = tiny_overrides(synthetic_dfew, **{"data.num_workers": 2, "optim.epochs": 3})
    full, cut = tmp_path / "full", tmp_path / "cut"
    run(torchrun("-m", "dfer", "train", *ov, "--run-dir", full))
    kill_9_into_epoch_2(torchrun("-m", "dfer", "train", *ov, "--run-dir", cut), cut, env=env(), cwd=ROOT, after=0.1)
    assert not (cut / "results.json").exists()
    q = run(torchrun("-m", "dfer", "train", *ov, "--run-dir", cut))
    assert re.search(r"resuming after epoch [12]", q.stdout), q.stdout
    wa, wb = weights(full), weights(cut)
    assert wa.keys() == wb.keys() and len(wa) > 50
    for k in wa:
        assert np.array_equal(wa[k].numpy(), wb[k].numpy()), k
    assert [r["epoch"] for r in csv.DictReader(open(cut / "metrics.csv"))] == ["1", "2", "3"]
    ra = json.loads((full / "results.json").read_text())
    rb = json.loads((cut / "results.json").read_text())
    assert (ra["uar"], ra["war"], ra["confusion_matrix"]) == (rb["uar"], rb["war"], rb["confusion_matrix"])


@pytest.mark.slow
def test_a_planned_stop_of_a_two_process_run_resumes_alike(synthetic_dfew, tmp_path):
    """Both ranks stop after epoch 1 as when a job's time runs out (exit 3, a clean stop
    rather than a kill): the same command resumes, with the default 2 loader workers, to
    the uninterrupted run's weights."""
    ov = tiny_overrides(synthetic_dfew, **{"data.num_workers": 2})
    full, cut = tmp_path / "full", tmp_path / "cut"
    run(torchrun("-m", "dfer", "train", *ov, "--run-dir", full))
    p = subprocess.run([str(c) for c in torchrun(__file__, "train", *ov, "--run-dir", cut)], cwd=ROOT,
                       env=dict(env(), DFER_TEST_STOP_AFTER_EPOCH="1"), capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and re.search(r"exitcode\s*:\s*3", p.stderr), p.stderr[-2000:]  # the planned stop
    assert json.loads((cut / "checkpoints" / "last.json").read_text())["epoch"] == 1
    q = run(torchrun("-m", "dfer", "train", *ov, "--run-dir", cut))
    assert "resuming after epoch 1" in q.stdout
    wa, wb = weights(full), weights(cut)
    for k in wa:
        assert np.array_equal(wa[k].numpy(), wb[k].numpy()), k


# ---------------------------------------------------------------------- torchrun entry point


def _stop_after_epoch(n: int) -> None:
    """Make every rank exit (code 3) right after the end-of-epoch barrier of epoch ``n``."""
    import dfer.train as train_mod

    real, calls = train_mod.barrier, [0]

    def barrier(info):
        real(info)
        calls[0] += 1
        if calls[0] == n + 1:  # the first barrier follows the creation of the run directory
            raise SystemExit(3)

    train_mod.barrier = barrier


def _register_tiny_model() -> None:
    import torch
    from torch import nn

    from dfer.models.registry import list_models, register_model

    if "tiny_nobn" in list_models():
        return

    class TinyNoBN(nn.Module):
        """Per-frame conv features averaged over time; no BatchNorm, no dropout."""

        def __init__(self, num_classes: int):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 5, stride=2)
            self.fc = nn.Linear(16, num_classes)

        def forward(self, clip: torch.Tensor) -> torch.Tensor:
            B, T = clip.shape[:2]
            x = torch.relu(self.conv(clip.flatten(0, 1))).mean(dim=(2, 3))
            return self.fc(x.view(B, T, -1).mean(1))

    def tiny_nobn(*, num_classes: int, pretrained: bool | str = False, dropout: float = 0.0) -> nn.Module:
        return TinyNoBN(num_classes)

    register_model(tiny_nobn)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    _register_tiny_model()
    if os.environ.get("DFER_TEST_STOP_AFTER_EPOCH"):
        _stop_after_epoch(int(os.environ["DFER_TEST_STOP_AFTER_EPOCH"]))
    from dfer.cli import main

    sys.exit(main(sys.argv[1:]))
