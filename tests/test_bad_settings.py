"""Settings that cannot train, or that name a part that does not exist, stop with one line and
exit 2, before anything is trained or written over. (Ranges of single fields: test_config.)

A setting whose fault shows without the data (a range, a choice, a size that cannot fit in
memory, a rule between settings, a corpus option of the wrong type) stops before any data
is read and before the run's folder exists; only what needs the data (the number of
training clips, a class a corpus lacks) is found once the corpus is read."""

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


class _DataRead(Exception):
    """Raised where the first corpus would be read."""


@pytest.mark.parametrize("settings, message", [
    (["robust.enabled=true", "robust.num_clips=1"], "robust.num_clips must be >= 2 (agreement needs several clips), "
                                                    "got 1"),
    (["robust.enabled=true", "robust.noisy_policy=bogus"], "robust.noisy_policy must be downweight or correct, "
                                                           "got 'bogus'"),
    (["label_mode=mixup", "mixing.lam_per=sample"], "label mode 'mixup' draws one lam per batch; got "
                                                    "mixing.lam_per 'sample'"),
    (["label_mode=mixup", "mixing.normalise=softmax"], "label mode 'mixup' is defined without normalisation"),
    (["optim.lr=1e308"], "optim.lr must be at most 1000, got 1e+308"),
    (["optim.lr=-0.1"], "optim.lr must be > 0, got -0.1"),
    (["optim.lr=.inf"], "optim.lr: expected a finite number"),
    (["data.size=100000"], "data.size must be at most 1024, got 100000"),
    (["data.num_frames=100000"], "data.num_frames must be at most 1024, got 100000"),
    (["threads=100000"], "threads must be at most 1024, got 100000"),
    (["data.num_workers=100000"], "data.num_workers must be at most 1024, got 100000"),
    (["data.erase=2"], "data.erase must be a probability in [0, 1], got 2.0"),
    (["data.erase_scale=[0.5, 0.2]"], "data.erase_scale must be two fractions in (0, 1], low <= high, got [0.5, 0.2]"),
    (["data.source.options={classes: 5}"], "data.source.options: corpus kind 'dfew': option classes expects str or "
                                           "a list, got 5"),
    (["data.source.options={frames: 5}"], "data.source.options: corpus kind 'dfew': option frames expects str, "
                                          "got 5"),
    (["data.source.options={frame: x}"], "data.source.options: corpus kind 'dfew': unknown option(s) ['frame']"),
    (["data.source.kind=dfwe"], "data.source.kind must be one of dfew, "),
    (["data.train_sources=[{kind: dfew, root: /x, repeat: 0}]"], "data.train_sources[0].repeat must be >= 1, got 0"),
    (["model.name=tsm_resnet81"], "model.name must be r3d_18, "),
    (["data.classes=happy"], "data.classes 'happy' names 1 class"),
    (["data.classes=happy,glee"], "data.classes 'happy,glee': "),
    (["name=../elsewhere"], "name must be a folder name"),
    (["model.pretrained_classifier=true"], "model.pretrained_classifier takes the classifier of a dfer model"),
])
def test_a_setting_at_fault_stops_before_any_data_is_read_and_nothing_is_written(settings, message, synthetic_dfew,
                                                                                  tmp_path, capsys, monkeypatch):
    import dfer.data.splits

    def no_data(*a, **k):
        raise _DataRead

    monkeypatch.setattr(dfer.data.splits, "load_source", no_data)
    monkeypatch.chdir(tmp_path)  # a relative folder of the run would land here
    out = tmp_path / "runs"
    assert main(["train", f"out_dir={out}", *tiny(synthetic_dfew), *settings]) == 2
    assert message in _one_line(capsys.readouterr().err)
    assert not any(tmp_path.iterdir())  # no run folder, no lock, no cache


@pytest.mark.parametrize("argv, message", [
    (["predict", "clip.mp4", "--size", "100000"], "--size must be at most 1024, got 100000"),
    (["predict", "clip.mp4", "--num-frames", "0"], "--num-frames must be >= 1, got 0"),
    (["predict", "clip.mp4", "--threads", "x"], "argument --threads: expected an integer, got 'x'"),
    (["data", "check", "corpus", "--workers", "-1"], "--workers must be >= 1, got -1"),
    (["evaluate", "run", "--batch-size", "100000000"], "--batch-size must be at most 65536, got 100000000"),
    (["preprocess", "src", "out", "--size", "100000"], "--size must be at most 1024, got 100000"),
    (["preprocess", "src", "out", "--workers", "0"], "--workers must be >= 1, got 0"),
])
def test_a_numeric_option_at_fault_is_one_line_and_nothing_is_read_or_written(argv, message, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip.mp4").write_bytes(b"")
    before = sorted(tmp_path.rglob("*"))
    assert main(argv) == 2
    assert message in _one_line(capsys.readouterr().err)
    assert sorted(tmp_path.rglob("*")) == before


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
    rc = main(["train", "--run-dir", str(run), *tiny(synthetic_dfew), "optim.lr=1000", "optim.warmup_epochs=0",
               "optim.batch_size=4", "log_every=1"])
    assert rc == 2
    line = _one_line(capsys.readouterr().err)
    assert re.search(r"the training loss became (nan|inf) in epoch 1 \(by step \d+\); lower optim\.lr", line), line
    assert not (run / "checkpoints" / "last.safetensors").exists()
