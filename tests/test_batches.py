"""A batch survives one bad input: ``dfer predict`` and ``dfer preprocess`` name each bad
input in one line, go on with the others, write their outputs as usual, and exit 2."""

from __future__ import annotations

import json
import os
import re
import shutil

from conftest import write_random_run
from dfer.cli import main


def test_predict_goes_on_past_a_missing_input_and_a_folder(tmp_path, videos_dir, capsys):
    run = write_random_run(tmp_path / "run", size=32, num_frames=2)
    missing, folder, out = tmp_path / "missing.mp4", tmp_path / "clips", tmp_path / "pred"
    folder.mkdir()
    good = videos_dir / "single_face.mp4"
    rc = main(["predict", str(missing), str(good), str(folder), "--run", str(run), "--out", str(out),
               "--aligned", "--no-plot", "--threads", "1"])
    stdout, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err
    assert err.splitlines() == [f"dfer predict: error: {missing}: file not found",
                                f"dfer predict: error: {folder}: expected a file, found a folder",
                                "dfer predict: 2 of 3 inputs failed (named above), 1 predicted"]
    assert stdout.startswith("single_face.mp4: ") and stdout.count("\n") == 1
    assert json.loads((out / "single_face.json").read_text())["input"] == str(good)


def test_predict_goes_on_past_a_corrupt_video_and_a_fifo(tmp_path, videos_dir, capsys):
    run = write_random_run(tmp_path / "run", size=32, num_frames=2)
    broken, fifo, out = tmp_path / "broken.mp4", tmp_path / "pipe.mp4", tmp_path / "pred"
    broken.write_bytes((videos_dir / "single_face.mp4").read_bytes()[:3000])
    os.mkfifo(fifo)
    rc = main(["predict", str(broken), str(fifo), str(videos_dir / "single_face.mp4"), "--run", str(run),
               "--out", str(out), "--aligned", "--no-plot", "--threads", "1"])
    _, err = capsys.readouterr()
    lines = err.splitlines()
    assert rc == 2 and len(lines) == 3 and "Traceback" not in err, err
    assert lines[0] == f"dfer predict: error: {fifo}: expected a file, found a FIFO (named pipe)"
    assert re.fullmatch(rf"dfer predict: error: {re.escape(str(broken))}: cannot open video \(.*\)", lines[1])
    assert lines[2] == "dfer predict: 2 of 3 inputs failed (named above), 1 predicted"
    assert (out / "single_face.json").is_file()


def test_preprocess_names_each_bad_video_writes_the_good_one_and_exits_2(tmp_path, videos_dir, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    shutil.copy(videos_dir / "single_face.mp4", src / "good.mp4")
    (src / "broken.mp4").write_bytes((videos_dir / "single_face.mp4").read_bytes()[:3000])
    os.mkfifo(src / "pipe.mp4")
    rc = main(["preprocess", str(src), str(out), "--detect-every", "6", "--size", "64", "--progress", "off"])
    stdout, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err, err
    failed = sorted(line for line in stdout.splitlines() if line.startswith("FAILED"))
    assert len(failed) == 2
    assert failed[0].startswith("FAILED broken.mp4: cannot open video")
    assert failed[1] == "FAILED pipe.mp4: expected a video file, found a FIFO (named pipe)"
    assert "3 videos, 1 ok, 2 failed" in stdout
    assert len(list((out / "good").glob("*.jpg"))) == 72
    assert (out / "manifest.csv").read_text().splitlines() == ["path,num_frames", "good,72"]


def test_preprocess_plans_a_missing_video_and_a_folder_as_failures(tmp_path, videos_dir):
    """A corpus (``--kind``) may list a video that is gone, or a folder named like one."""
    from dfer.preprocess.pipeline import plan_jobs

    shutil.copy(videos_dir / "single_face.mp4", tmp_path / "good.mp4")
    (tmp_path / "folder.mp4").mkdir()
    jobs, failures = plan_jobs(tmp_path, [tmp_path / n for n in ("folder.mp4", "gone.mp4", "good.mp4")], False)
    assert [j.source for j in jobs] == ["good.mp4"]
    assert [(f["source"], f["status"], f["error"]) for f in failures] == [
        ("folder.mp4", "failed", "expected a video file, found a folder"),
        ("gone.mp4", "failed", "video file not found")]


def test_preprocess_never_gives_a_video_the_name_of_its_own_files(tmp_path, videos_dir):
    """``manifest.csv.mp4`` would be written to the folder ``manifest.csv``: a failure of that
    video, planned before any work, not a clash with the manifest after it."""
    from dfer.preprocess.pipeline import plan_jobs

    for name in ("manifest.csv.mp4", "report.json.mp4", "good.mp4"):
        shutil.copy(videos_dir / "single_face.mp4", tmp_path / name)
    videos = sorted(tmp_path.glob("*.mp4"))
    jobs, failures = plan_jobs(tmp_path, videos, False, reserved=("manifest.csv", "report.json"))
    assert [j.source for j in jobs] == ["good.mp4"]
    assert [(f["source"], f["error"]) for f in failures] == [
        ("manifest.csv.mp4", "output folder 'manifest.csv' already taken by \"dfer preprocess's own file\""),
        ("report.json.mp4", "output folder 'report.json' already taken by \"dfer preprocess's own file\"")]
