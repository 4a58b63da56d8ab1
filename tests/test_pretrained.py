"""The face-expression model that ships with dfer, as a user meets it.

``dfer predict VIDEO`` with no model argument and ``dfer.predict_video`` use it; its input
pipeline (centred face crop, then grey) is applied for it and only for it; ``dfer evaluate
--pretrained`` scores it on a labelled corpus exactly as a direct computation with
:func:`dfer.rundir.load_shipped` does; a missing or damaged file is one line that says
how to reinstall. The last tests say what a trained model must do on a real face; they are
skipped while the package holds the random-init stand-in.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

import dfer
from conftest import write_random_run
from dfer.cli import main
from dfer.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms
from dfer.emotions import BASIC7, FERPLUS8
from dfer.errors import ConfigError
from dfer.data.transforms import CentreFraction, Grey
from dfer.predict import ModelBundle, PredictConfig, input_transform, load_model, predict_file
from dfer.pretrained import pretrained_info, weights_path
from dfer.rundir import load_shipped

ROOT = Path(__file__).resolve().parents[1]
FERPLUS_FIXTURE = ROOT / "tests" / "data" / "ferplus"
PIL_LUMA = "L"


def _trained() -> bool:
    try:
        return not str(pretrained_info().get("trained_by", "")).startswith("STAND-IN")
    except ConfigError:
        return False


needs_trained_weights = pytest.mark.skipif(not _trained(), reason="the shipped weights are the random-init stand-in")


@pytest.fixture(scope="module")
def meta() -> dict:
    return pretrained_info()


@pytest.fixture(scope="module")
def bundle():
    return load_model(device="cpu")


@pytest.fixture(scope="module")
def detector():
    from dfer.preprocess.detect import DetectorConfig, RetinaFaceDetector

    return RetinaFaceDetector(DetectorConfig(max_side=320, num_threads=1))


def _cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _segment_centres(start: int, length: int, T: int) -> list[int]:
    """TSN test sampling written out: the centre of each of T equal integer segments."""
    if length < T:
        return [start + ((2 * k + 1) * length) // (2 * T) for k in range(T)]
    edges = [k * length // T for k in range(T + 1)]
    return [start + a + (b - a) // 2 for a, b in zip(edges[:-1], edges[1:])]


# ---------------------------------------------------------------------------- dfer predict VIDEO
@pytest.fixture(scope="module")
def cli_single_face(videos_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained_cli")
    rc, stdout, err = _cli("predict", videos_dir / "single_face.mp4", "--out", out)
    return rc, stdout, err, out


def test_predict_without_a_model_argument_uses_the_shipped_model(cli_single_face, meta):
    rc, stdout, err, out = cli_single_face
    assert rc == 0 and err == "", err
    assert re.fullmatch(r"single_face\.mp4: 72 frames, 2\.4 s, 2 windows, dominant \w+ \(\d\.\d\d\), faces in \d+% "
                        r"of frames, \d+\.\dx real time -> .*single_face\.\{json,csv,png\}\n", stdout), stdout
    report = json.loads((out / "single_face.json").read_text())
    model = report["model"]
    assert model["pretrained"] == "ferplus" and "FER+" in model["name"]
    assert model["file"] == str(weights_path()) and model["trained_by"] == meta["trained_by"]
    assert model["metrics"] == meta["metrics"]
    assert (model["size"], model["num_frames"], model["grey"], model["face_crop"]) == (
        meta["size"], meta["num_frames"], True, meta["face_crop"])
    assert report["classes"] == list(meta["classes"]) == list(FERPLUS8)
    # the face is in (nearly) every frame of this video
    assert report["summary"]["face_frame_fraction"] >= 0.9
    # 2-s windows at 30 fps over 72 frames: [0, 60) and one moved back to end on the last frame
    windows = report["windows"]
    assert [(w["start_frame"], w["end_frame"]) for w in windows] == [(0, 60), (12, 72)]
    for w in windows:
        assert w["frames"] == _segment_centres(w["start_frame"], 60, meta["num_frames"])
        p = np.array(w["probabilities"])
        assert np.all(p >= 0) and abs(p.sum() - 1) < 1e-9
        assert w["top"] == FERPLUS8[int(p.argmax())] and w["top_probability"] == p.max()
    with open(out / "single_face.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["start_frame"]) for r in rows] == [0, 12] and [r["top"] for r in rows] == [w["top"] for w in windows]
    for row, w in zip(rows, windows):
        np.testing.assert_allclose([float(row[c]) for c in FERPLUS8], w["probabilities"], atol=1e-6)
    assert (out / "single_face.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_api_returns_the_windows_of_the_cli(cli_single_face, videos_dir):
    import dfer

    _, _, _, out = cli_single_face
    from_cli = json.loads((out / "single_face.json").read_text())
    report = dfer.predict_video(videos_dir / "single_face.mp4")  # model=None: the shipped model
    assert report["status"] == "ok" and report["model"] == from_cli["model"]
    assert len(report["windows"]) == len(from_cli["windows"])
    for mine, theirs in zip(report["windows"], from_cli["windows"]):
        assert {k: v for k, v in mine.items() if k not in ("probabilities", "top_probability")} == \
               {k: v for k, v in theirs.items() if k not in ("probabilities", "top_probability")}
        np.testing.assert_allclose(mine["probabilities"], theirs["probabilities"], atol=1e-6)
    assert report["summary"]["dominant"] == from_cli["summary"]["dominant"]
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['window'\]"):
        dfer.predict_video(videos_dir / "single_face.mp4", window=2.0)


def test_import_dfer_stays_cheap_and_lists_the_api():
    code = "import sys, dfer; print('torch' in sys.modules, all(n in dir(dfer) for n in ('load_pretrained', " \
           "'predict_video')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]


def test_no_face_video_is_no_face_and_exit_2(videos_dir, tmp_path, bundle, detector):
    import dfer

    out = tmp_path / "pred"
    rc, stdout, err = _cli("predict", videos_dir / "no_face.mp4", "--out", out)
    assert rc == 2 and err == ""
    assert re.fullmatch(r"no_face\.mp4: no face found in \d+ frames \(detector score >= 0\.9\); nothing written\n",
                        stdout)
    assert not out.exists() or not any(out.iterdir())
    report = dfer.predict_video(videos_dir / "no_face.mp4", bundle, detector=detector)
    assert report["status"] == "no_face" and report["windows"] == []


@pytest.fixture(scope="module")
def face_noface_report(videos_dir, bundle, detector):
    import dfer

    return dfer.predict_video(videos_dir / "face_noface.mov", bundle, detector=detector)


def test_windows_after_the_face_leaves_have_no_distribution(face_noface_report):
    report = face_noface_report
    assert report["status"] == "ok"
    # the face leaves and does not come back: the last no-face span runs to the end of the video
    leaves_s, end_s = report["no_face_spans_s"][-1]
    assert end_s == pytest.approx(report["duration_s"]) and 0 < leaves_s < end_s
    after = [w for w in report["windows"] if w["start_s"] >= leaves_s - 1e-9]
    before = [w for w in report["windows"] if w["face_found"] >= report["settings"]["min_face"]]
    assert after and before
    for w in after:
        assert w["face_found"] == 0 and w["probabilities"] is None and w["top"] is None
    for w in before:
        assert abs(sum(w["probabilities"]) - 1) < 1e-9


# ---------------------------------------------------------------------------- preprocessing
def test_grey_is_pils_luma_in_three_equal_channels():
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (3, 17, 23, 3), dtype=np.uint8)
    out = Grey()(clip)
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 17, 23)
    for t in range(3):
        luma = np.asarray(Image.fromarray(clip[t]).convert(PIL_LUMA))
        for c in range(3):
            np.testing.assert_array_equal(out[t, c].numpy(), luma)
    # a grey image (FER+'s faces read as RGB) comes out unchanged
    grey = np.repeat(clip[..., :1], 3, axis=-1)
    np.testing.assert_array_equal(Grey()(grey).permute(0, 2, 3, 1).numpy(), grey)


def test_centre_fraction_keeps_the_centred_share_of_each_side():
    frame = np.arange(10 * 8 * 3, dtype=np.uint8).reshape(1, 10, 8, 3)
    out = CentreFraction(0.5)(frame)
    np.testing.assert_array_equal(out.permute(0, 2, 3, 1).numpy(), frame[:, 2:7, 2:6])  # 5 of 10 rows, 4 of 8
    with pytest.raises(ConfigError, match=r"face crop must be a fraction in \(0, 1\], got 1\.5"):
        CentreFraction(1.5)


def _shipped_like(size: int = 64, face_crop: float = 0.75, model=None, num_frames: int = 1) -> ModelBundle:
    return ModelBundle(model or torch.nn.Identity(), FERPLUS8, size, num_frames, torch.device("cpu"), {},
                       grey=True, face_crop=face_crop, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _reference(frame: np.ndarray, top: int, left: int, side_h: int, side_w: int, size: int) -> torch.Tensor:
    """Crop by hand, grey through PIL, then the training test transform."""
    crop = np.ascontiguousarray(frame[top:top + side_h, left:left + side_w])
    grey = np.asarray(Image.fromarray(crop).convert(PIL_LUMA))
    return build_transforms(train=False, size=size)(np.repeat(grey[..., None], 3, axis=-1)[None])


def test_shipped_model_input_is_the_centre_crop_of_the_aligned_face_in_grey():
    rng = np.random.default_rng(1)
    face = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    out = input_transform(_shipped_like(size=64, face_crop=0.75))(face[None])
    # 0.75 of 256 = 192 pixels, a margin of 32 on every side
    expected = _reference(face, 32, 32, 192, 192, 64)
    assert out.shape == (1, 3, 64, 64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    raw = out * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    torch.testing.assert_close(raw[:, 0], raw[:, 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(raw[:, 0], raw[:, 2], rtol=0, atol=1e-5)
    # what lies outside the crop does not reach the model; what lies inside does
    outside = face.copy()
    outside[:32] = 255
    outside[:, 224:] = 0
    torch.testing.assert_close(input_transform(_shipped_like())(outside[None]), out, rtol=0, atol=0)
    inside = face.copy()
    inside[100:150, 100:150] = 255
    assert not torch.allclose(input_transform(_shipped_like())(inside[None]), out)
    # without the face crop (corpus images, tight crops already): grey only
    no_crop = input_transform(_shipped_like(size=64), face_crop=False)(face[None])
    torch.testing.assert_close(no_crop, _reference(face, 0, 0, 256, 256, 64), rtol=0, atol=1e-6)


def test_a_run_trained_by_the_user_keeps_its_colour_and_whole_face(tmp_path):
    run_bundle = load_model(run=str(write_random_run(tmp_path / "run")), device="cpu")
    assert run_bundle.grey is False and run_bundle.face_crop == 1.0
    assert set(run_bundle.source) == {"run", "which", "model", "size", "num_frames", "answer"}
    assert run_bundle.source["answer"] == {"prior_correction": 0.0, "temperature": 1.0, "tta": "none", "prior": None}
    face = np.random.default_rng(2).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    out = input_transform(run_bundle)(face)
    torch.testing.assert_close(out, build_transforms(train=False, size=32)(face), rtol=0, atol=0)
    assert not torch.allclose(out[:, 0], out[:, 1], atol=0.1)  # colour reaches the model


class _Recorder(torch.nn.Module):
    """Keeps every clip it is given; predicts the uniform distribution."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes, self.clips = num_classes, []

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        self.clips.append(clip.clone())
        return torch.zeros(clip.shape[0], self.num_classes)


def test_predict_file_applies_grey_and_face_crop_only_for_a_model_that_asks(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)  # an aligned face crop, not square
    path = tmp_path / "face.png"
    Image.fromarray(image).save(path)
    config = PredictConfig(aligned=True, plot=False)

    asks = _shipped_like(size=32, face_crop=0.5, model=_Recorder(8), num_frames=2)
    report = predict_file(path, asks, config)
    (clip,) = asks.model.clips
    assert report["status"] == "ok" and clip.shape == (1, 2, 3, 32, 32)
    # half of 200 x 240 is 100 x 120, margins 50 and 60
    expected = _reference(image, 50, 60, 100, 120, 32)[0]
    torch.testing.assert_close(clip[0, 0], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(clip[0, 1], expected, rtol=0, atol=0)  # a still image repeated

    plain = ModelBundle(_Recorder(7), BASIC7, 32, 2, torch.device("cpu"), {})  # what a run gives
    predict_file(path, plain, config)
    (clip,) = plain.model.clips
    torch.testing.assert_close(clip[0, 0], build_transforms(train=False, size=32)(image[None])[0], rtol=0, atol=0)


# ---------------------------------------------------------------------------- broken install
def _with_metadata(path: Path, **changes) -> Path:
    """A copy of the shipped file with some metadata entries changed."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(weights_path()), framework="pt") as f:
        meta = json.loads(f.metadata()["dfer_pretrained"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, str(path), metadata={"dfer_pretrained": json.dumps({**meta, **changes})})
    return path


def _damaged(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / "ferplus_resnet18.safetensors"
    if kind == "missing":
        return path
    if kind == "face_crop":
        return _with_metadata(path, face_crop=1.5)
    good = weights_path().read_bytes()
    path.write_bytes({"empty": b"", "header": good[:100], "half": good[: len(good) // 2]}[kind])
    return path


@pytest.mark.parametrize("kind", ["missing", "empty", "header", "half", "face_crop"])
def test_missing_or_damaged_shipped_file_is_one_line_with_the_fix(kind, videos_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DFER_PRETRAINED", str(_damaged(kind, tmp_path)))
    state = "missing" if kind == "missing" else "damaged"
    line = rf"the FER\+ model that ships with dfer is {state} \(.*\); reinstall dfer \(pip install .*\)\n"
    out = tmp_path / "pred"
    rc, stdout, err = _cli("predict", videos_dir / "single_face.mp4", "--out", out)
    assert rc == 2 and stdout == "" and "Traceback" not in err
    assert re.fullmatch(rf"dfer predict: error: {line}", err), err
    assert not out.exists()
    rc, stdout, err = _cli("evaluate", "--pretrained", "--source", f"ferplus:{tmp_path}", "--split", "val",
                           "--out", out)
    assert rc == 2 and stdout == "" and re.fullmatch(rf"dfer evaluate: error: {line}", err), err
    import dfer

    with pytest.raises(ConfigError, match="reinstall dfer"):
        dfer.load_pretrained("cpu")


# ---------------------------------------------------------------------------- dfer evaluate --pretrained
def _ferplus_rows(folder: Path) -> list[tuple[str, int]]:
    """(image name, majority label) of a FER+ folder, written out: images whose most votes are
    unknown / NF are left out, ties go to the first class (FER+'s majority-vote accuracy)."""
    out = []
    with open(folder / "label.csv", newline="") as f:
        for name, _box, *votes in csv.reader(f):
            v = np.array(votes, int)
            if v.argmax() >= 8:
                continue
            out.append((name, int(v[:8].argmax())))
    return out


def _direct_probabilities(paths: list[Path], margin: int = 0) -> np.ndarray:
    """(N, 8) answer of build_model's network on each grey face (less ``margin`` pixels on
    every side): upsampled to `size`, 3 equal channels, the file's normalisation, then the
    file's answer rule written out here: flip averages the logits of the face and of its
    mirror image, the prior correction subtracts tau * log(prior), then the temperature."""
    model, meta = load_shipped(device="cpu")
    x = []
    for p in paths:
        grey = np.asarray(Image.open(p).convert(PIL_LUMA))
        grey = torch.from_numpy(grey[margin:grey.shape[0] - margin, margin:grey.shape[1] - margin].copy())
        img = TF.resize(grey[None].expand(3, -1, -1), [meta["size"]], antialias=True)
        img = TF.center_crop(img, [meta["size"]] * 2).float() / 255
        x.append(TF.normalize(img, meta["mean"], meta["std"]))
    x = torch.stack(x)[:, None]
    with torch.inference_mode():
        z = model(x).double()
        if meta.get("tta", "none") == "flip":
            z = (z + model(x.flip(-1)).double()) / 2
        if meta.get("prior_correction", 0):
            z = z - meta["prior_correction"] * torch.tensor(meta["prior"], dtype=torch.float64).log()
        return torch.softmax(z / meta.get("temperature", 1.0), -1).numpy()


def _read_predictions(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("split,folder", [("val", "FER2013Valid"), ("train", "FER2013Train")])
def test_evaluate_pretrained_accuracy_is_the_direct_computation(split, folder, tmp_path):
    rows = _ferplus_rows(FERPLUS_FIXTURE / folder)
    probs = _direct_probabilities([FERPLUS_FIXTURE / folder / name for name, _ in rows])
    labels = np.array([lab for _, lab in rows])
    accuracy = float(np.mean(probs.argmax(1) == labels))

    out = tmp_path / "eval"
    rc, stdout, err = _cli("evaluate", "--pretrained", "--source", f"ferplus:{FERPLUS_FIXTURE}", "--split", split,
                           "--out", out, "--workers", "0")
    assert rc == 0, err
    assert re.fullmatch(rf"dfer's FER\+ model on ferplus {split}: UAR \d+\.\d\d% WAR \d+\.\d\d% on {len(rows)} clips "
                        rf"-> {re.escape(str(out / 'results.json'))}\n", stdout), stdout
    res = json.loads((out / "results.json").read_text())
    assert res["num_clips"] == len(rows) and res["war"] == pytest.approx(accuracy, abs=1e-12)
    assert res["model"]["pretrained"] == "ferplus" and res["class_map"]["dropped"] == []
    assert res["preprocessing"]["grey"] is True and res["preprocessing"]["face_crop"] is None
    preds = _read_predictions(out / "predictions.csv")
    assert [r["clip_id"] for r in preds] == [f"{folder}/{name}" for name, _ in rows]
    assert [r["label"] for r in preds] == [FERPLUS8[lab] for lab in labels]
    np.testing.assert_allclose([[float(r[c]) for c in FERPLUS8] for r in preds], probs, atol=1e-5)
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_pretrained_ties_and_the_kaggle_form(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where the Kaggle form's PNGs go
    results = {}
    for name, source, ties in (("folders", f"ferplus:{FERPLUS_FIXTURE}", []),
                               ("kaggle", str(FERPLUS_FIXTURE / "kaggle"), []),  # kind detected
                               ("drop", f"ferplus:{FERPLUS_FIXTURE}", ["--ties", "drop"])):
        rc, _, err = _cli("evaluate", "--pretrained", "--source", source, "--split", "val", "--out", tmp_path / name,
                          "--workers", "0", *ties)
        assert rc == 0, err
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    rows = _ferplus_rows(FERPLUS_FIXTURE / "FER2013Valid")
    assert results["folders"]["num_clips"] == results["kaggle"]["num_clips"] == len(rows)
    assert results["folders"]["war"] == results["kaggle"]["war"]
    assert results["kaggle"]["source"]["kind"] == "ferplus"
    # --ties drop leaves out the faces whose top votes tie
    with open(FERPLUS_FIXTURE / "FER2013Valid" / "label.csv", newline="") as f:
        tied = sum(1 for _, _, *v in csv.reader(f)
                   if np.argmax(np.array(v, int)) < 8 and (np.array(v[:8], int) == max(map(int, v[:8]))).sum() > 1)
    assert tied > 0 and results["drop"]["num_clips"] == len(rows) - tied


def test_evaluate_pretrained_on_a_basic7_corpus_drops_contempt_and_renormalises(tmp_path):
    folder = FERPLUS_FIXTURE / "FER2013Valid"
    rows = [(name, FERPLUS8[lab]) for name, lab in _ferplus_rows(folder) if FERPLUS8[lab] != "contempt"]
    manifest = tmp_path / "faces.csv"
    manifest.write_text("path,label,split\n" + "".join(f"{folder / n},{lab},val\n" for n, lab in rows))
    out = tmp_path / "eval"
    rc, stdout, err = _cli("evaluate", "--pretrained", "--source", f"manifest:{manifest}", "--split", "val",
                           "--out", out, "--workers", "0")
    assert rc == 0, err
    assert "contempt dropped" in stdout
    res = json.loads((out / "results.json").read_text())
    assert res["classes"] == list(BASIC7) and res["class_map"]["dropped"] == ["contempt"]
    p8 = _direct_probabilities([folder / n for n, _ in rows])
    index = [FERPLUS8.index(c) for c in BASIC7]
    expected = p8[:, index] / p8[:, index].sum(1, keepdims=True)
    preds = _read_predictions(out / "predictions.csv")
    got = np.array([[float(r[c]) for c in BASIC7] for r in preds])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)
    assert res["war"] == pytest.approx(np.mean([BASIC7[i] == lab for i, (_, lab) in zip(expected.argmax(1), rows)]))


def test_evaluate_pretrained_face_crop_option_uses_the_files_crop(tmp_path, monkeypatch):
    folder = FERPLUS_FIXTURE / "FER2013Valid"
    monkeypatch.setenv("DFER_PRETRAINED", str(_with_metadata(tmp_path / "half_crop.safetensors", face_crop=0.5)))
    rows = _ferplus_rows(folder)
    got = {}
    for name, extra in (("plain", []), ("cropped", ["--face-crop"])):
        rc, _, err = _cli("evaluate", "--pretrained", "--source", f"ferplus:{FERPLUS_FIXTURE}", "--split", "val",
                          "--out", tmp_path / name, "--workers", "0", *extra)
        assert rc == 0, err
        preds = _read_predictions(tmp_path / name / "predictions.csv")
        got[name] = np.array([[float(r[c]) for c in FERPLUS8] for r in preds])
    paths = [folder / n for n, _ in rows]
    np.testing.assert_allclose(got["plain"], _direct_probabilities(paths), atol=1e-5)
    # half of a 48-px face is its centred 24 px, a margin of 12
    np.testing.assert_allclose(got["cropped"], _direct_probabilities(paths, margin=12), atol=1e-5)
    assert np.abs(got["plain"] - got["cropped"]).max() > 1e-3  # the crop reached the model
    assert json.loads((tmp_path / "cropped" / "results.json").read_text())["preprocessing"]["face_crop"] == 0.5


@pytest.mark.parametrize("argv,message", [
    (["--source", "ferplsu:/data/FERPlus", "--split", "val"],
     r"--source 'ferplsu:/data/FERPlus': corpus kind 'ferplsu' unknown; expected KIND:PATH with KIND one of .*"),
    (["--source", "ferplus:{tmp}/nowhere", "--split", "val"], r".*nowhere: no FER\+ folder found .*"),
    (["--source", "{tmp}/nowhere", "--split", "val"], r".*nowhere: corpus not found"),
    (["--source", "ferplus:{fixture}", "--split", "holdout"], r"--split must be train, val or test, got 'holdout'"),
    (["--split", "val"], r"--pretrained needs a labelled corpus: --source KIND:PATH .*"),
    (["runs/x", "--source", "ferplus:{fixture}"], r"--pretrained evaluates the model that ships with dfer; drop .*"),
])
def test_evaluate_pretrained_bad_source_is_one_line(argv, message, tmp_path):
    argv = [a.format(tmp=tmp_path, fixture=FERPLUS_FIXTURE) for a in argv]
    rc, stdout, err = _cli("evaluate", "--pretrained", *argv, "--out", tmp_path / "eval")
    assert rc == 2 and stdout == ""
    assert re.fullmatch(rf"dfer evaluate: error: {message}\n", err), err
    assert not (tmp_path / "eval").exists()


# ---------------------------------------------------------------------------- dfer demo
def test_demo_prints_the_shipped_models_timeline(videos_dir, tmp_path):
    from dfer.demo import DEMO_VIDEO

    # the video ships inside the package (an installed dfer has no tests folder); the test
    # suite's copy is the same file
    assert DEMO_VIDEO.is_relative_to(Path(dfer.__file__).parent) and DEMO_VIDEO.is_file()
    assert DEMO_VIDEO.read_bytes() == (videos_dir / "single_face.mp4").read_bytes()
    rc, stdout, err = _cli("demo", "--pretrained-only")
    assert rc == 0, err
    lines = stdout.splitlines()
    assert lines[0].startswith("dfer FER+ ResNet-18 on single_face.mp4")
    assert re.fullmatch(r"  dominant \w+ \(\d\.\d\d\); faces in \d+/72 frames; 2 windows of 60 frames", lines[1])
    assert re.fullmatch(r"  0\.0-2\.0s \w+ \d\.\d\d", lines[2]) and re.fullmatch(r"  0\.4-2\.4s \w+ \d\.\d\d", lines[3])
    assert len(lines) == 4
    rc, stdout, err = _cli("demo", "--pretrained-only", "--video", tmp_path / "absent.mp4")
    assert rc == 2 and stdout == "" and re.fullmatch(r"dfer demo: error: --video .*absent\.mp4: file not found\n", err)


# ---------------------------------------------------------------------------- a trained model on real faces
def _tv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total-variation distance between rows of distributions."""
    return 0.5 * np.abs(p - q).sum(-1)


@needs_trained_weights
def test_trained_model_is_confident_on_a_real_face(cli_single_face):
    report = json.loads((cli_single_face[3] / "single_face.json").read_text())
    top = np.array([w["top_probability"] for w in report["windows"]])
    assert top.mean() > 0.5 and top.min() > 2 / 8  # chance is 1/8


@needs_trained_weights
def test_trained_model_sees_the_smile_and_changes_smoothly(videos_dir, bundle, detector):
    import dfer

    # face_noface.mov: a neutral face (frames 0-18), a broad smile (about 24-66), then no face
    smile = dfer.predict_video(videos_dir / "face_noface.mov", bundle, detector=detector, window_seconds=0.2, stride=3)
    mid = {w["index"]: (w["start_frame"] + w["end_frame"]) // 2 for w in smile["windows"]}
    happy = FERPLUS8.index("happy")
    p = {i: w["probabilities"] for i, w in enumerate(smile["windows"]) if w["probabilities"] is not None}
    neutral_face = [p[i][happy] for i in p if mid[i] <= 12]
    smiling = [i for i in p if 36 <= mid[i] <= 60]
    assert neutral_face and smiling
    assert all(smile["windows"][i]["top"] == "happy" for i in smiling)
    assert np.mean([p[i][happy] for i in smiling]) - np.mean(neutral_face) > 0.3

    # single_face.mp4 holds one calm expression: windows 2 frames (67 ms) apart overlap by 13 of
    # 15 frames; an expression takes a good part of a second to change, so the distribution of
    # neighbouring windows must move far less than between this face and the smile above
    steady = dfer.predict_video(videos_dir / "single_face.mp4", bundle, detector=detector, window_seconds=0.5,
                                stride=2)
    q = np.array([w["probabilities"] for w in steady["windows"]])
    assert len(q) >= 25
    neighbours = _tv(q[1:], q[:-1])
    across = _tv(q[:, None], np.array([p[i] for i in smiling])[None]).ravel()
    assert neighbours.mean() < 0.1 and neighbours.max() < 0.35
    assert neighbours.mean() < 0.5 * across.mean()


# ---------------------------------------------------------------------------- writing the shipped file
def test_export_writes_a_run_as_the_shipped_file_and_it_loads_back(tmp_path):
    from dfer.rundir import load_run
    from dfer.pretrained import read_pretrained
    from dfer.pretrained.export import export_run

    run = write_random_run(tmp_path / "run", size=32, num_frames=1)
    out = export_run(run, tmp_path / "shipped.safetensors", face_crop=0.8, num_frames=8,
                     metrics={"war": 0.5, "split": "val"}, prior=np.full(7, 1 / 7), prior_correction=0.25)
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    state, meta = read_pretrained(out)
    assert meta["face_crop"] == 0.8 and meta["num_frames"] == 8 and meta["size"] == 32 and meta["grey"] is True
    assert meta["classes"] == list(BASIC7) and meta["metrics"] == {"war": 0.5, "split": "val"}
    assert meta["prior"] == pytest.approx([1 / 7] * 7) and meta["prior_correction"] == 0.25 and meta["tta"] == "none"
    source, _, _ = load_run(run, which="last")
    for k, v in source.state_dict().items():
        expected = v.half().float() if v.is_floating_point() else v  # shipped as fp16
        torch.testing.assert_close(state[k], expected, rtol=0, atol=0)
    model, _ = load_shipped(out)
    x = torch.randn(2, 1, 3, 32, 32)
    torch.testing.assert_close(model(x), source.half().float()(x), rtol=1e-4, atol=1e-4)


def test_export_without_the_training_corpus_says_so_or_writes_no_prior(tmp_path, capsys):
    from dfer.pretrained import read_pretrained
    from dfer.pretrained.export import main as export_main

    run = write_random_run(tmp_path / "run", size=32, num_frames=1)  # its config names no corpus
    out = tmp_path / "m.safetensors"
    assert export_main([str(run), "--face-crop", "0.8", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class prior of its training data cannot be computed" in err[0] and "--no-prior" in err[0]
    assert not out.exists()
    assert export_main([str(run), "--face-crop", "0.8", "--out", str(out), "--no-prior", "--prior-correction",
                        "0.5"]) == 2
    assert "needs the training class prior" in capsys.readouterr().err
    assert export_main([str(run), "--face-crop", "0.8", "--out", str(out), "--no-prior", "--tta", "flip"]) == 0
    meta = read_pretrained(out)[1]
    assert meta["prior"] is None and meta["tta"] == "flip" and meta["prior_correction"] == 0.0


def test_export_refuses_a_multi_frame_run_and_needs_a_measured_face_crop(tmp_path, capsys):
    from dfer.pretrained.export import main as export_main

    run = write_random_run(tmp_path / "run", size=32, num_frames=2)
    assert export_main([str(run), "--out", str(tmp_path / "x.safetensors"), "--face-crop", "0.8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one-frame face model" in err[0] and "num_frames=2" in err[0]
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(SystemExit):
        export_main([str(run)])  # --face-crop is required: the value is measured, never a default


def test_export_replaces_a_model_file_of_dfers_and_refuses_any_other_unless_told(tmp_path, capsys):
    from dfer.pretrained import is_shipped_file
    from dfer.pretrained.export import main as export_main

    run = write_random_run(tmp_path / "run", size=32, num_frames=1)
    mine = tmp_path / "weights.safetensors"
    mine.write_bytes(b"the user's own file")
    args = [str(run), "--no-prior", "--face-crop", "0.8", "--out", str(mine)]  # the random run has no corpus
    assert export_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {mine} exists and was not written by python -m dfer.pretrained; choose another, or "
                   f"give --overwrite to replace it"], err
    assert mine.read_bytes() == b"the user's own file"
    assert export_main([*args, "--overwrite"]) == 0
    assert is_shipped_file(mine)
    before = mine.read_bytes()
    assert export_main([*args[:-1], str(mine), "--num-frames", "4"]) == 0  # dfer's own model file: replaced
    assert mine.read_bytes() != before and pretrained_info(mine)["num_frames"] == 4
    folder = tmp_path / "folder"
    folder.mkdir()
    assert export_main([str(run), "--face-crop", "0.8", "--out", str(folder)]) == 2
    assert f"{folder} is not a file" in capsys.readouterr().err
