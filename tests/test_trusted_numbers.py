"""No number trusted unchecked: every number dfer reads from a user's or a run's file is
checked where it is read, and either gives the right answer or is one line naming the file
and the field (exit 2): image bit depth, votes, frame counts, a checkpoint's state, the
metadata and weights of a weights file, ``--folds`` ranges, and a run that another process
is still training."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import write_random_run
from test_one_writer import held_by_another_process
from dfer.cli import main
from dfer.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
FERPLUS_FIXTURE = ROOT / "tests" / "data" / "ferplus"
FACES = sorted((FERPLUS_FIXTURE / "FER2013Valid").glob("*.png"))


def _env() -> dict:
    """The environment of a dfer child process: this checkout's sources first."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------- image bit depth


@pytest.mark.parametrize("widen", [lambda v: v * 257, lambda v: v << 8], ids=["times-257", "shifted"])
def test_a_16_bit_grey_face_reads_as_its_8_bit_self(widen, tmp_path):
    """PIL's own conversion clips 16-bit grey at 255 (a face turns almost white); dfer keeps
    each sample's high byte, as for 16-bit colour, so the model sees the same face."""
    from dfer.data.decode import read_frames, read_image
    from dfer.data.table import ClipKind
    from dfer.predict import input_transform, load_model

    eight = FACES[0]
    grey = np.asarray(Image.open(eight))
    sixteen = tmp_path / "face16.png"
    Image.fromarray(widen(grey.astype(np.uint16))).save(sixteen)
    assert Image.open(sixteen).mode.startswith("I;16")
    a, b = read_image(str(eight)), read_image(str(sixteen))
    assert b.dtype == np.uint8 and (b == 255).mean() < 0.5
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(read_frames(sixteen, ClipKind.IMAGE, [0, 0]), np.stack([a, a]))
    transform = input_transform(load_model(device="cpu"), face_crop=False)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(transform(b[None], g), transform(a[None], g), atol=1 / 255, rtol=0)


def test_a_16_bit_colour_face_reads_as_its_8_bit_self(tmp_path):
    import cv2

    from dfer.data.decode import read_image

    rgb = np.asarray(Image.open(FACES[1]).convert("RGB"))
    rgb = np.stack([rgb[..., 0], rgb[..., 1] // 2, 255 - rgb[..., 2]], axis=-1)
    path = tmp_path / "face48.png"
    cv2.imwrite(str(path), (rgb[..., ::-1].astype(np.uint16) * 257))
    np.testing.assert_array_equal(read_image(str(path)), rgb)


def test_a_32_bit_image_is_refused_by_name(tmp_path):
    from dfer.data.decode import read_image

    path = tmp_path / "face.tif"
    Image.fromarray(np.full((8, 8), 70000, np.int32), mode="I").save(path)
    with pytest.raises(DataError, match=rf"{path}: a 32-bit integer image .*8- and 16-bit"):
        read_image(str(path))


# ---------------------------------------------------------------------------- votes


def test_votes_whose_float32_sum_overflows_give_the_right_soft_label(tmp_path):
    """3e38 + 3e38 is inf in float32: the soft label was all zeros, and trained on."""
    from dfer.data.corpora.manifest import load_manifest

    manifest = tmp_path / "m.csv"
    manifest.write_text("path,happy,sad,neutral\nclips/a,3e38,3e38,0\nclips/b,1,3,0\n")
    table = load_manifest(manifest)
    soft = table.soft_labels()
    np.testing.assert_allclose(soft, [[0.5, 0.5, 0], [0.25, 0.75, 0]], rtol=1e-6)
    assert soft.dtype == np.float32 and np.all(np.isfinite(soft))


@pytest.mark.parametrize("row, what", [([np.inf, 1.0, 0.0], "infinite votes"), ([1.0, -1.0, 3.0], "negative votes"),
                                       ([0.0, 0.0, 0.0], "votes that are all zero"), ([1.0, np.nan, 1.0], "NaN votes")])
def test_votes_that_cannot_be_a_distribution_are_refused_naming_the_clip(row, what):
    """Every adapter's votes go through the table's check (an inf used to pass: inf / inf is NaN)."""
    from dfer.data.table import ClipTable

    with pytest.raises(DataError, match=rf"corpus: 1 clip\(s\) have {what}, e.g. .*'b'"):
        ClipTable.build(("happy", "sad", "neutral"), ["a", "b"], ["/x/a", "/x/b"],
                        votes=[[1.0, 0.0, 0.0], row])


# ---------------------------------------------------------------------------- frame counts


@pytest.mark.parametrize("count", ["2147483648", "99999999999999999999999"])
def test_a_frame_count_beyond_int32_is_one_line_naming_the_list_line(count, tmp_path):
    """The table keeps frame counts as int32: a larger one used to wrap (or be a traceback)."""
    from dfer.data.corpora.listfile import load_listfile

    path = tmp_path / "set_1_train.txt"
    path.write_text(f"/data/DFEW/00001 12 0\n/data/DFEW/00002 {count} 1\n")
    with pytest.raises(DataError, match=rf"{path}:2: frame count {count} is beyond any clip; expected 0..2147483647"):
        load_listfile(path, root=tmp_path)


# ---------------------------------------------------------------------------- a run's checkpoint and metrics


def _tiny(root, run) -> list[str]:
    return ["--run-dir", str(run), f"data.source.root={root}", "data.num_frames=2", "data.size=32",
            "data.num_workers=0", "data.scales=[1.0]", "optim.epochs=3", "label_mode=soft", "threads=1",
            "tensorboard=false", "progress=false"]


@pytest.fixture(scope="module")
def one_epoch_of_three(synthetic_dfew, tmp_path_factory) -> Path:
    """A run of three epochs interrupted after its first (checkpoint and metrics.csv)."""
    from dfer.config import load_config
    from dfer.train import train

    run = tmp_path_factory.mktemp("interrupted") / "run"
    train(load_config(None, _tiny(synthetic_dfew, run)[2:]), run_dir=run, stop_after_epochs=1)
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] == 1
    return run


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


def _rewrite_state(ckpt: Path, **changes) -> None:
    """The checkpoint's tensors as they are, its state with ``changes`` (None removes a key)."""
    with safe_open(str(ckpt), framework="pt") as f:
        meta = json.loads(f.metadata()["dfer_state"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k, v in changes.items():
        meta.pop(k) if v is None else meta.__setitem__(k, v)
    save_file(tensors, str(ckpt), metadata={"dfer_state": json.dumps(meta)})


@pytest.mark.parametrize("changes, field", [
    ({"epoch": 999}, "epoch"),  # would end a 3-epoch run after one as if finished
    ({"epoch": "abc"}, "epoch"), ({"epoch": -3}, "epoch"), ({"epoch": 1.5}, "epoch"), ({"epoch": True}, "epoch"),
    ({"epoch": None}, "epoch"), ({"step": "x"}, "step"), ({"step": None}, "step"), ({"step": -1}, "step"),
    ({"step": 10**9}, "step"), ({"best": math.nan}, "best"), ({"best": "high"}, "best"),
    ({"finished": "no"}, "finished"),
])
def test_a_checkpoint_state_that_does_not_fit_the_run_is_one_line(changes, field, one_epoch_of_three,
                                                                   synthetic_dfew, tmp_path, capsys):
    run = _copy(one_epoch_of_three, tmp_path / "run")
    ckpt = run / "checkpoints" / "last.safetensors"
    _rewrite_state(ckpt, **changes)
    before = (run / "metrics.csv").read_bytes()
    assert main(["train", *_tiny(synthetic_dfew, run)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{ckpt}: its state's {field} is " in line and "--restart" in line, line
    assert not (run / "results.json").exists() and (run / "metrics.csv").read_bytes() == before
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] == 1


def test_resume_opens_only_a_regular_checkpoint_file(one_epoch_of_three, synthetic_dfew, tmp_path):
    """A FIFO where the checkpoint should be used to block the resumed run for ever."""
    run = _copy(one_epoch_of_three, tmp_path / "run")
    ckpt = run / "checkpoints" / "last.safetensors"
    ckpt.unlink()
    os.mkfifo(ckpt)
    env = _env()
    proc = subprocess.run([sys.executable, "-m", "dfer", "train", *_tiny(synthetic_dfew, run)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"{ckpt}: not a regular file" in _one_line(proc.stderr)


@pytest.mark.parametrize("content, message", [
    (b"", ": empty, but the checkpoint is after epoch 1"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", ":1: not UTF-8 text"),
    (b"\x00\x01\x02\x03", ": holds no whole line, but the checkpoint is after epoch 1"),
    (b"epoch;train_loss\r\n1;0.5\r\n", ":1: the header is 'epoch;train_loss'"),
    (b"epoch,train_loss,val_uar,val_war,lr,clips_per_s,epoch_s\r\n1,0.5,,,0.1,1,1,9\r\n", ":2: 8 cells, expected 7"),
    (b"epoch,train_loss,val_uar,val_war,lr,clips_per_s,epoch_s\r\n1,low,,,0.1,1,1\r\n",
     ":2: train_loss 'low' is not a number"),
    (b"epoch,train_loss,val_uar,val_war,lr,clips_per_s,epoch_s\r\n1,0.5,,,0.1,inf,1\r\n",
     ":2: clips_per_s 'inf' is not a finite number"),
], ids=["empty", "binary", "no-line", "header", "cells", "number", "infinite"])
def test_a_metrics_csv_that_is_not_dfers_is_refused_not_replaced(content, message, one_epoch_of_three,
                                                                  synthetic_dfew, tmp_path, capsys):
    run = _copy(one_epoch_of_three, tmp_path / "run")
    metrics = run / "metrics.csv"
    metrics.write_bytes(content)
    assert main(["train", *_tiny(synthetic_dfew, run)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{metrics}{message}" in line and "delete it to resume without the earlier rows, or --restart" in line
    assert metrics.read_bytes() == content  # the user's file, as it was


def test_metrics_rows_after_the_checkpoint_and_a_torn_last_line_are_dropped(tmp_path):
    from dfer.train import _truncate_metrics

    head = b"epoch,train_loss,val_uar,val_war,lr,clips_per_s,epoch_s\r\n"
    rows = [b"1,0.9,,,0.1,5.0,1.0\r\n", b"2,0.8,,,0.1,5.0,1.0\r\n", b"3,0.7,,,0.1,5.0,1.0\r\n"]
    path = tmp_path / "metrics.csv"
    path.write_bytes(head + b"".join(rows) + b"4,0.6,,")  # a kill mid-append of epoch 4
    _truncate_metrics(path, 2)
    assert path.read_bytes() == head + rows[0] + rows[1]
    _truncate_metrics(path, 2)  # a file of the epochs done is left as it is
    assert path.read_bytes() == head + rows[0] + rows[1]


def _run_with_best(run: Path, last: dict, best: dict) -> Path:
    """A run selecting its best validation epoch (eval.select: best_val), whose last and best
    checkpoints carry the states ``last`` and ``best``; best's weights are last's plus one."""
    from dfer.config import dump_config, load_config

    write_random_run(run)
    cfg = load_config(None, ["data.size=32", "data.num_frames=2", "data.val_fraction=0.2", "eval.select=best_val",
                             "optim.epochs=5"])
    dump_config(cfg, run / "config.yaml")
    ckpt = run / "checkpoints"
    with safe_open(str(ckpt / "last.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(ckpt / "last.safetensors"), metadata={"dfer_state": json.dumps(last)})
    plus_one = {k: v + 1 if k.startswith("model.") and v.is_floating_point() else v for k, v in tensors.items()}
    save_file(plus_one, str(ckpt / "best.safetensors"), metadata={"dfer_state": json.dumps(best)})
    return run


#: a run after 3 of its 5 epochs of 4 optimiser steps, its best validation UAR 0.5 at epoch 2
LAST = {"epoch": 3, "step": 12, "best": 0.5, "finished": False}
BEST = {"epoch": 2, "step": 8, "val_uar": 0.5}


def test_the_best_checkpoint_of_a_run_loads_when_its_state_fits_the_run(tmp_path):
    from dfer.rundir import load_run

    run = _run_with_best(tmp_path / "run", LAST, BEST)
    best, cfg, _ = load_run(run)  # eval.select best_val: the best checkpoint
    last, _, _ = load_run(run, which="last")
    assert cfg.eval.select == "best_val"
    for (name, w), v in zip(best.state_dict().items(), last.state_dict().values()):
        if w.is_floating_point():  # the best checkpoint's weights, not the last's
            torch.testing.assert_close(w, v + 1, msg=name)
    # the best of the epoch after the last checkpoint (a kill came between the two saves)
    _run_with_best(tmp_path / "cut", LAST, {"epoch": 4, "step": 16, "val_uar": 0.7})
    load_run(tmp_path / "cut")


@pytest.mark.parametrize("last, best, which, field", [
    (LAST, {**BEST, "epoch": 99}, "best", "epoch"),  # beyond the run's 5 epochs
    (LAST, {**BEST, "epoch": 5, "step": 20}, "best", "epoch"),  # after the last checkpoint's next epoch
    (LAST, {**BEST, "epoch": "2"}, "best", "epoch"),
    (LAST, {**BEST, "step": 9}, "best", "step"),  # the last checkpoint says 4 steps an epoch
    (LAST, {**BEST, "step": None}, "best", "step"),
    (LAST, {**BEST, "val_uar": 1.5}, "best", "val_uar"),
    (LAST, {**BEST, "val_uar": math.nan}, "best", "val_uar"),
    (LAST, {**BEST, "val_uar": None}, "best", "val_uar"),
    (LAST, {**BEST, "val_uar": 0.25}, "best", "val_uar"),  # not the best the last checkpoint records: stale
    ({**LAST, "best": -1.0}, BEST, "best", "val_uar"),  # a best before any validation of this training
    ({**LAST, "epoch": 9, "step": 36}, BEST, "last", "epoch"),
    ({**LAST, "step": 13}, BEST, "last", "step"),  # not a whole number of steps per epoch
    ({**LAST, "best": 2.0}, BEST, "last", "best"),
])
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_checkpoint_state_that_does_not_fit_the_run_is_one_line_where_a_model_is_loaded(
        last, best, which, field, command, tmp_path, capsys, videos_dir):
    run = _run_with_best(tmp_path / "run", last, best)
    args = ["evaluate", str(run)] if command == "evaluate" else \
        ["predict", str(videos_dir / "single_face.mp4"), "--run", str(run), "--out", str(tmp_path / "p")]
    assert main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{run / 'checkpoints' / which}.safetensors: its state's {field} is " in line, line
    assert not (run / "results.json").exists() and not (tmp_path / "p").exists()


# ---------------------------------------------------------------------------- weights files


def _shipped(path: Path, *, meta_changes: dict | None = None, nan_in: str | None = None) -> Path:
    """A copy of the shipped model file with metadata entries changed, or a NaN in one tensor."""
    from dfer.pretrained import weights_path

    with safe_open(str(weights_path()), framework="pt") as f:
        meta = json.loads(f.metadata()["dfer_pretrained"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    if nan_in is not None:
        state[nan_in] = state[nan_in].clone()
        state[nan_in].view(-1)[0] = float("nan")
    save_file(state, str(path), metadata={"dfer_pretrained": json.dumps({**meta, **(meta_changes or {})})})
    return path


def _predict_and_evaluate_pretrained(tmp_path, capsys) -> list[str]:
    """The one line of ``dfer predict`` and of ``dfer evaluate --pretrained`` (both exit 2)."""
    lines = []
    out = tmp_path / "out"
    assert main(["predict", str(FACES[0]), "--aligned", "--out", str(out)]) == 2
    lines.append(_one_line(capsys.readouterr().err))
    assert main(["evaluate", "--pretrained", "--source", f"ferplus:{FERPLUS_FIXTURE}", "--split", "val",
                 "--workers", "0", "--out", str(out)]) == 2
    lines.append(_one_line(capsys.readouterr().err))
    assert not out.exists()
    return lines


@pytest.mark.parametrize("changes, message", [
    ({"mean": [1]}, r"mean \[1\] has 1 value\(s\), the model's input has 3 channels"),  # used to be broadcast
    ({"std": [0.2, 0.2]}, r"std \[0.2, 0.2\] has 2 value\(s\)"),
    ({"std": [0.2, 0.0, 0.2]}, r"std .* is not a list of positive per-channel stds"),
    ({"mean": ["a", 0.4, 0.4]}, r"mean .* is not a list of per-channel means in \[0, 1\]"),
    ({"size": "abc"}, r"size 'abc' is not a whole number of pixels, 8..1024"),
    ({"size": 0}, r"size 0 is not a whole number"), ({"size": 10**9}, r"size 1000000000 is not"),
    ({"num_frames": 0}, r"num_frames 0 is not a whole number of frames"),
    ({"kwargs": 5}, r"kwargs 5 is not a mapping of the model's options"),
    ({"kwargs": {"shift_div": "x"}}, r"model 'tsm_resnet18' with kwargs .* cannot be built: shift_div must be"),
    ({"kwargs": {"colour": 1}}, r"model 'tsm_resnet18' with kwargs .* cannot be built"),
    ({"model": "resnet_9000"}, r"model 'resnet_9000' .* cannot be built: unknown model"),
    ({"classes": ["happy", "joyful"] + ["sad"] * 6}, r"classes .* is not a list of two or more distinct emotion"),
    ({"classes": "neutral,happy"}, r"classes 'neutral,happy' is not a list"),
    ({"classes": ["neutral", "happy"], "prior": None}, r"its weights do not fit tsm_resnet18"),
    ({"grey": "yes"}, r"grey 'yes' is not true or false"),
    ({"metrics": [1]}, r"metrics \[1\] is not a mapping"),
])
def test_a_weights_files_metadata_is_checked_where_it_is_read(changes, message, tmp_path, monkeypatch, capsys):
    path = _shipped(tmp_path / "shipped.safetensors", meta_changes=changes)
    monkeypatch.setenv("DFER_PRETRAINED", str(path))
    for line in _predict_and_evaluate_pretrained(tmp_path, capsys):
        assert f"is damaged ({path}: " in line and "reinstall dfer" in line, line
        assert re.search(message, line), line


def test_non_finite_weights_of_the_shipped_file_are_named(tmp_path, monkeypatch, capsys):
    path = _shipped(tmp_path / "shipped.safetensors", nan_in="classifier.weight")
    monkeypatch.setenv("DFER_PRETRAINED", str(path))
    for line in _predict_and_evaluate_pretrained(tmp_path, capsys):
        assert f"({path}: weight tensor classifier.weight holds NaN or infinite values)" in line, line


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_of_a_run_are_named_in_evaluate_and_predict(value, tmp_path, capsys, videos_dir):
    run = write_random_run(tmp_path / "run")
    ckpt = run / "checkpoints" / "last.safetensors"
    with safe_open(str(ckpt), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["model.classifier.bias"][2] = value
    save_file(tensors, str(ckpt), metadata=meta)
    assert main(["evaluate", str(run)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{ckpt}: weight tensor classifier.bias holds NaN or infinite values" in line, line
    assert main(["predict", str(videos_dir / "single_face.mp4"), "--run", str(run), "--out", str(tmp_path / "p")]) == 2
    assert f"{ckpt}: weight tensor classifier.bias holds NaN" in _one_line(capsys.readouterr().err)
    assert not (run / "results.json").exists() and not (tmp_path / "p").exists()


def test_non_finite_weights_of_a_pretrained_state_dict_are_named(tmp_path):
    from torchvision.models import resnet18

    from dfer.models import create_model

    state = resnet18().state_dict()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("inf")
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match=rf"{path}: weight tensor layer1.0.conv1.weight holds NaN or infinite"):
        create_model("tsm_resnet18", num_classes=7, pretrained=str(path))


# ---------------------------------------------------------------------------- dfer cv --folds


@pytest.mark.parametrize("spec, message", [
    ("5-3", r"'5-3' names no fold: a range goes up"),
    ("1,,2", r"expected fold numbers like 1,2,3 or 1-5, found ''"),
    ("1-", r"found '1-'"), ("-2", r"found '-2'"), ("2-x", r"found '2-x'"),
    ("0-2", r"'0-2' names no fold: fold numbers start at 1"),
    ("1-99999999999", r"fold numbers start at 1 and go up to 127"),
])
def test_folds_are_parsed_strictly(spec, message, synthetic_dfew, tmp_path, capsys):
    """A reversed range named no fold, and no folds meant all five."""
    ov = [f"data.source.root={synthetic_dfew}", "data.num_frames=2", "data.size=32", "optim.epochs=1"]
    assert main(["cv", *ov, "--out", str(tmp_path), "--folds", spec]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"dfer cv: error: --folds {spec!r}: ") and re.search(message, line), line
    assert not any(tmp_path.iterdir())


def test_folds_outside_the_corpus_are_refused(synthetic_dfew, tmp_path, capsys):
    ov = [f"data.source.root={synthetic_dfew}", "data.num_frames=2", "data.size=32", "optim.epochs=1"]
    assert main(["cv", *ov, "--out", str(tmp_path), "--folds", "4-7"]) == 2
    assert "--folds [6, 7] not in the folds of" in _one_line(capsys.readouterr().err)


# ---------------------------------------------------------------------------- a run still training

def test_evaluate_refuses_a_run_another_process_is_training(tmp_path, capsys):
    """Its UAR would not be final, and it writes where the trainer writes."""
    run = write_random_run(tmp_path / "run")
    with held_by_another_process(run) as pid:
        assert main(["evaluate", str(run)]) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"{run}: another dfer train (pid {pid}) is writing here; dfer evaluate reads a run once" in line
        assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "classes.json", "config.yaml"]


def test_while_evaluate_reads_a_run_no_train_starts_in_it_and_readers_share(tmp_path):
    from dfer.io import exclusive_folder, shared_folder

    run = write_random_run(tmp_path / "run")
    env = _env()
    reader = ("import sys\nfrom dfer.io import shared_folder\n"
              "with shared_folder(sys.argv[1], 'dfer evaluate'): print('read')\n")
    with shared_folder(run, "dfer evaluate"):
        other = subprocess.run([sys.executable, "-c", reader, str(run)], env=env, capture_output=True, text=True,
                               timeout=60)
        assert other.returncode == 0 and other.stdout == "read\n", other.stderr
        writer = ("import sys\nfrom dfer.io import exclusive_folder\n"
                  "with exclusive_folder(sys.argv[1], 'dfer train'): pass\n")
        proc = subprocess.run([sys.executable, "-c", writer, str(run)], env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode != 0 and "another dfer evaluate (pid " in proc.stderr
    with exclusive_folder(run, "dfer train"):  # the reader gone, the writer gets it
        pass


class _Payload:
    """A pickle that would run code when unpickled: it creates the file it names."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pth_state_dict_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    import pickle

    from dfer.models.weights import read_state_dict_file

    marker = tmp_path / "ran"
    weights = tmp_path / "evil.pth"
    weights.write_bytes(pickle.dumps({"conv.weight": _Payload(marker)}))
    with pytest.raises(ConfigError, match=r"evil.pth: cannot read weights"):
        read_state_dict_file(weights)
    assert not marker.exists()
