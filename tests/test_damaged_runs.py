"""Every file dfer reads back from a run or a cv folder, damaged: one line naming the file,
exit 2, in every command that reads it (evaluate, predict, train when resuming, cv)."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from conftest import write_random_run
from dfer.cli import main


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


class Boom:
    def __reduce__(self):  # unpickling this would run code: dfer must never do it
        return (exec, ("raise SystemExit('unpickled!')",))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign(path):
    save_file({"w": torch.zeros(3)}, str(path))  # a safetensors file without dfer's state


def _pickle(path):
    path.write_bytes(pickle.dumps(Boom()))


def _state_not_a_mapping(path):
    save_file({"w": torch.zeros(3)}, str(path), metadata={"dfer_state": "[1, 2]"})


CHECKPOINT_DAMAGE = {"truncated": (_truncate, "is not a readable dfer checkpoint"),
                     "foreign": (_foreign, "is not a readable dfer checkpoint (KeyError"),
                     "pickle": (_pickle, "is not a readable dfer checkpoint"),
                     "state": (_state_not_a_mapping, "its dfer state is list, not a mapping")}


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize("damage", sorted(CHECKPOINT_DAMAGE))
def test_a_damaged_checkpoint_is_one_line_in_evaluate_and_predict(command, damage, tmp_path, capsys, videos_dir):
    run = write_random_run(tmp_path / "run")
    ckpt = run / "checkpoints" / "last.safetensors"
    fn, message = CHECKPOINT_DAMAGE[damage]
    fn(ckpt)
    args = ["evaluate", str(run)] if command == "evaluate" else \
        ["predict", str(videos_dir / "single_face.mp4"), "--run", str(run), "--out", str(tmp_path / "p")]
    assert main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(ckpt) in line and message in line


def test_a_checkpoint_of_another_model_is_named_as_not_fitting(tmp_path, capsys):
    run = write_random_run(tmp_path / "run")
    other = write_random_run(tmp_path / "other")
    cfg = (other / "config.yaml").read_text().replace("name: tsm_resnet18", "name: resnet18_gru")
    (run / "config.yaml").write_text(cfg)
    assert main(["evaluate", str(run)]) == 2
    assert "does not fit this run's model and optimiser" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("text, message", [
    ("[\"happy\", ", "not valid JSON"),
    ("{\"happy\": 1}", "expected a list of two or more distinct class names"),
    ("[\"happy\"]", "expected a list of two or more distinct class names"),
    ("[\"happy\", \"happy\"]", "expected a list of two or more distinct class names"),
    ("[\"happy\", 3]", "expected a list of two or more distinct class names"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_a_damaged_classes_json_is_one_line(text, message, tmp_path, capsys):
    run = write_random_run(tmp_path / "run")
    path = run / "classes.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["evaluate", str(run)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(path) in line and message in line


def _tiny(root, run) -> list[str]:
    return ["--run-dir", str(run), f"data.source.root={root}", "data.num_frames=2", "data.size=32",
            "data.num_workers=0", "data.scales=[1.0]", "optim.epochs=2", "label_mode=soft", "threads=1",
            "tensorboard=false", "progress=false"]


@pytest.mark.parametrize("damage", sorted(CHECKPOINT_DAMAGE))
def test_resuming_from_a_damaged_checkpoint_is_one_line(damage, synthetic_dfew, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n")
    ckpt = run / "checkpoints" / "last.safetensors"
    ckpt.write_bytes(b"\0" * 64)
    CHECKPOINT_DAMAGE[damage][0](ckpt) if damage != "truncated" else None
    assert main(["train", *_tiny(synthetic_dfew, run)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(ckpt) in line and "--restart" in line


def test_resuming_with_a_garbled_metrics_csv_names_its_line(synthetic_dfew, tmp_path, capsys):
    from dfer.config import load_config
    from dfer.train import train

    run = tmp_path / "run"
    args = _tiny(synthetic_dfew, run)
    train(load_config(None, args[2:]), run_dir=run, stop_after_epochs=1)
    metrics = run / "metrics.csv"
    metrics.write_text(metrics.read_text() + "two,0.5,,,0.1,1,1\n")
    capsys.readouterr()
    assert main(["train", *args]) == 2
    assert f"{metrics}:3: epoch 'two' is not an integer" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("text", ["[1, 2]", "{\"name\": ", "3", "{\"folds\": [1]}",
                                  "{\"folds\": \"1\", \"config\": {}}"])
def test_a_damaged_cv_json_is_one_line_in_cv_and_its_summary(text, synthetic_dfew, tmp_path, capsys):
    cv = tmp_path / "x-cv"
    cv.mkdir()
    (cv / "cv.json").write_text(text)
    assert main(["cv", "--summarise", "--cv-dir", str(cv)]) == 2
    assert str(cv / "cv.json") in _one_line(capsys.readouterr().err)
    from dfer.experiments import cv_name
    from dfer.config import load_config

    ov = [f"data.source.root={synthetic_dfew}", "data.num_frames=2", "data.size=32", "optim.epochs=1"]
    target = tmp_path / "out" / cv_name(load_config(None, ov))
    target.mkdir(parents=True)
    (target / "cv.json").write_text(text)
    assert main(["cv", *ov, "--out", str(tmp_path / "out"), "--folds", "1"]) == 2
    assert str(target / "cv.json") in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "not the results of a dfer run"),
    ("{\"uar\": \"high\", \"war\": 0.5, \"classes\": [\"a\", \"b\"]}", "not the results of a dfer run"),
    ("{\"uar\": ", "not valid JSON"),
])
def test_a_damaged_results_json_in_a_cv_folder_is_one_line(text, message, synthetic_dfew, tmp_path, capsys):
    ov = [f"data.source.root={synthetic_dfew}", "data.num_frames=2", "data.size=32", "data.num_workers=0",
          "data.scales=[1.0]", "optim.epochs=1", "label_mode=soft", "threads=1", "tensorboard=false",
          "progress=false"]
    assert main(["cv", *ov, "--out", str(tmp_path), "--folds", "1"]) == 0
    cv = next(tmp_path.glob("*-cv"))
    (cv / "fold1" / "results.json").write_text(text)
    capsys.readouterr()
    assert main(["cv", "--summarise", "--folds", "1", "--cv-dir", str(cv)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(cv / "fold1" / "results.json") in line and message in line
