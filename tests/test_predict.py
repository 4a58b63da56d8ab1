"""``dfer predict``: window placement, frame reuse, and end to end on the real face videos.

Pure tests check the windowing arithmetic against hand-computed answers and the streaming
classifier against a recording fake model. End-to-end tests (slow) run the command on
tests/data/videos with a model trained on the synthetic corpus, and compare its
probabilities with a straightforward re-computation through the training data path.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import write_random_run
from dfer.cli import main
from dfer.errors import ConfigError, DataError
from dfer.predict import ModelBundle, PredictConfig, no_face_spans, plan_windows, timeline_steps, window_length
from dfer.predict.classify import _classify_windows
from dfer.predict.outputs import _output_names
from dfer.predict.timing import _Timer


@pytest.fixture(autouse=True)
def _restore_threads():
    # `--threads` sets process-wide thread counts; other tests in this worker keep theirs
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


def _segment_centres(start: int, length: int, T: int) -> list[int]:
    """Reference TSN test sampling written out: centre of each of T equal integer segments."""
    if length < T:
        return [start + ((2 * k + 1) * length) // (2 * T) for k in range(T)]
    edges = [k * length // T for k in range(T + 1)]
    return [start + a + (b - a) // 2 for a, b in zip(edges[:-1], edges[1:])]


# ---------------------------------------------------------------------------- windowing (pure)
def test_window_length_rounds_seconds_to_frames():
    assert window_length(2.0, 30.0) == 60
    assert window_length(2.0, 29.97) == 60
    assert window_length(0.5, 25.0) == 12  # 12.5 rounds to even
    assert window_length(0.01, 30.0) == 1  # never an empty window


def test_single_face_windows_hand_computed():
    # 72 frames, 2 s at 30 fps: one full window, then one aligned to the end of the video
    plan = plan_windows(72, 60, 60, 8)
    assert plan.starts.tolist() == [0, 12] and plan.ends.tolist() == [60, 72]
    # segments of 60 frames into 8: edges 0,7,15,22,30,37,45,52,60 -> centres
    assert plan.indices[0].tolist() == [3, 11, 18, 26, 33, 41, 48, 56]
    assert plan.indices[1].tolist() == [15, 23, 30, 38, 45, 53, 60, 68]


@pytest.mark.parametrize("n", [1, 3, 7, 8, 59, 60, 61, 72, 119, 120, 121, 500])
@pytest.mark.parametrize("L,stride", [(60, 60), (60, 20), (60, 1), (8, 8), (5, 3), (1, 1)])
def test_windows_cover_the_video_with_tsn_frames_inside(n, L, stride):
    T = 8
    plan = plan_windows(n, L, stride, T)
    covered = np.zeros(n, bool)
    for s, e in zip(plan.starts, plan.ends):
        covered[s:e] = True
    assert covered.all()  # every frame lies in some window
    assert plan.starts[0] == 0 and plan.ends[-1] == n
    assert np.all(np.diff(plan.starts) > 0)  # no window twice
    lengths = plan.ends - plan.starts
    assert np.all(lengths == min(n, L))  # the last partial window is moved back, not shortened
    if n > L:
        # regular starts while a window fits, then at most one extra start at n - L
        regular = np.arange(0, n - L + 1, stride)
        assert plan.starts[: len(regular)].tolist() == regular.tolist()
        assert plan.starts.tolist()[len(regular):] in ([], [n - L])
    for w, (s, e) in enumerate(zip(plan.starts, plan.ends)):
        assert plan.indices[w].tolist() == _segment_centres(int(s), int(e - s), T)
        assert s <= plan.indices[w].min() and plan.indices[w].max() < e
    assert np.all(np.diff(plan.indices[:, 0]) >= 0)  # what the streaming eviction relies on
    sampled = plan.sampled()  # the frames predict aligns: exactly those some window samples
    assert sampled.shape == (n,) and set(np.flatnonzero(sampled)) == set(plan.indices.ravel().tolist())


def test_short_clip_repeats_every_frame_evenly():
    plan = plan_windows(3, 60, 60, 8)
    assert len(plan) == 1 and plan.indices[0].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    image = plan_windows(1, 1, 1, 4)  # a still image: one frame repeated
    assert image.indices.tolist() == [[0, 0, 0, 0]]


def test_stride_longer_than_window_skips_frames_but_reaches_the_end():
    plan = plan_windows(100, 10, 30, 4)
    assert plan.starts.tolist() == [0, 30, 60, 90] and plan.ends[-1] == 100


def test_plan_rejects_empty_inputs():
    with pytest.raises(ValueError, match="expected num_video_frames, window and stride >= 1, got 0, 60, 60"):
        plan_windows(0, 60, 60, 8)


def test_no_face_spans_are_runs_of_missing_frames_in_seconds():
    found = np.array([1, 1, 0, 0, 1, 0], bool)
    assert no_face_spans(found, 10.0) == [(0.2, 0.4), (0.5, 0.6)]
    assert no_face_spans(np.ones(4, bool), 30.0) == []


def test_timeline_steps_without_overlap_are_the_window_spans():
    windows = [{"start_s": 0.0, "end_s": 2.0, "probabilities": [0.25, 0.75]},
               {"start_s": 2.0, "end_s": 4.0, "probabilities": None},
               {"start_s": 3.0, "end_s": 5.0, "probabilities": [1.0, 0.0]}]
    times, probs = timeline_steps(windows, 2)
    assert np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times[[0, 2, 4]], [0.0, 2.0, 3.5])  # last two centres 3 and 4 meet at 3.5
    np.testing.assert_allclose(times[[1, 3, 5]], [2.0, 3.5, 5.0], atol=1e-5)
    assert np.isnan(probs[2:4]).all() and probs[4].tolist() == [1.0, 0.0]


def test_output_names_disambiguate_equal_stems():
    paths = [Path("a/x.mp4"), Path("b/x.mp4"), Path("x.jpg"), Path("y.mov")]
    assert _output_names(paths) == ["x_mp4", "x_mp4_2", "x_jpg", "y"]


def test_config_rejects_bad_values_by_option_name():
    with pytest.raises(ConfigError, match=r"--window-seconds must be > 0, got 0.0"):
        PredictConfig(window_seconds=0.0).validate()
    with pytest.raises(ConfigError, match=r"--min-face must be in \[0, 1\], got 1.5"):
        PredictConfig(min_face=1.5).validate()


# ---------------------------------------------------------------------------- streaming classifier
class _RecordingModel(torch.nn.Module):
    """Logits from the frame numbers painted into the clip; remembers every clip it saw."""

    def __init__(self):
        super().__init__()
        self.clips: list[torch.Tensor] = []

    def forward(self, clip):  # (B, T, C, H, W)
        self.clips.extend(clip[:, :, 0, 0, 0].clone())
        return clip[:, :, 0, 0, 0] / 100.0  # "classes" = the window's T frames


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_each_frame_is_read_and_transformed_once_and_windows_get_their_frames(batch_size):
    n, T = 200, 4
    plan = plan_windows(n, 30, 10, T)
    pulls, transformed = [0], []

    def crops():
        for t in range(n):
            pulls[0] += 1
            yield np.full((6, 6, 3), t % 256, np.uint8)

    def transform(clip):  # uint8 (1, H, W, 3) -> float (1, 3, H, W), recording what it saw
        transformed.append(int(clip[0, 0, 0, 0]))
        return torch.from_numpy(clip).permute(0, 3, 1, 2).double()

    model = _RecordingModel()
    bundle = ModelBundle(model, tuple("abcd"), 6, T, torch.device("cpu"))
    probs = _classify_windows(crops(), plan, bundle, transform, batch_size, _Timer())
    # one pass over the video, never re-read per window; it stops after the last frame any window needs
    assert pulls[0] == plan.indices.max() + 1 == 197  # last window [170, 200) samples up to 196
    needed = sorted(set(plan.indices.ravel().tolist()))
    assert transformed == needed  # every sampled frame transformed exactly once, in order
    assert len(model.clips) == len(plan)
    for w, seen in enumerate(model.clips):
        assert seen.tolist() == plan.indices[w].tolist()
    expected = torch.softmax(torch.tensor(plan.indices / 100.0, dtype=torch.float64), -1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-12)


def test_stream_shorter_than_the_plan_is_a_data_error():
    plan = plan_windows(50, 20, 20, 4)
    bundle = ModelBundle(_RecordingModel(), tuple("abcd"), 6, 4, torch.device("cpu"))
    frames = (np.zeros((6, 6, 3), np.uint8) for _ in range(30))
    with pytest.raises(DataError, match="the stream ended after 30 frames; windows need frame 47"):
        _classify_windows(frames, plan, bundle, lambda c: torch.zeros(1, 3, 6, 6), 2, _Timer())


# ---------------------------------------------------------------------------- runs
@pytest.fixture(scope="session")
def random_run(tmp_path_factory) -> Path:
    return write_random_run(tmp_path_factory.mktemp("predict") / "random", num_frames=4)


@pytest.fixture(scope="session")
def trained_run(synthetic_dfew, tmp_path_factory) -> Path:
    """A tiny TSM-R18 trained for one epoch on the synthetic corpus; trained once per test
    session even under pytest-xdist (the workers share the session's temp root and a lock)."""
    from dfer.config import RunConfig, from_dict
    from dfer.train import train

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "predict_trained"
    shared.mkdir(exist_ok=True)
    run_dir = shared / "run"
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run_dir / "results.json").is_file():
            cfg = from_dict(RunConfig, {
                "name": "run", "out_dir": str(shared), "seed": 3, "label_mode": "soft",
                "data": {"source": {"kind": "dfew", "root": str(synthetic_dfew), "fold": 1}, "num_frames": 4,
                         "size": 32, "num_workers": 0, "scales": [1.0, 0.875]},
                "model": {"name": "tsm_resnet18"}, "optim": {"epochs": 1, "batch_size": 8, "lr": 0.01},
                "eval": {"batch_size": 16}, "tensorboard": False, "progress": False,
            }).validate()
            train(cfg)
    return run_dir


@pytest.fixture(scope="session")
def videos(videos_dir) -> Path:
    return videos_dir


def _predict(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["predict", *map(str, argv), "--threads", "1"])
    out, err = capsys.readouterr()
    return rc, out, err


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_single_face_writes_json_csv_and_timeline(trained_run, videos, tmp_path, capsys):
    out = tmp_path / "pred"
    rc, stdout, err = _predict(capsys, videos / "single_face.mp4", "--run", trained_run, "--out", out)
    assert rc == 0, err
    assert re.fullmatch(r"single_face\.mp4: 72 frames, 2\.4 s, 2 windows, dominant \w+ \(0\.\d\d\), "
                        r"faces in 100% of frames, \d+\.\dx real time -> .*single_face\.\{json,csv,png\}\n", stdout)
    report = json.loads((out / "single_face.json").read_text())
    classes = json.loads((trained_run / "classes.json").read_text())
    assert report["classes"] == classes and report["frames"] == 72 and report["fps"] == 30.0
    assert report["model"]["size"] == 32 and report["model"]["num_frames"] == 4
    windows = report["windows"]
    assert [(w["start_frame"], w["end_frame"]) for w in windows] == [(0, 60), (12, 72)]
    for w in windows:
        p = np.array(w["probabilities"])
        assert p.shape == (len(classes),) and np.all(p >= 0)
        assert abs(p.sum() - 1) < 1e-9
        assert w["top"] == classes[int(p.argmax())] and w["face_found"] == 1.0
        assert w["start_s"] == w["start_frame"] / 30 and w["end_s"] == w["end_frame"] / 30
    s = report["summary"]
    mean = np.mean([w["probabilities"] for w in windows], axis=0)
    np.testing.assert_allclose(s["mean_probabilities"], mean, atol=1e-12)
    assert s["dominant"] == classes[int(mean.argmax())] and s["frames_without_face"] == 0
    assert s["realtime_factor"] == pytest.approx(2.4 / s["processing_s"])
    # the CSV says the same as the JSON
    rows = _read_csv(out / "single_face.csv")
    assert list(rows[0]) == ["start_frame", "end_frame", "start_s", "end_s", "face_found", "top", *classes]
    assert len(rows) == len(windows)
    for row, w in zip(rows, windows):
        assert int(row["start_frame"]) == w["start_frame"] and row["top"] == w["top"]
        assert float(row["end_s"]) == pytest.approx(w["end_s"], abs=1e-4)
        np.testing.assert_allclose([float(row[c]) for c in classes], w["probabilities"], atol=1e-6)
    png = out / "single_face.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cv2.imread(str(png)).shape[:2] == (350, 1000)


@pytest.mark.slow
def test_probabilities_match_the_training_eval_path(trained_run, videos, tmp_path, capsys):
    """Reference: align all frames, build each window with the run's test transform, one forward pass."""
    from dfer.data.transforms import build_transforms
    from dfer.rundir import load_run
    from dfer.preprocess.detect import DetectorConfig, RetinaFaceDetector
    from dfer.preprocess.track import TrackConfig, faces_from_frames
    from dfer.preprocess.video import iter_frames

    out = tmp_path / "pred"
    rc, _, err = _predict(capsys, videos / "single_face.mp4", "--run", trained_run, "--out", out,
                          "--window-seconds", "0.5", "--stride", "5", "--batch-size", "3")
    assert rc == 0, err
    report = json.loads((out / "single_face.json").read_text())
    model, cfg, _ = load_run(trained_run)
    detector = RetinaFaceDetector(DetectorConfig(max_side=320, num_threads=1))
    crops, track = faces_from_frames(list(iter_frames(videos / "single_face.mp4")), detector,
                                     TrackConfig(detect_every=3, size=256))
    crops = np.stack(list(crops))
    transform = build_transforms(train=False, size=cfg.data.size)
    assert len(report["windows"]) == 13  # 15-frame windows every 5 frames over 72 frames, last at 57
    clips = torch.stack([transform(crops[w["frames"]]) for w in report["windows"]])
    with torch.inference_mode():
        expected = torch.softmax(model(clips).double(), -1).numpy()
    np.testing.assert_allclose([w["probabilities"] for w in report["windows"]], expected, atol=1e-5)


@pytest.mark.slow
def test_no_face_video_reports_it_and_fails_only_alone(trained_run, videos, tmp_path, capsys):
    out = tmp_path / "pred"
    rc, stdout, err = _predict(capsys, videos / "no_face.mp4", "--run", trained_run, "--out", out)
    assert rc == 2 and err == ""
    assert re.fullmatch(r"no_face\.mp4: no face found in \d+ frames \(detector score >= 0\.9\); nothing written\n",
                        stdout)
    assert not out.exists() or not any(out.iterdir())
    # in a batch the other inputs go on and the batch succeeds
    rc, stdout, _ = _predict(capsys, videos / "no_face.mp4", videos / "single_face.mp4", "--run", trained_run,
                             "--out", out, "--no-plot")
    lines = stdout.splitlines()
    assert rc == 0 and len(lines) == 2
    assert "no face found" in lines[0] and lines[1].startswith("single_face.mp4: 72 frames")
    assert sorted(p.name for p in out.iterdir()) == [".dfer", "single_face.csv", "single_face.json"]  # and its mark


@pytest.mark.slow
def test_face_leaving_the_frame_is_marked(trained_run, videos, tmp_path, capsys):
    out = tmp_path / "pred"
    rc, stdout, err = _predict(capsys, videos / "face_noface.mov", "--run", trained_run, "--out", out)
    assert rc == 0, err
    report = json.loads((out / "face_noface.json").read_text())
    s, windows = report["summary"], report["windows"]
    assert report["frames"] == 169 and 0 < s["frames_without_face"] < 169
    assert s["face_frame_fraction"] == pytest.approx(1 - s["frames_without_face"] / 169)
    # the no-face spans hold exactly the no-face frames
    spans = report["no_face_spans_s"]
    assert spans and round(sum(b - a for a, b in spans) * report["fps"]) == s["frames_without_face"]
    fractions = [w["face_found"] for w in windows]
    assert min(fractions) < 1 and max(fractions) == 1
    for w in windows:
        assert (w["probabilities"] is None) == (w["face_found"] < 0.5)
        if w["probabilities"] is not None:
            assert abs(sum(w["probabilities"]) - 1) < 1e-9
    assert s["predicted_windows"] == sum(w["probabilities"] is not None for w in windows) >= 1
    rows = _read_csv(out / "face_noface.csv")
    for row, w in zip(rows, windows):
        assert float(row["face_found"]) == pytest.approx(w["face_found"], abs=1e-4)
        assert (row[report["classes"][0]] == "") == (w["probabilities"] is None)
    assert (out / "face_noface.png").is_file()
    assert re.search(r"faces in \d+% of frames", stdout) and "faces in 100%" not in stdout


@pytest.mark.slow
def test_still_image_is_one_window(trained_run, videos, tmp_path, capsys):
    from PIL import Image

    from dfer.preprocess.detect import DetectorConfig, RetinaFaceDetector
    from dfer.preprocess.track import TrackConfig, faces_from_frames
    from dfer.preprocess.video import iter_frames

    frame = next(iter_frames(videos / "single_face.mp4"))
    crops, _ = faces_from_frames([frame], RetinaFaceDetector(DetectorConfig(num_threads=1)), TrackConfig())
    image = tmp_path / "face.jpg"
    Image.fromarray(next(crops)).save(image, quality=95)
    out = tmp_path / "pred"
    rc, stdout, err = _predict(capsys, image, "--run", trained_run, "--out", out)
    assert rc == 0, err
    assert re.fullmatch(r"face\.jpg: still image, dominant \w+ \(\d\.\d\d\) -> .*face\.\{json,csv\}\n", stdout)
    report = json.loads((out / "face.json").read_text())
    assert report["kind"] == "image" and report["frames"] == 1 and report["fps"] is None
    (w,) = report["windows"]
    assert w["frames"] == [0, 0, 0, 0] and w["face_found"] == 1.0
    assert abs(sum(w["probabilities"]) - 1) < 1e-9
    assert not (out / "face.png").exists()
    # an aligned crop given as such (no detection) is classified too
    rc, _, err = _predict(capsys, image, "--run", trained_run, "--out", out, "--aligned")
    assert rc == 0, err


def test_outputs_of_the_users_are_never_written_over(random_run, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "face.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "pred"
    out.mkdir()
    (out / "face.csv").write_text("my own table\n")
    rc, _, err = _predict(capsys, image, "--run", random_run, "--out", out, "--aligned")
    assert rc == 2  # a folder of the user's: not written at all
    _one_error_line(err, rf"{re.escape(str(out))} holds files that dfer did not write \(e\.g\. 'face\.csv'\); "
                         r"dfer predict writes only into a new or empty folder or one of its own: choose another")
    assert [p.name for p in out.iterdir()] == ["face.csv"] and (out / "face.csv").read_text() == "my own table\n"
    (out / "face.csv").unlink()
    for _ in range(2):  # a rerun replaces its own outputs
        rc, _, err = _predict(capsys, image, "--run", random_run, "--out", out, "--aligned")
        assert rc == 0, err
    report = json.loads((out / "face.json").read_text())
    assert report["outputs"] == {"json": str(out / "face.json"), "csv": str(out / "face.csv")}
    # in its own folder, a file of the user's by an output's name is left alone too
    (out / "face.json").unlink()
    (out / "face.csv").write_text("my own table\n")
    rc, _, err = _predict(capsys, image, "--run", random_run, "--out", out, "--aligned")
    assert rc == 2
    _one_error_line(err, rf"{re.escape(str(out / 'face.csv'))} exists and was not written by dfer predict; "
                         r"left as it is \(move it, or give another --out\)")
    assert (out / "face.csv").read_text() == "my own table\n" and not (out / "face.json").exists()


# ---------------------------------------------------------------------------- bad input
def _one_error_line(err: str, pattern: str) -> None:
    assert "Traceback" not in err
    assert re.fullmatch(rf"dfer predict: error: {pattern}\n", err), err


def test_missing_input_file(random_run, tmp_path, capsys):
    rc, out, err = _predict(capsys, tmp_path / "nope.mp4", "--run", random_run)
    assert rc == 2 and out == ""
    _one_error_line(err, r".*nope\.mp4: file not found")


def test_unsupported_input_suffix(random_run, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    rc, _, err = _predict(capsys, notes, "--run", random_run)
    assert rc == 2
    _one_error_line(err, r".*notes\.txt: expected a video \(.*\) or an image \(.*\), found suffix '\.txt'")


def test_not_a_run_directory(videos, tmp_path, capsys):
    rc, _, err = _predict(capsys, videos / "single_face.mp4", "--run", tmp_path)
    assert rc == 2
    _one_error_line(err, rf"{re.escape(str(tmp_path))} is not a dfer run directory \(no config\.yaml\)")
    rc, _, err = _predict(capsys, videos / "single_face.mp4", "--checkpoint", tmp_path / "x.safetensors")
    assert rc == 2
    _one_error_line(err, r".*x\.safetensors: checkpoint file not found")


def test_checkpoint_of_another_model_is_a_config_error(random_run, videos, capsys):
    ckpt = random_run / "checkpoints" / "last.safetensors"
    rc, _, err = _predict(capsys, videos / "single_face.mp4", "--checkpoint", ckpt, "--classes", "mafw11")
    assert rc == 2
    _one_error_line(err, r".*last\.safetensors: not a dfer checkpoint for tsm_resnet18 with 11 classes \(.*\)")


def test_corrupt_video_is_one_line(random_run, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    rc, out, err = _predict(capsys, bad, "--run", random_run, "--out", tmp_path / "pred")
    assert rc == 2 and out == ""
    _one_error_line(err, r".*broken\.mp4: cannot open video \(.*\)")


def test_bad_option_value(random_run, videos, capsys):
    rc, _, err = _predict(capsys, videos / "single_face.mp4", "--run", random_run, "--window-seconds", "-1")
    assert rc == 2
    _one_error_line(err, r"--window-seconds must be > 0, got -1\.0")
