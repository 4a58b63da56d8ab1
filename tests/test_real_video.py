"""Real acted video (tests/data/acted/javanese: three clips of three actors, MIT) through
dfer's whole path: preprocessing finds the face in every frame, ``dfer evaluate
--pretrained`` answers each clip exactly as ``dfer predict`` does (from the video, and from
the preprocessed frame folder), the shipped model gets a clearly acted happy clip right, a
training run can add a second corpus that only trains, and a cross-validation by actor
never puts one actor on both sides.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_random_ferplus
from dfer.cli import main
from dfer.config import load_config
from dfer.data.corpora.registry import load_source
from dfer.data.decode import read_image
from dfer.data.splits import build_splits
from dfer.data.transforms import CentreFraction, Grey, build_transforms
from dfer.errors import ConfigError
from dfer.predict import PredictConfig, WindowPlan, load_pretrained, plan_windows, predict_file
from dfer.preprocess.video import iter_frames

ROOT = Path(__file__).resolve().parents[1]
CLIPS = Path(__file__).parent / "data" / "acted" / "javanese"
NAMES = ("01-01-03_01", "04-02-04_01", "07-03-01_01")  # happy, surprise, neutral


@pytest.fixture(scope="module")
def bundle():
    return load_pretrained(device="cpu")


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("jv") / "frames"
    assert main(["preprocess", str(CLIPS), str(out), "--kind", "javanese", "-o", "folds=3", "--progress", "off"]) == 0
    return out


def _predictions(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {row["clip_id"]: row for row in csv.DictReader(f)}


# ---------------------------------------------------------------------------- preprocessing
@pytest.mark.slow
def test_preprocess_finds_the_face_in_every_frame_of_real_speaking_clips(preprocessed):
    report = json.loads((preprocessed / "report.json").read_text())
    assert report["summary"] == {**report["summary"], "videos": 3, "ok": 3, "failed": 0}
    videos = {v["path"]: v for v in report["videos"]}
    for v in videos.values():
        # the face is found in every frame that shows it: none is filled in from a neighbour
        assert v["found_frames"] == v["num_frames"] > 40 and v["filled_frames"] == 0, v
        assert len(list((preprocessed / v["path"]).glob("*.jpg"))) == v["num_frames"]
    # 07-03-01_01 fades in from two black frames: left out, so the clip is the face's
    assert {p: (v["first_frame"], v["trimmed_frames"]) for p, v in videos.items()} == {
        "01-01-03_01": (0, 0), "04-02-04_01": (0, 0), "07-03-01_01": (2, 2)}
    black = [f.mean() for f in itertools.islice(iter_frames(CLIPS / "07-03-01_01.mp4"), 3)]
    assert black[0] == black[1] == 0 and black[2] > 50
    first = read_image(str(preprocessed / "07-03-01_01" / "00001.jpg"))
    assert first.mean() > 50  # the first frame written is a face, not the black lead-in
    # the acted corpus reads the frame folders as it reads the videos: labels and actors by name
    table = load_source("javanese", preprocessed)
    assert sorted(Path(s).name for s in table.source) == list(NAMES)
    assert sorted(table.group) == ["01", "04", "07"]
    # and the manifest (--kind javanese -o folds=3) carries them: label, actor, fold by actor
    with open(preprocessed / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"path": "01-01-03_01", "num_frames": "113", "label": "happy", "group": "01", "fold": "1"},
                    {"path": "04-02-04_01", "num_frames": "57", "label": "surprise", "group": "04", "fold": "2"},
                    {"path": "07-03-01_01", "num_frames": "49", "label": "neutral", "group": "07", "fold": "3"}]
    manifest = load_source("manifest", preprocessed / "manifest.csv")
    assert [manifest.classes[y] for y in manifest.label] == ["happy", "surprise", "neutral"]


# ---------------------------------------------------------------------------- one input path
@pytest.mark.slow
def test_evaluate_pretrained_answers_each_clip_as_predict_does(bundle, tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(["evaluate", "--pretrained", "--source", f"javanese:{CLIPS}", "--split", "all", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    classes = res["classes"]
    rows = _predictions(out / "predictions.csv")
    assert len(rows) == 3 and res["clips_without_face"] == []
    cfg = PredictConfig(threads=torch.get_num_threads())
    for name in NAMES:
        report = predict_file(CLIPS / f"{name}.mp4", bundle, cfg)
        mean = np.asarray(report["summary"]["mean_probabilities"])
        shared = mean[[bundle.classes.index(c) for c in classes]]
        got = np.array([float(rows[f"{name}.mp4"][c]) for c in classes])
        np.testing.assert_allclose(got, shared / shared.sum(), atol=2e-6)
        assert rows[f"{name}.mp4"]["pred"] == classes[int(shared.argmax())]
    # a clearly acted happy face: the shipped model, with no training on this corpus, says happy
    assert rows["01-01-03_01.mp4"]["pred"] == "happy"
    assert predict_file(CLIPS / "01-01-03_01.mp4", bundle, cfg)["summary"]["dominant"] == "happy"


@pytest.mark.slow
def test_evaluate_pretrained_on_frame_folders_uses_the_recorded_frame_rate(bundle, preprocessed, tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(["evaluate", "--pretrained", "--source", f"javanese:{preprocessed}", "--split", "all",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    rows = _predictions(out / "predictions.csv")
    classes = json.loads((out / "results.json").read_text())["classes"]
    for name in NAMES:
        report = predict_file(preprocessed / name, bundle, PredictConfig(aligned=True), fps=29.97)
        assert report["window_frames"] == 60  # 2 s at the clip's own 29.97 fps, as for the video
        mean = np.asarray(report["summary"]["mean_probabilities"])
        shared = mean[[bundle.classes.index(c) for c in classes]]
        np.testing.assert_allclose([float(rows[name][c]) for c in classes], shared / shared.sum(), atol=2e-6)
    # without its report.json a frame folder has no frame rate: the loader's path, as for DFEW's frames
    bare = tmp_path / "bare"
    shutil.copytree(preprocessed / NAMES[0], bare / NAMES[0])
    rc = main(["evaluate", "--pretrained", "--source", f"javanese:{bare}", "--split", "all", "--face-crop", "--out",
               str(tmp_path / "ev2")])
    assert rc == 0, capsys.readouterr().err
    assert "path" not in json.loads((tmp_path / "ev2" / "results.json").read_text())["preprocessing"]
    # the predict path takes no loader options: one line, exit 2
    rc = main(["evaluate", "--pretrained", "--source", f"javanese:{preprocessed}", "--split", "all", "--face-crop",
               "--out", str(tmp_path / "ev3")])
    err = capsys.readouterr().err
    assert rc == 2 and "--face-crop" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_clip_without_a_face_is_not_scored_and_is_named(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(CLIPS / "01-01-03_01.mp4", clips)
    shutil.copy(Path(__file__).parent / "data" / "videos" / "no_face.mp4", clips / "02-01-03_01.mp4")  # "happy"
    rc = main(["evaluate", "--pretrained", "--source", f"javanese:{clips}", "--split", "all", "--out",
               str(tmp_path / "ev")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["clips_without_face"] == ["02-01-03_01.mp4"] and "1 clip(s) without a face are not scored" in out
    assert res["num_clips"] == 1 and list(_predictions(tmp_path / "ev" / "predictions.csv")) == ["01-01-03_01.mp4"]


def test_frames_aligned_with_another_face_fraction_are_cut_to_the_models_framing(bundle):
    from dfer.evaluate import _reframed
    from dfer.errors import DataError

    assert _reframed(bundle, 0.7, "x") is bundle  # dfer's own alignment: the model's 0.65 crop
    assert _reframed(bundle, 0.7 / 0.65, "x").face_crop == pytest.approx(1.0)  # already the model's framing
    assert _reframed(bundle, 0.35, "x").face_crop == pytest.approx(0.325)  # twice the margin: half the crop
    with pytest.raises(DataError, match="preprocess again with --face-fraction 0.7"):
        _reframed(bundle, 1.5, "x")


def test_a_frame_folder_needs_aligned_and_a_frame_rate(bundle, tmp_path):
    (tmp_path / "clip").mkdir()
    with pytest.raises(ConfigError, match="aligned=True, fps > 0"):
        predict_file(tmp_path / "clip", bundle, PredictConfig(aligned=False), fps=30)
    with pytest.raises(ConfigError, match="aligned=True, fps > 0"):
        predict_file(tmp_path / "clip", bundle, PredictConfig(aligned=True))


def test_windows_sample_only_frames_with_a_face():
    plan = plan_windows(100, 50, 50, 5)  # two windows; segment centres 5, 15, ..., 45 and 55, ..., 95
    found = np.ones(100, bool)
    found[:12] = False  # a black lead-in
    found[60:70] = False  # the face turned away
    found[50:55] = False
    found[62] = True  # ... but for one frame: 62 is nearer to 65 than 70 is
    got = plan.on_faces(found)
    np.testing.assert_array_equal(got.indices[0], [12, 15, 25, 35, 45])  # 5 -> the first face frame
    np.testing.assert_array_equal(got.indices[1], [55, 62, 75, 85, 95])  # 65 -> 62, nearer than 70
    assert np.array_equal(got.starts, plan.starts) and np.array_equal(got.ends, plan.ends)
    assert found[got.indices].all()
    tie = np.ones(100, bool)
    tie[24:27] = False  # 25 is as far from 23 as from 27: the earlier one
    assert plan.on_faces(tie).indices[0, 2] == 23
    # nothing to replace, or nothing to replace it with: the plan as it was
    assert np.array_equal(plan.on_faces(np.ones(100, bool)).indices, plan.indices)
    none = np.zeros(100, bool)
    assert np.array_equal(plan.on_faces(none).indices, plan.indices)


def test_predict_never_feeds_the_black_lead_in_to_the_model(bundle, monkeypatch):
    import dfer.predict.report as predict_module

    fed = []
    real = predict_module._classify_windows
    monkeypatch.setattr(predict_module, "_classify_windows",
                        lambda crops, plan, *a, **k: fed.append(plan) or real(crops, plan, *a, **k))
    # half-second windows: the first one's segment centres fall on the black frames too
    report = predict_file(CLIPS / "07-03-01_01.mp4", bundle, PredictConfig(threads=1, window_seconds=0.5))
    # frames 0 and 1 are black; with the detector on every third frame, 2 counts as faceless too
    assert report["status"] == "ok" and report["summary"]["frames_without_face"] == 3
    (plan,) = fed
    assert plan_windows(51, 15, 15, 8).indices.min() < 3 <= plan.indices.min()


# ---------------------------------------------------------------------------- the framing, one home
def test_training_framing_is_the_shipped_models_framing():
    """data.face_crop / data.grey go through the same build_transforms as dfer predict:
    the reference is the crop, the grey conversion and the test transform applied by hand."""
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    got = build_transforms(train=False, size=64, face_crop=0.65, grey=True)(clip)
    ref = build_transforms(train=False, size=64)(Grey()(CentreFraction(0.65)(clip)).permute(0, 2, 3, 1).numpy())
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    grey = build_transforms(train=False, size=64, face_crop=0.65, grey=True, uint8=True)(clip)
    assert grey.dtype == torch.uint8 and torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    # the crop is decoded from a frame large enough for it
    assert build_transforms(train=False, size=64, face_crop=0.5).size_hint == 128
    with pytest.raises(ConfigError, match="data.face_crop"):
        load_config(None, ["data.face_crop=1.5"])


# ---------------------------------------------------------------------------- several corpora in one run
def _two_corpora(tmp_path: Path, *more: str):
    ferplus = write_random_ferplus(tmp_path / "ferplus")
    return load_config(None, ["data.source.kind=javanese", f"data.source.root={CLIPS}",
                              "data.source.options={folds: 3}", "data.source.fold=2", "data.classes=ferplus8",
                              "data.ties=first", "data.check_disk=false",
                              f"data.train_sources=[{{kind: ferplus, root: {ferplus}, train_split: train}}]",
                              *more])


def test_a_further_corpus_only_trains_and_its_classes_map_by_name(tmp_path):
    cfg = _two_corpora(tmp_path, "data.repeat=3")
    splits = build_splits(cfg)
    # the test clips are the main corpus's held-out actor alone
    assert [Path(s).stem for s in splits.test.source] == ["04-02-04_01"]
    acted = np.char.find(splits.train.clip_id.astype(str), "ferplus:") < 0
    # the two other actors' clips, three copies each with distinct ids; FER+ Train once
    assert sorted(Path(s).stem for s in splits.train.source[acted]) == ["01-01-03_01"] * 3 + ["07-03-01_01"] * 3
    assert len(set(splits.train.clip_id)) == len(splits.train)
    assert (~acted).sum() == 135  # write_random_ferplus: 136 train images, one with an unknown majority
    # labels by name in the run's classes: happy and neutral of the acted clips, FER+'s votes kept
    names = {splits.classes[y] for y in splits.train.label[acted]}
    assert names == {"happy", "neutral"}
    assert np.isnan(splits.train.votes[acted]).all() and not np.isnan(splits.train.votes[~acted]).any()
    assert cfg.run_name() == "tsm_resnet18_midas-a0.4_javanese+ferplus-fold2"


def test_the_shipped_classifier_is_taken_only_when_asked_and_only_for_its_classes():
    from dfer.models import create_model
    from dfer.models.weights import load_pretrained_classifier
    from dfer.pretrained import read_pretrained

    state, meta = read_pretrained()
    model = create_model("tsm_resnet18", num_classes=8, pretrained="ferplus", dropout=0.0, shift_div=0)
    fresh = model.classifier.weight.detach().clone()
    assert not torch.equal(fresh, state["classifier.weight"].float())  # the trunk alone by default
    assert not load_pretrained_classifier(model, list(reversed(meta["classes"])))  # another order: no
    assert torch.equal(model.classifier.weight, fresh)
    assert load_pretrained_classifier(model, meta["classes"])
    assert torch.equal(model.classifier.weight, state["classifier.weight"].float())
    assert torch.equal(model.classifier.bias, state["classifier.bias"].float())
    with pytest.raises(ConfigError, match="needs model.pretrained: ferplus"):
        load_config(None, ["model.pretrained_classifier=true"])
    with pytest.raises(ConfigError, match="would judge the copies of one clip apart"):
        load_config(None, ["robust.enabled=true", "data.repeat=2"])


def test_a_model_file_of_a_longer_run_is_fine_tuned_whole_from_its_path(tmp_path):
    """pretrained: PATH with pretrained_classifier takes that file's trunk and classifier (not
    the shipped model's); a plain state dict has no classes to check, so it is refused."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from dfer.models import create_model
    from dfer.models.weights import load_pretrained_classifier
    from dfer.pretrained import read_pretrained, weights_path

    state, meta = read_pretrained()
    changed = {k: (v * 0.5 if k.startswith("classifier.") or k == "backbone.conv1.weight" else v)
               for k, v in state.items()}
    with safe_open(str(weights_path()), framework="pt") as f:
        metadata = f.metadata()
    path = tmp_path / "longer.safetensors"
    save_file(changed, str(path), metadata=metadata)  # a model file of dfer's, other weights
    model = create_model("tsm_resnet18", num_classes=8, pretrained=str(path), dropout=0.0, shift_div=0)
    assert torch.equal(model.backbone.conv1.weight, changed["backbone.conv1.weight"])
    assert load_pretrained_classifier(model, meta["classes"], str(path))
    assert torch.equal(model.classifier.weight, changed["classifier.weight"])
    assert not torch.equal(model.classifier.weight, state["classifier.weight"].float())
    # through dfer train: the run starts from that file's classifier (a step too small to move it)
    ferplus = write_random_ferplus(tmp_path / "ferplus")
    assert main(["train", "-c", str(ROOT / "configs" / "ferplus" / "still_face.yaml"), f"data.source.root={ferplus}",
                 "data.source.test_split=val", f"model.pretrained={path}", "model.pretrained_classifier=true",
                 "data.size=32", "data.num_workers=0", "optim.epochs=1", "optim.batch_size=64", "optim.lr=1e-9",
                 "optim.precision=fp32", "threads=1", "tensorboard=false", "progress=false",
                 f"out_dir={tmp_path / 'runs'}", "name=further"]) == 0
    trained = load_file(str(tmp_path / "runs" / "further" / "checkpoints" / "last.safetensors"))
    torch.testing.assert_close(trained["model.classifier.weight"], changed["classifier.weight"], rtol=0, atol=1e-5)
    torch.testing.assert_close(trained["model.backbone.conv1.weight"], changed["backbone.conv1.weight"], rtol=0,
                               atol=1e-5)

    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in changed.items()}, str(plain))
    with pytest.raises(ConfigError, match=r"plain.safetensors: model.pretrained_classifier .* this file is not one"):
        load_pretrained_classifier(model, meta["classes"], str(plain))
    # a user's damaged or missing model file is theirs to write again: no advice to reinstall dfer
    broken = tmp_path / "broken.safetensors"
    save_file({**changed, "classifier.bias": torch.full_like(changed["classifier.bias"], float("nan"))}, str(broken),
              metadata=metadata)
    for bad, what in ((broken, r"this dfer model file is damaged \(weight tensor classifier.bias holds NaN"),
                      (tmp_path / "absent.safetensors", "the model file not found")):
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}: {what}") as e:
            load_pretrained_classifier(model, meta["classes"], str(bad))
        assert "reinstall" not in str(e.value)


def test_train_sources_settings_are_checked_when_the_config_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"data.train_sources\[0\].repeat must be >= 1"):
        load_config(None, ["data.train_sources=[{kind: ferplus, root: x, repeat: 0}]"])
    cfg = _two_corpora(tmp_path)
    cfg.data.train_sources[0].root = ""
    with pytest.raises(ConfigError, match=r"data.train_sources\[0\] \(ferplus\) has no root"):
        build_splits(cfg)
    with pytest.raises(ConfigError, match="data.repeat"):
        load_config(None, ["data.repeat=0"])


# ---------------------------------------------------------------------------- folds by person
@pytest.mark.slow
def test_cross_validation_by_actor_never_puts_one_actor_on_both_sides(preprocessed, tmp_path, capsys):
    out = tmp_path / "cv"
    rc = main(["cv", "-c", str(Path(__file__).parents[1] / "configs" / "acted" / "javanese_frames.yaml"),
               f"data.source.root={preprocessed}", "data.source.options={folds: 3}", "model.pretrained=false",
               "data.size=32", "data.num_frames=2", "optim.epochs=1", "optim.warmup_epochs=0",
               "optim.batch_size=2", "data.num_workers=0", "threads=1", "progress=false", "tensorboard=false",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    folds = sorted(out.glob("*/fold*/predictions.csv"))
    assert len(folds) == 3
    tested = []
    for k, path in enumerate(folds, start=1):
        test_actors = {row["clip_id"][:2] for row in _predictions(path).values()}
        cfg = load_config(path.parent / "config.yaml")
        train_actors = set(build_splits(cfg).train.group)
        assert test_actors and not test_actors & train_actors, (k, test_actors, train_actors)
        tested += sorted(test_actors)
    assert sorted(tested) == ["01", "04", "07"]  # every actor tested exactly once


# ---------------------------------------------------------------------------- trimming and reruns
@pytest.mark.slow
def test_trimming_is_a_setting_and_an_out_written_before_it_existed_is_kept_untrimmed(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(CLIPS / "07-03-01_01.mp4", src)  # two black frames first
    out = tmp_path / "out"
    assert main(["preprocess", str(src), str(out), "--no-trim", "--progress", "off"]) == 0
    record_path = out / ".done" / "07-03-01_01.json"
    record = json.loads(record_path.read_text())
    assert (record["num_frames"], record["first_frame"], record["trimmed_frames"]) == (51, 0, 0)
    # a record of the version before trimming existed has no "trim": it is the untrimmed output
    del record["settings"]["trim"]
    record_path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["preprocess", str(src), str(out), "--no-trim", "--progress", "off"]) == 0
    assert "1 already done" in capsys.readouterr().out
    # the default trims: the video is redone, its folder now starts at the face
    assert main(["preprocess", str(src), str(out), "--progress", "off"]) == 0
    assert "0 already done" in capsys.readouterr().out
    assert len(list((out / "07-03-01_01").glob("*.jpg"))) == 49
    assert json.loads(record_path.read_text())["first_frame"] == 2
