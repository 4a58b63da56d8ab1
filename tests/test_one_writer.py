"""One writer per folder, and nothing of the user's replaced: dfer train, dfer cv and dfer
preprocess against a second process holding their folder, and against folders they did not
write."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dfer.cli import main
from dfer.errors import ConfigError
from dfer.io import LOCK_NAME, exclusive_folder

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from dfer.io import exclusive_folder
with exclusive_folder(sys.argv[1], "dfer train"):
    print("held", flush=True)
    time.sleep(120)
"""


@contextlib.contextmanager
def held_by_another_process(folder: Path):
    """``folder`` locked by a separate process (a lock is re-entrant within one process)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == b"held"
        yield proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def tiny(root: Path) -> list[str]:
    return [f"data.source.root={root}", "data.num_frames=2", "data.size=32", "data.num_workers=0",
            "data.scales=[1.0]", "optim.epochs=1", "label_mode=soft", "seed=3", "threads=1",
            "tensorboard=false", "progress=false"]


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_the_lock_is_reentrant_in_its_process_and_freed_by_a_kill(tmp_path):
    folder = tmp_path / "run"
    with exclusive_folder(folder, "dfer train"):
        with exclusive_folder(folder, "dfer train"):  # dfer cv locks a fold, then trains it
            pass
        assert (folder / LOCK_NAME).read_text() == f"{os.getpid()} dfer train\n"
    with held_by_another_process(folder) as pid:  # the message names the holder
        with pytest.raises(ConfigError, match=f"another dfer train \\(pid {pid}\\) is writing here"):
            with exclusive_folder(folder, "dfer cv"):
                pass
    with exclusive_folder(folder, "dfer train"):  # the holder was killed -9: no stale lock
        pass


FORK_AND_HOLD = r"""
import os, sys, time
from dfer.io import exclusive_folder
with exclusive_folder(sys.argv[1], "dfer train"):
    if os.fork() == 0:  # a DataLoader worker forked while the run holds its folder
        os.write(1, b"child\n")  # running: the fork hooks have run (one write: lines never interleave)
        time.sleep(120)
        os._exit(0)
    os.write(1, b"held\n")
    time.sleep(120)
"""


def test_a_forked_child_that_outlives_the_killed_holder_does_not_keep_its_lock(tmp_path):
    """flock belongs to the open file, which fork shares: without dropping it in the child,
    a loader worker still alive after ``kill -9`` of its trainer would keep the run locked."""
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", FORK_AND_HOLD, str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert {proc.stdout.readline().strip() for _ in range(2)} == {b"held", b"child"}
        with pytest.raises(ConfigError, match="is writing here"):
            with exclusive_folder(folder, "dfer train"):
                pass
        os.kill(proc.pid, signal.SIGKILL)  # the holder only: its forked child lives on
        proc.wait()
        os.killpg(proc.pid, 0)  # raises ProcessLookupError if the child had gone too
        with exclusive_folder(folder, "dfer train"):
            pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()


def test_a_second_train_into_a_held_run_exits_2_and_writes_nothing(synthetic_dfew, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with held_by_another_process(run) as pid:
        rc = main(["train", "--run-dir", str(run), *tiny(synthetic_dfew)])
    assert rc == 2
    line = _one_line(capsys.readouterr().err)
    assert f"another dfer train (pid {pid}) is writing here" in line and str(run) in line
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # no config, no metrics


@pytest.mark.slow
def test_two_real_trainings_into_one_run_the_second_exits_2_and_the_first_ends_intact(synthetic_dfew, tmp_path,
                                                                                     capsys):
    """Two real ``dfer train`` processes, not a stand-in: the second one stops at once with
    one line naming the first, which goes on to finish a run equal to one trained alone."""
    import json
    import time

    ov = [*tiny(synthetic_dfew), "optim.epochs=6", "data.num_workers=2"]  # long enough to overlap
    alone, run = tmp_path / "alone", tmp_path / "run"
    assert main(["train", "--run-dir", str(alone), *ov]) == 0
    first = subprocess.Popen([sys.executable, "-m", "dfer", "train", "--run-dir", str(run), *ov], cwd=ROOT,
                             env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (run / "config.yaml").exists():  # written under the lock
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        capsys.readouterr()
        assert main(["train", "--run-dir", str(run), *ov]) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"another dfer train (pid {first.pid}) is writing here" in line
        assert first.wait(timeout=600) == 0, first.stderr.read().decode()[-2000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.stderr.close()
    a, b = (json.loads((d / "results.json").read_text()) for d in (alone, run))
    assert (a["uar"], a["war"], a["confusion_matrix"]) == (b["uar"], b["war"], b["confusion_matrix"])
    assert (run / "metrics.csv").read_text().count("\n") == 7  # header + 6 epochs: nothing of the second


def test_train_never_writes_into_a_folder_it_did_not_make(synthetic_dfew, tmp_path, capsys):
    run = tmp_path / "my_notes"
    run.mkdir()
    (run / "thesis.tex").write_text("mine")
    for extra in ([], ["--restart"]):
        assert main(["train", "--run-dir", str(run), *tiny(synthetic_dfew), *extra]) == 2
        assert "did not write (e.g. 'thesis.tex')" in _one_line(capsys.readouterr().err)
    assert sorted(p.name for p in run.iterdir()) == ["thesis.tex"]  # not even a lock file
    assert (run / "thesis.tex").read_text() == "mine"


@pytest.mark.slow
def test_cv_jobs_share_a_folder_fold_by_fold_and_an_overlapping_job_stops(synthetic_dfew, tmp_path, capsys):
    ov = [*tiny(synthetic_dfew), "--out", str(tmp_path)]
    assert main(["cv", *ov, "--folds", "2"]) == 0
    cv_dir = next(tmp_path.glob("*-cv"))
    capsys.readouterr()
    with held_by_another_process(cv_dir / "fold1") as pid:  # a job of fold 1 is running
        assert main(["cv", *ov, "--folds", "1,2"]) == 2  # overlaps it: stops before training
        assert f"another dfer train (pid {pid})" in _one_line(capsys.readouterr().err)
        assert not (cv_dir / "fold1" / "config.yaml").exists()
        assert main(["cv", *ov, "--folds", "2"]) == 0  # a disjoint job runs (fold 2 is done: skipped)
    assert main(["cv", *ov, "--folds", "1"]) == 0
    assert (cv_dir / "fold1" / "results.json").is_file()
    # a folder of the user's by the cv's name is not a cv folder: nothing is written there
    mine = tmp_path / "elsewhere" / cv_dir.name
    mine.mkdir(parents=True)
    (mine / "data.csv").write_text("x")
    capsys.readouterr()
    assert main(["cv", *tiny(synthetic_dfew), "--out", str(tmp_path / "elsewhere"), "--folds", "1"]) == 2
    assert "did not write (e.g. 'data.csv')" in _one_line(capsys.readouterr().err)
    assert [p.name for p in mine.iterdir()] == ["data.csv"]


def test_preprocess_leaves_a_users_folder_where_a_video_would_go(videos_dir, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(videos_dir / "single_face.mp4", src / "clip.mp4")
    out = tmp_path / "out"
    args = ["preprocess", str(src), str(out), "--size", "64", "--detect-every", "6", "--workers", "1"]
    assert main(args) == 0
    # in an OUT of dfer's, a folder of the user's appears where a new video's frames would go
    shutil.copy(videos_dir / "single_face.mp4", src / "clip2.mp4")
    (out / "clip2").mkdir()
    (out / "clip2" / "keep.txt").write_text("the user's")
    capsys.readouterr()
    assert main(args) == 2  # the video failed: its folder is the user's
    out_text = capsys.readouterr().out  # the batch's failures are listed on stdout
    assert "FAILED clip2.mp4" in out_text and "was not written by dfer preprocess" in out_text
    assert sorted(p.name for p in (out / "clip2").iterdir()) == ["keep.txt"]
    assert (out / "clip2" / "keep.txt").read_text() == "the user's"
    # moved away, the next run writes the video's frames there
    shutil.move(out / "clip2", tmp_path / "moved")
    assert main(args) == 0
    assert len(list((out / "clip2").glob("*.jpg"))) > 10
    # and a rerun with other settings replaces dfer's own folder
    os.remove(src / "clip2.mp4")
    assert main([*args[:-4], "--size", "48", "--detect-every", "6", "--workers", "1"]) == 0
    from PIL import Image

    with Image.open(next((out / "clip").glob("*.jpg"))) as img:
        assert img.size == (48, 48)
