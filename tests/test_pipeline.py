"""``dfer preprocess``: layout, manifest, report, failures, resumability (dfer.preprocess.pipeline).

End-to-end runs use the real videos in tests/data/videos at a reduced detection
setting (--detect-every 3) to keep the file fast; the kill -9 tests run the CLI as a
subprocess and compare the output tree byte for byte with an uninterrupted run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dfer.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--detect-every", "3", "--progress", "off"]


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (the lock file's content is empty)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def batch_src(tmp_path_factory, videos_dir) -> Path:
    """SRC/Happy/face.mp4, SRC/other/no_face.mp4, SRC/other/broken.mp4 (truncated header)."""
    src = tmp_path_factory.mktemp("batch") / "src"
    videos = videos_dir
    (src / "Happy").mkdir(parents=True)
    (src / "other").mkdir()
    shutil.copy(videos / "single_face.mp4", src / "Happy" / "face.mp4")
    shutil.copy(videos / "no_face.mp4", src / "other" / "no_face.mp4")
    (src / "other" / "broken.mp4").write_bytes((videos / "single_face.mp4").read_bytes()[:3000])
    return src


@pytest.fixture(scope="module")
def batch_run(batch_src, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch_out") / "out"
    before = _tree(batch_src)
    rc = main(["preprocess", str(batch_src), str(out), *FAST])
    return rc, out, before


def test_batch_layout_manifest_and_failures(batch_run, batch_src, capsys):
    rc, out, before = batch_run
    assert rc == 2  # the batch ran to its end; its failures are listed and make the exit code 2
    frames = sorted(p.name for p in (out / "Happy" / "face").iterdir())
    assert frames == [f"{t:05d}.jpg" for t in range(1, 73)]
    with open(out / "manifest.csv") as f:
        assert list(csv.DictReader(f)) == [{"path": "Happy/face", "num_frames": "72"}]
    report = json.loads((out / "report.json").read_text())
    by_source = {v["source"]: v for v in report["videos"]}
    assert by_source["Happy/face.mp4"]["status"] == "ok"
    assert by_source["Happy/face.mp4"]["filled_frames"] == 0
    assert by_source["Happy/face.mp4"]["detected_frames"] == 25
    assert by_source["other/no_face.mp4"]["status"] == "failed"
    assert by_source["other/no_face.mp4"]["error"].startswith("no face found in 95 frames")
    assert "cannot open video" in by_source["other/broken.mp4"]["error"]
    assert report["summary"] == {"videos": 3, "ok": 1, "failed": 2, "frames": 72, "filled_frames": 0,
                                 "trimmed_frames": 0}
    assert {f["source"] for f in report["failures"]} == {"other/no_face.mp4", "other/broken.mp4"}
    assert not (out / "other" / "no_face").exists() and not (out / ".partial").exists()
    assert _tree(batch_src) == before  # SRC untouched


def test_rerun_skips_finished_videos_and_changes_nothing(batch_run, batch_src, capsys):
    _, out, _ = batch_run
    tree = _tree(out)
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "Happy" / "face").iterdir()}
    assert main(["preprocess", str(batch_src), str(out), *FAST]) == 2  # the failed videos are still failed
    assert "3 already done" in capsys.readouterr().out
    assert _tree(out) == tree
    assert {p: p.stat().st_mtime_ns for p in (out / "Happy" / "face").iterdir()} == mtimes


def test_changed_settings_redo_and_half_written_folders_are_discarded(batch_src, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["preprocess", str(batch_src / "Happy"), str(out), *FAST]
    assert main(args) == 0
    # a folder without its record (killed between rename and record: the intent to rename is
    # left) is never taken as done, and is replaced as dfer's own
    (out / ".done" / "face.json").rename(out / ".done" / "face.json.renaming")
    (out / "face" / "00072.jpg").unlink()
    assert main(args) == 0
    assert "0 already done" in capsys.readouterr().out
    assert len(list((out / "face").glob("*.jpg"))) == 72
    assert main([*args, "--size", "128"]) == 0
    assert "0 already done" in capsys.readouterr().out
    with open(out / "manifest.csv") as f:
        assert list(csv.DictReader(f)) == [{"path": "face", "num_frames": "72"}]
    from PIL import Image

    assert Image.open(out / "face" / "00001.jpg").size == (128, 128)


def test_label_from_parent(batch_src, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["preprocess", str(batch_src), str(out), *FAST, "--label-from-parent"]) == 2
    err = capsys.readouterr().err
    assert "parent folder 'other' is not an emotion name" in err
    src = tmp_path / "afew"
    (src / "Happy").mkdir(parents=True)
    # a double extension must not leave a folder named like a video (readers go by suffix)
    os.symlink(batch_src / "Happy" / "face.mp4", src / "Happy" / "clip.avi.mp4")
    assert main(["preprocess", str(src), str(out), *FAST, "--label-from-parent"]) == 0
    with open(out / "manifest.csv") as f:
        assert list(csv.DictReader(f)) == [{"path": "Happy/clip_avi", "num_frames": "72", "label": "happy"}]
    # the training side reads the manifest as written
    from dfer.data.corpora.manifest import load_manifest
    from dfer.data.table import ClipKind

    table = load_manifest(out / "manifest.csv")
    assert table.source.tolist() == [str(out / "Happy" / "clip_avi")]
    assert table.kind.tolist() == [ClipKind.FRAMES] and table.num_frames.tolist() == [72]
    assert table.label.tolist() == [table.classes.index("happy")]


@pytest.mark.parametrize("argv,message", [
    (["{tmp}/missing", "{tmp}/out"], "missing: source folder not found"),
    (["{src}", "{src}/aligned"], "is inside SRC"),
    (["{src}", "{tmp}/out", "--detect-every", "0"], "--detect-every must be >= 1, got 0"),
    (["{src}", "{tmp}/out", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["{tmp}", "{tmp}/../elsewhere_out"], "no videos found"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, batch_src, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, src=batch_src) for a in argv]
    assert main(["preprocess", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("dfer preprocess: error:") and "\n" not in err
    assert not (batch_src / "aligned").exists()


# ---------------------------------------------------------------------------- kill -9
@pytest.fixture(scope="module")
def kill_src(tmp_path_factory, videos_dir) -> Path:
    src = tmp_path_factory.mktemp("kill") / "src"
    src.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(videos_dir / "single_face.mp4", src / f"{name}.mp4")
    shutil.copy(videos_dir / "no_face.mp4", src / "d.mp4")
    return src


KILL_ARGS = ["--detect-every", "2", "--max-side", "320", "--progress", "off"]


@pytest.fixture(scope="module")
def reference_tree(kill_src, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("ref") / "out"
    assert main(["preprocess", str(kill_src), str(out), *KILL_ARGS]) == 2  # d.mp4 has no face
    return _tree(out)


def _cli(src: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dfer", "preprocess", str(src), str(out), *KILL_ARGS, *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: no worker survives to finish its video
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_9_then_rerun_gives_the_uninterrupted_tree(workers, kill_src, reference_tree, tmp_path):
    out = tmp_path / "out"
    proc = _cli(kill_src, out, "--workers", workers)
    # kill once the first video is done and the next one is half-written
    _kill_when(proc, lambda: any((out / ".done").glob("*.json")) and any((out / ".partial").rglob("*.jpg")))
    assert proc.returncode == -signal.SIGKILL
    assert (out / ".partial").exists()  # the kill did leave a half-written video behind
    assert 1 <= len(list((out / ".done").glob("*.json"))) < 4
    rerun = subprocess.run([sys.executable, "-m", "dfer", "preprocess", str(kill_src), str(out), *KILL_ARGS,
                            "--workers", workers], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 2, rerun.stderr  # d.mp4 has no face
    assert "already done" in rerun.stdout and "FAILED d.mp4: no face found" in rerun.stdout
    assert _tree(out) == reference_tree
