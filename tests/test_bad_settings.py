"""Settings that cannot train, or that name a part that does not exist, stop with one line and
exit 2, before anything is trained or written over. (Ranges of single fields: test_config.)"""

from __future__ import annotations

import re

import pytest

from conftest import write_random_run
from dfer.cli import main


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def tiny(root) -> list[str]:
    return [f"data.source.root={root}", "data.num_frames=2", "data.size=32", "data.num_workers=0",
            "data.scales=[1.0]", "optim.epochs=1", "label_mode=soft", "threads=1", "tensorboard=false",
            "progress=false"]


@pytest.mark.parametrize("setting", ["optim.batch_size=500", "data.val_fraction=0.95"])
def test_an_epoch_without_an_optimiser_step_is_refused_before_the_model_is_built(setting, synthetic_dfew,
                                                                                 tmp_path, capsys, monkeypatch):
    import dfer.train

    def forbidden(*a, **k):
        raise AssertionError("the model was built")

    monkeypatch.setattr(dfer.train, "create_model", forbidden)
    extra = ["optim.batch_size=16"] if "val_fraction" in setting else []
    assert main(["train", f"out_dir={tmp_path}", *tiny(synthetic_dfew), *extra, setting]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "an epoch would make no optimiser step" in line and "optim.batch_size=" in line
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("metrics.csv"))


@pytest.mark.parametrize("args, message", [
    (["--split", "tset"], "--split and --fold choose a part of --source"),
    (["--fold", "2"], "--split and --fold choose a part of --source"),
    (["--num-clips", "-1"], "--num-clips must be >= 1, got -1"),
])
def test_evaluate_refuses_options_it_would_ignore_or_misread(args, message, tmp_path, capsys):
    run = write_random_run(tmp_path / "run")
    assert main(["evaluate", str(run), *args]) == 2
    assert message in _one_line(capsys.readouterr().err)


def test_evaluate_names_a_misspelt_split_of_a_source(synthetic_dfew, tmp_path, capsys):
    run = write_random_run(tmp_path / "run")
    assert main(["evaluate", str(run), "--source", f"dfew:{synthetic_dfew}", "--split", "tset"]) == 2
    assert "--split must be train, val or test, got 'tset'" in _one_line(capsys.readouterr().err)


def test_a_bad_frame_found_by_a_loader_worker_is_the_same_one_line(synthetic_dfew, tmp_path, capsys):
    """The disk check reads a folder's ends; a bad middle frame is met by a DataLoader worker,
    whose error reaches the user as the one line the main process would have printed."""
    import shutil

    corpus = tmp_path / "DFEW"
    shutil.copytree(synthetic_dfew, corpus)
    for clip in sorted((corpus / "Clip" / "clip_224x224").iterdir()):
        (clip / "00005.jpg").write_bytes(b"not a jpeg")  # frame 5 of 10: not one the check reads
    rc = main(["train", f"out_dir={tmp_path / 'runs'}", *tiny(corpus), "data.num_workers=1"])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = _one_line(err)
    assert "00005.jpg" in line and "worker" not in line.lower()


def test_a_corpus_option_of_the_wrong_type_is_one_line(synthetic_dfew, tmp_path, capsys):
    assert main(["train", f"out_dir={tmp_path}", *tiny(synthetic_dfew), "data.source.options={frames: 5}"]) == 2
    assert "corpus kind 'dfew': option frames expects str, got 5" in _one_line(capsys.readouterr().err)


def test_a_diverging_loss_stops_the_run_with_one_line_naming_the_setting(synthetic_dfew, tmp_path, capsys):
    """The losses stay on the device between log points; the check there still catches a
    blow-up, as a setting to change (exit 2), and no epoch is checkpointed after it."""
    run = tmp_path / "run"
    rc = main(["train", "--run-dir", str(run), *tiny(synthetic_dfew), "optim.lr=1e12", "optim.warmup_epochs=0",
               "optim.batch_size=4", "log_every=1"])
    assert rc == 2
    line = _one_line(capsys.readouterr().err)
    assert re.search(r"the training loss became (nan|inf) in epoch 1 \(by step \d+\); lower optim\.lr", line), line
    assert not (run / "checkpoints" / "last.safetensors").exists()
