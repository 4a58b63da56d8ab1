"""dfer writes only into folders it made (``dfer.io.claim_folder``), and a name the user
gives is one path component (``dfer.io.single_component``): the cases a hostile or careless
user would try, each through the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import DATA, write_random_run
from dfer.cli import main
from dfer.errors import ConfigError
from dfer.io import LOCK_NAME, MARK_NAME, claim_folder, holds, single_component

FERPLUS = DATA / "ferplus"


def tiny(root: Path) -> list[str]:
    return [f"data.source.root={root}", "data.num_frames=2", "data.size=32", "data.num_workers=0",
            "data.scales=[1.0]", "optim.epochs=1", "label_mode=soft", "seed=3", "threads=1",
            "tensorboard=false", "progress=false"]


def _refused(capsys, *argv) -> str:
    """Run ``dfer ARGV``; it must exit 2 with one line and no traceback. Returns the line."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- the two helpers
@pytest.mark.parametrize("name", ["", ".", "..", "../../x", "/tmp/x", "a/b", "a\\b", "x\0y"])
def test_a_name_must_be_one_path_component(name):
    with pytest.raises(ConfigError, match=r"^name .* is not a single file or folder name"):
        single_component(name, "name")


def test_plain_names_pass():
    for name in ("run1", "tsm_resnet18_midas-a0.4_dfew-fold1", ".hidden", "a..b"):
        assert single_component(name, "name") == name


def test_claim_folder_makes_marks_and_refuses(tmp_path):
    new = claim_folder(tmp_path / "a" / "new", "stats", "dfer data stats")
    assert (new / MARK_NAME).read_text() == "dfer stats\n"
    assert claim_folder(new, "stats", "dfer data stats") == new  # its own, again
    with pytest.raises(ConfigError, match=r"is a dfer stats folder, not a run folder"):
        claim_folder(new, "run", "dfer train")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / LOCK_NAME).touch()  # a lock alone is dfer's
    claim_folder(empty, "run", "dfer train")
    assert (empty / MARK_NAME).is_file()
    checked = claim_folder(tmp_path / "checked", "run", "dfer train", create=False)
    assert not checked.exists()  # only checked: nothing made
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"mine holds files that dfer did not write \(e\.g\. 'notes\.txt'\)"):
        claim_folder(mine, "run", "dfer train")
    (mine / MARK_NAME).write_text("not dfer's")
    with pytest.raises(ConfigError, match=r"is not dfer's mark"):
        claim_folder(mine, "run", "dfer train")
    assert sorted(p.name for p in mine.iterdir()) == [MARK_NAME, "notes.txt"]


def test_an_earlier_dfers_folder_is_recognised_and_marked(tmp_path):
    old = tmp_path / "old"
    (old / ".done").mkdir(parents=True)
    (old / "manifest.csv").write_text("path,num_frames\n")
    claim_folder(old, "preprocess", "dfer preprocess", lambda d: holds(d, ".done"))
    assert (old / MARK_NAME).read_text() == "dfer preprocess\n"
    assert holds(old, ".done", "*.csv") and not holds(old, ".done", "*.json")


# ---------------------------------------------------------------------------- evaluate
def test_evaluate_pretrained_refuses_a_users_out_and_reruns_into_its_own(tmp_path, capsys):
    mine = tmp_path / "u"
    mine.mkdir()
    (mine / "results.json").write_text('{"mine":1}\n')
    argv = ["evaluate", "--pretrained", "--source", f"ferplus:{FERPLUS}", "--split", "val", "--workers", "0"]
    line = _refused(capsys, *argv, "--out", mine)
    assert f"{mine} holds files that dfer did not write (e.g. 'results.json')" in line
    assert _tree(mine) == {"results.json": b'{"mine":1}\n'}
    out = tmp_path / "eval"
    for _ in range(2):  # a rerun replaces its own results
        assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["num_clips"] > 0
    assert (out / MARK_NAME).read_text() == "dfer evaluation\n"


def test_evaluate_tag_is_one_name(tmp_path, capsys):
    run = write_random_run(tmp_path / "run")
    before = _tree(tmp_path)
    for tag in ("x/../../NAME", "../NAME", "/tmp/NAME", ".."):
        line = _refused(capsys, "evaluate", run, "--tag", tag)
        assert f"--tag {tag!r} is not a single file or folder name" in line
    assert _tree(tmp_path) == before and not list(tmp_path.parent.glob("NAME*"))


def test_evaluate_writes_into_a_run_of_an_earlier_dfer_and_marks_it(synthetic_dfew, tmp_path, capsys):
    run = write_random_run(tmp_path / "run")  # config.yaml, classes.json, checkpoints/: no mark
    assert main(["evaluate", str(run), "--source", f"dfew:{synthetic_dfew}", "--fold", "1", "--tag", "t1"]) == 0
    assert (run / "results.t1.json").is_file() and (run / MARK_NAME).read_text() == "dfer run\n"
    capsys.readouterr()
    # a folder holding a config.yaml of the user's is no run of dfer's
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(run / "config.yaml", mine / "config.yaml")
    (mine / "checkpoints").mkdir()
    assert str(mine) in _refused(capsys, "evaluate", mine)  # not a run: nothing written
    assert sorted(p.name for p in mine.iterdir()) == ["checkpoints", "config.yaml"]


# ---------------------------------------------------------------------------- preprocess
def test_preprocess_refuses_a_users_out_and_a_file(videos_dir, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(videos_dir / "single_face.mp4", src / "clip.mp4")
    mine = tmp_path / "o"
    mine.mkdir()
    (mine / "manifest.csv").write_text("my,own\n")
    (mine / "report.json").write_text('{"my": "report"}\n')
    before = _tree(mine)
    line = _refused(capsys, "preprocess", src, mine, "--size", "48")
    assert f"{mine} holds files that dfer did not write (e.g. 'manifest.csv')" in line
    assert _tree(mine) == before and sorted(p.name for p in mine.iterdir()) == ["manifest.csv", "report.json"]
    a_file = tmp_path / "out.txt"
    a_file.write_text("mine")
    line = _refused(capsys, "preprocess", src, a_file, "--size", "48")
    assert f"{a_file} exists and is not a folder" in line and a_file.read_text() == "mine"
    line = _refused(capsys, "preprocess", src, tmp_path / "new", "--manifest", "../up.csv")
    assert "--manifest '../up.csv' is not a single file or folder name" in line
    assert not (tmp_path / "new").exists() and not (tmp_path / "up.csv").exists()


# ---------------------------------------------------------------------------- train
def test_train_refuses_a_folder_with_only_a_users_config_and_a_file(synthetic_dfew, tmp_path, capsys):
    run = tmp_path / "D"
    run.mkdir()
    (run / "config.yaml").write_text("# my own notes\nseed: 1\n")
    line = _refused(capsys, "train", "--run-dir", run, *tiny(synthetic_dfew))
    assert f"{run} holds files that dfer did not write (e.g. 'config.yaml')" in line
    assert _tree(run) == {"config.yaml": b"# my own notes\nseed: 1\n"}
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # not even a lock or a mark
    a_file = tmp_path / "run.txt"
    a_file.write_text("mine")
    line = _refused(capsys, "train", "--run-dir", a_file, *tiny(synthetic_dfew))
    assert f"{a_file} exists and is not a folder" in line and a_file.read_text() == "mine"


@pytest.mark.parametrize("name", ["../../x", "/ABS/x", "a/b", ".."])
def test_train_name_is_one_folder_inside_out_dir(name, synthetic_dfew, tmp_path, capsys):
    name = name.replace("/ABS", str(tmp_path / "abs"))
    out_dir = tmp_path / "a" / "b"
    line = _refused(capsys, "train", f"out_dir={out_dir}", f"name={name}", *tiny(synthetic_dfew))
    assert "name must be a folder name" in line and line.endswith(f"got {name!r}")
    assert list(tmp_path.iterdir()) == []  # nothing, neither inside out_dir nor outside it


def test_a_run_dfer_made_resumes_and_a_folder_of_another_kind_is_refused(synthetic_dfew, tmp_path, capsys):
    out_dir = tmp_path / "runs"
    argv = ["train", f"out_dir={out_dir}", "name=mine", *tiny(synthetic_dfew)]
    assert main(argv) == 0
    run = out_dir / "mine"
    assert (run / MARK_NAME).read_text() == "dfer run\n" and (run / "results.json").is_file()
    capsys.readouterr()
    assert main(argv) == 0  # its own: finished, nothing to do
    assert "already finished" in capsys.readouterr().out
    stats = tmp_path / "stats"
    assert main(["data", "stats", str(synthetic_dfew), "--out", str(stats)]) == 0
    capsys.readouterr()
    line = _refused(capsys, "train", "--run-dir", stats, *tiny(synthetic_dfew))
    assert f"{stats} is a dfer stats folder, not a run folder" in line


# ---------------------------------------------------------------------------- the FER+ Kaggle form's cache
def test_the_kaggle_cache_never_rewrites_a_users_images(tmp_path, capsys):
    mine = tmp_path / "my_faces"
    shutil.copytree(FERPLUS / "FER2013Valid", mine / "FER2013Valid")
    for png in (mine / "FER2013Valid").glob("*.png"):  # the user's own pictures under FER+'s names
        png.write_bytes(b"my own picture " + png.name.encode())
    before = _tree(mine)
    line = _refused(capsys, "data", "stats", FERPLUS / "kaggle", "--kind", "ferplus", "-o", f"cache={mine}",
                    "--out", tmp_path / "s")
    assert f"{mine} holds files that dfer did not write (e.g. 'FER2013Valid')" in line
    assert _tree(mine) == before and not (tmp_path / "s").exists()
    cache = tmp_path / "cache"
    for _ in range(2):  # a cache dfer made is written, then used
        assert main(["data", "stats", str(FERPLUS / "kaggle"), "--kind", "ferplus", "-o", f"cache={cache}",
                     "--out", str(tmp_path / "s")]) == 0, capsys.readouterr().err
    assert (cache / MARK_NAME).read_text() == "dfer ferplus-cache\n"
    # a cache an earlier dfer wrote (its folders stamped, no mark) is used as it is
    (cache / MARK_NAME).unlink()
    written = _tree(cache)
    assert main(["data", "stats", str(FERPLUS / "kaggle"), "--kind", "ferplus", "-o", f"cache={cache}",
                 "--out", str(tmp_path / "s")]) == 0
    assert _tree(cache) == written


# ---------------------------------------------------------------------------- stats and predict
def test_stats_refuses_its_own_files_name_in_a_users_folder(synthetic_dfew, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "stats.json").write_text('{"mine": 1}\n')
    line = _refused(capsys, "data", "stats", synthetic_dfew, "--out", mine)
    assert "did not write (e.g. 'stats.json')" in line and _tree(mine) == {"stats.json": b'{"mine": 1}\n'}


def test_check_cache_and_demo_refuse_a_users_folder(synthetic_dfew, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    line = _refused(capsys, "data", "check", synthetic_dfew, "--cache-dir", mine, "--no-verify")
    assert "did not write (e.g. 'notes.txt')" in line
    line = _refused(capsys, "demo", "--out", mine, "--epochs", "1")
    assert "did not write (e.g. 'notes.txt')" in line
    assert _tree(mine) == {"notes.txt": b"mine"}
    cache = tmp_path / "cache"
    for _ in range(2):  # its own cache, made then reused
        assert main(["data", "check", str(synthetic_dfew), "--cache-dir", str(cache), "--no-verify"]) == 0
    assert (cache / MARK_NAME).read_text() == "dfer check-cache\n" and holds(cache, "check-*.npz")


# ---------------------------------------------------------------------------- folders in the way
@pytest.mark.parametrize("name", ["results.t.json", "predictions.t.csv"])
def test_evaluate_finds_a_folder_where_it_writes_before_it_evaluates(name, synthetic_dfew, tmp_path, capsys):
    run = write_random_run(tmp_path / "run")
    (run / name).mkdir()
    line = _refused(capsys, "evaluate", run, "--source", f"dfew:{synthetic_dfew}", "--fold", "1", "--tag", "t")
    assert f"{run / name} is not a file" in line
    assert (run / name).is_dir() and not list((run / name).iterdir())


def test_a_resumed_run_finds_a_folder_where_its_results_go_before_it_trains(synthetic_dfew, tmp_path, capsys):
    from dfer.config import load_config
    from dfer.train import train

    run = tmp_path / "run"
    overrides = [*tiny(synthetic_dfew), "optim.epochs=2"]
    train(load_config(None, overrides), run_dir=run, stop_after_epochs=1)  # stopped after epoch 1 of 2
    (run / "results.json").mkdir()
    before = (run / "metrics.csv").read_bytes(), (run / "checkpoints" / "last.safetensors").read_bytes()
    capsys.readouterr()
    line = _refused(capsys, "train", "--run-dir", run, *overrides)
    assert f"{run / 'results.json'} is not a file" in line
    assert ((run / "metrics.csv").read_bytes(), (run / "checkpoints" / "last.safetensors").read_bytes()) == before


def test_a_file_on_the_way_to_a_run_folder_is_one_line(synthetic_dfew, tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    line = _refused(capsys, "train", "--run-dir", tmp_path / "f" / "run", *tiny(synthetic_dfew))
    assert f"{tmp_path / 'f'} is a file" in line and (tmp_path / "f").read_text() == "mine"
