"""One clip, one identity: however a path is spelled, the file it really is decides.

A clip listed twice under two spellings, with two folds, would be trained on in one fold
and scored as a test clip in the other. Each spelling below must be refused, naming both
lines; a FIFO or a device named as a clip or as a list is refused by name, never waited on;
a text file too large to be a corpus description is refused before it is read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dfer.data.corpora.listfile import load_fold_lists, load_listfile
from dfer.data.corpora.manifest import load_manifest
from dfer.data.corpora.registry import load_source
from dfer.data.table import ClipTable
from dfer.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clips(tmp_path) -> Path:
    """``tmp/clips/c01`` and ``c02`` (frame folders), a link ``tmp/alias`` to ``c01``, and
    ``tmp/other``, a folder outside the clips."""
    for name in ("c01", "c02"):
        (tmp_path / "clips" / name).mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "clips" / "c01")
    (tmp_path / "other").mkdir()
    return tmp_path


def spellings(base: Path) -> list[str]:
    """Other ways to write ``clips/c01`` relative to ``base``."""
    return ["./clips/c01", "clips//c01", "clips/../clips/c01", str(base / "clips" / "c01"), "alias"]


@pytest.mark.parametrize("k", range(5), ids=["dot", "double-slash", "dot-dot", "absolute", "symlink"])
def test_a_manifest_naming_one_clip_twice_in_two_folds_is_refused(clips, k):
    spelled = spellings(clips)[k]
    m = clips / "m.csv"
    m.write_text(f"path,label,fold\nclips/c01,happy,1\nclips/c02,sad,1\n{spelled},happy,2\n")
    with pytest.raises(DataError, match=re.escape(f"{m}:4: {spelled!r} is the same clip as {m}:2 ('clips/c01'): "
                                                  f"both are {os.path.realpath(clips / 'clips/c01')}")):
        load_manifest(m)
    with pytest.raises(DataError, match=re.escape(f"{m}:4:")):  # the command-line path, all adapters
        load_source("manifest", m)


@pytest.mark.parametrize("k", range(5), ids=["dot", "double-slash", "dot-dot", "absolute", "symlink"])
def test_a_list_file_naming_one_clip_twice_is_refused(clips, k):
    spelled = spellings(clips)[k]
    lst = clips / "l.txt"
    lst.write_text(f"clips/c01 3 1\nclips/c02 3 2\n{spelled} 3 1\n")
    # a list file already refused the same normalised path; a path and a link to it are one file too
    with pytest.raises(DataError, match=re.escape(f"{lst}:3: ") + "(" + re.escape(f"path {spelled!r} duplicates line 1")
                       + "|" + re.escape(f"{spelled!r} is the same clip as {lst}:1") + ")"):
        load_listfile(lst)


@pytest.mark.parametrize("spelled", ["alias", "{clips}/alias"])
def test_one_clip_in_two_fold_lists_is_refused(clips, spelled):
    """Equal clip ids were refused already; a link has an id of its own, and one file."""
    spelled = spelled.format(clips=clips)
    pat = str(clips / "set_{k}_test.txt")
    Path(pat.format(k=1)).write_text("clips/c01 3 1\n")
    Path(pat.format(k=2)).write_text(f"clips/c02 3 2\n{spelled} 3 1\n")
    with pytest.raises(DataError, match=re.escape(f"{pat.format(k=2)}:2: ") + ".* is the same clip as "
                       + re.escape(f"{pat.format(k=1)}:1")):
        load_fold_lists(pat, num_folds=2)


def test_a_corpus_folder_with_two_names_for_one_clip_is_refused(tmp_path, videos_dir):
    """The folder adapters (here the acted one) are judged by the files too."""
    root = tmp_path / "acted"
    root.mkdir()
    (root / "01-01-03_01.mp4").symlink_to(videos_dir / "single_face.mp4")
    (root / "02-01-03_01.mp4").symlink_to(root / "01-01-03_01.mp4")
    with pytest.raises(DataError, match=r"clip '02-01-03_01\.mp4'.*is the same clip as .*clip '01-01-03_01\.mp4'"):
        load_source("acted", root, pattern=r"(?P<actor>\d+)-(?P<emotion>\d+)-\d+_\d+", codes="01=happy")


def test_a_run_never_tests_on_a_clip_of_a_further_training_source(clips):
    from dfer.config import RunConfig, from_dict
    from dfer.data.splits import build_splits

    (clips / "a.csv").write_text("path,label,fold\nclips/c01,happy,1\nclips/c02,sad,2\n")
    (clips / "b.csv").write_text("path,label\nalias,happy\n")  # c01 again, under another name
    cfg = from_dict(RunConfig, {"data": {
        "source": {"kind": "manifest", "root": str(clips / "a.csv"), "fold": 1},
        "train_sources": [{"kind": "manifest", "root": str(clips / "b.csv"), "train_split": "all"}],
        "check_disk": False},
        "optim": {"batch_size": 1}})
    with pytest.raises(DataError, match=r"test clip 'clips/c01' .* is the same file as the training clip "
                                        r"'manifest:alias'"):
        build_splits(cfg)


def test_root_containment_follows_dot_dot_as_the_system_does(clips):
    root = clips / "clips"
    (root / "jump").symlink_to(clips / "other")  # a link inside the root, to a folder outside
    m = clips / "m.csv"
    # a plain path through the user's own link stays allowed; `..` after it climbs from `other`
    m.write_text("path\nc01\njump/../c02\n")
    with pytest.raises(DataError, match=re.escape(f"{m}:3: path 'jump/../c02' leaves the root")):
        load_manifest(m, root=root)
    m.write_text("path\nc01\njump\nc02/../c01x\n")
    t = load_manifest(m, root=root)
    assert t.source.tolist() == [str(root / "c01"), str(root / "jump"), str(root / "c01x")]


def test_real_paths_agree_with_realpath(clips):
    from dfer.data.table import real_paths

    paths = [str(clips / s) for s in spellings(clips)] + [str(clips / "clips/c02"), str(clips / "nope/../x")]
    assert real_paths(paths).tolist() == [os.path.realpath(p) for p in paths]
    t = ClipTable.build(("happy",), ["a", "b"], [str(clips / "clips/c01"), str(clips / "alias")], validate=True)
    with pytest.raises(DataError, match="is the same clip as"):
        t.refuse_repeated_files()
    assert len(t.take(np.array([0])).refuse_repeated_files()) == 1


# ---------------------------------------------------------------------------- not a file
def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m dfer`` in a child: a read that hangs on a FIFO fails the test instead of
    hanging it."""
    return subprocess.run([sys.executable, "-m", "dfer", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_a_fifo_named_as_a_clip_is_refused_by_name_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "face.jpg")
    os.mkfifo(tmp_path / "clip.mp4")
    (tmp_path / "m.csv").write_text("path,label\nface.jpg,happy\nclip.mp4,sad\n")
    r = _run("data", "check", str(tmp_path / "m.csv"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "2 unreadable" in r.stderr, r.stderr
    skipped = tmp_path / "skipped.csv"
    r = _run("data", "check", str(tmp_path / "m.csv"), "--on-bad-clip", "skip", "--skipped-out", str(skipped))
    assert "Traceback" not in r.stderr, r.stderr
    text = skipped.read_text()
    for name, what in (("face.jpg", "image file"), ("clip.mp4", "video file")):
        assert f"{tmp_path / name}: expected {'an' if what[0] == 'i' else 'a'} {what}, found a FIFO (named pipe)" in text


def test_a_fifo_or_device_given_as_a_list_is_refused_by_name(tmp_path):
    os.mkfifo(tmp_path / "m.csv")
    os.mkfifo(tmp_path / "l.txt")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'm.csv'}: expected a manifest, found a FIFO")):
        load_manifest(tmp_path / "m.csv")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'l.txt'}: expected a list file, found a FIFO")):
        load_listfile(tmp_path / "l.txt")
    with pytest.raises(DataError, match="/dev/zero: expected a manifest, found a character device"):
        load_manifest("/dev/zero")
    r = _run("data", "stats", str(tmp_path / "m.csv"), "--kind", "manifest", "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "found a FIFO" in r.stderr, r.stderr


def test_a_text_file_too_large_to_be_a_list_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import dfer.data.corpora.columns as columns
    import dfer.data.corpora.listfile as listfile

    big = tmp_path / "big.csv"
    big.write_text("path,label\n" + "clips/c,happy\n" * 100)
    monkeypatch.setattr(columns, "MAX_TEXT_BYTES", 1000)
    monkeypatch.setattr(listfile, "MAX_TEXT_BYTES", 1000)
    with pytest.raises(DataError, match=re.escape(f"{big}: manifest is larger than")):
        load_manifest(big)
    lst = tmp_path / "big.txt"
    lst.write_text("clips/c 3 1\n" * 200)
    with pytest.raises(DataError, match=re.escape(f"{lst}: list file is larger than")):
        load_listfile(lst)
