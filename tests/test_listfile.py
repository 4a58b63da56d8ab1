"""Community list files: the real DFEW / FERV39K / MAFW lists (a few clips of every label
and fold, tests/data/lists), re-rooting and errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dfer.data.corpora.dfew import load_dfew
from dfer.data.corpora.listfile import (frame_count_mismatches, load_dfew_lists, load_fold_lists,
                                        load_listfile)
from dfer.emotions import BASIC7, MAFW11, MAFW11_COMMUNITY, canonical, label_map
from dfer.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def lists(lists_dir) -> Path:
    return lists_dir


@pytest.fixture(scope="module")
def dfew_lists(lists):
    return load_dfew_lists(lists, root="/data/DFEW/Clip/clip_224x224")


def _raw(path: Path) -> list[list[str]]:
    return [ln.split() for ln in path.read_text().splitlines() if ln.strip()]


def test_dfew_test_lists_partition_the_single_labelled_clips(dfew_lists, lists):
    t = dfew_lists
    tests = [_raw(lists / f"DFEW_set_{k}_test.txt") for k in range(1, 6)]
    n = sum(map(len, tests))
    assert len(t) == n and len(set(t.clip_id)) == n  # the test folds partition the clips
    assert t.folds() == [1, 2, 3, 4, 5]
    for k in range(1, 6):
        train = _raw(lists / f"DFEW_set_{k}_train.txt")
        assert (t.fold == k).sum() == len(tests[k - 1])
        train_ids = {Path(r[0]).name for r in train}
        assert len(train_ids) == len(train)
        assert train_ids == set(t.clip_id[(t.fold != k)].tolist())  # train_k = complement of test_k
    # the lists' 0-based labels are DFEW's order (happy .. fear): counted from the raw lines
    raw = np.bincount([int(r[2]) for rows in tests for r in rows], minlength=7)
    assert t.class_counts().tolist() == raw.tolist() and (raw > 0).all()
    assert t.source[0] == "/data/DFEW/Clip/clip_224x224/00001"
    assert int(t.num_frames[0]) == 144


def test_dfew_lists_share_the_adapters_format(dfew_lists, synthetic_dfew, tmp_path):
    # ids: five-digit folder names, like DFEW's own folders and the synthetic corpus
    assert all(re.fullmatch(r"\d{5}", c) for c in dfew_lists.clip_id)
    assert dfew_lists.classes == BASIC7
    # a community list written from the DFEW CSVs (label - 1, same order) reads back the same
    ref = load_dfew(synthetic_dfew)
    lst = tmp_path / "DFEW_set_{k}_test.txt"
    for k in range(1, 6):
        sub = ref.take(ref.fold == k)
        lines = [f"/author/DFEW/DFEW_Frame_Face/{c} {n} {lab}" for c, n, lab in
                 zip(sub.clip_id, sub.num_frames, sub.label)]
        Path(str(lst).format(k=k)).write_text("\n".join(lines) + "\n")
    t = load_dfew_lists(str(lst), root=synthetic_dfew / "Clip/clip_224x224", check_frames=True)
    order = np.argsort(t.clip_id)
    assert t.clip_id[order].tolist() == ref.clip_id.tolist()
    assert t.source[order].tolist() == ref.source.tolist()
    assert t.label[order].tolist() == ref.label.tolist()
    assert t.fold[order].tolist() == ref.fold.tolist()


def test_ferv39k_lists(lists):
    train = load_listfile(lists / "FERV39K_train.txt", root="/d/2_ClipsforFaceCrop", split="train")
    test = load_listfile(lists / "FERV39K_test.txt", root="/d/2_ClipsforFaceCrop", split="test")
    assert (len(train), len(test)) == tuple(len(_raw(lists / f"FERV39K_{p}.txt")) for p in ("train", "test"))
    assert not set(train.clip_id) & set(test.clip_id)
    # scene/emotion/id is kept: the basename alone is not unique in FERV39K
    assert train.clip_id[0] == "Action/Happy/0267"
    assert train.source[0] == "/d/2_ClipsforFaceCrop/Action/Happy/0267"
    # the 0-based labels are DFEW order: each clip's emotion folder names its label
    for t in (train, test):
        folder = np.array([canonical(c.split("/")[1]) for c in t.clip_id])
        assert (folder == np.array(BASIC7)[t.label]).all()
    assert (train.split == 1).all() and (test.split == 3).all()


def test_mafw_community_labels_map_by_name(lists):
    t = load_fold_lists(lists / "MAFW_set_{k}_test.txt", classes="mafw11_community",
                        train_pattern=lists / "MAFW_set_{k}_train.txt")
    assert t.classes == MAFW11_COMMUNITY
    first = _raw(lists / "MAFW_set_1_test.txt")[0]  # .../00025 47 3
    i = t.clip_id.tolist().index(Path(first[0]).name)
    assert int(t.label[i]) == int(first[2]) == 3 and t.classes[3] == "angry"
    assert t.classes[0] == "happy"
    m = label_map(MAFW11_COMMUNITY, MAFW11)
    assert MAFW11[m[3]] == "angry" and m[3] == 0 and m[0] == 3
    assert set(np.unique(t.label).tolist()) == set(range(11))


def test_rerooting_rules(tmp_path):
    lst = tmp_path / "a.txt"
    lst.write_text("/author/x/DFEW/00001 10 0\n/author/x/DFEW/00002 12 6\n\n")
    t = load_listfile(lst, root=tmp_path / "frames")
    assert t.source.tolist() == [str(tmp_path / "frames/00001"), str(tmp_path / "frames/00002")]
    t = load_listfile(lst, root=tmp_path / "r", strip_prefix="/author/x")
    assert t.clip_id.tolist() == ["DFEW/00001", "DFEW/00002"]
    assert t.source[1] == str(tmp_path / "r/DFEW/00002")
    t = load_listfile(lst)  # no root: as written
    assert t.source[0] == "/author/x/DFEW/00001" and t.clip_id[0] == "00001"
    assert t.num_frames.tolist() == [10, 12] and t.label.tolist() == [0, 6]
    rel = tmp_path / "rel.txt"
    rel.write_text("clips/00007 3 2\n")
    assert load_listfile(rel).source[0] == str(tmp_path / "clips/00007")
    with pytest.raises(DataError, match=re.escape(f"{lst}:1: path '/author/x/DFEW/00001' does not start with "
                                                  "strip_prefix '/elsewhere'")):
        load_listfile(lst, root=tmp_path, strip_prefix="/elsewhere")
    with pytest.raises(ConfigError, match="needs a root"):
        load_listfile(lst, strip_prefix="/author")


@pytest.mark.parametrize("line, kw", [
    ("/author/x/../../etc 3 0", dict(strip_prefix="/author/x")),
    ("/author/x/.. 3 0", {}),
    ("/author/x/a/../../../b 3 0", dict(strip_prefix="/author/x")),
])
def test_path_leaving_the_root_is_refused(tmp_path, line, kw):
    lst = tmp_path / "evil.txt"
    lst.write_text("/author/x/00001 4 1\n" + line + "\n")
    with pytest.raises(DataError, match=re.escape(f"{lst}:2: path ") + ".*" + "would leave the root"):
        load_listfile(lst, root=tmp_path / "root", **kw)


@pytest.mark.parametrize("text, line, what", [
    (b"/a/00001 10 0\n/a/00002 10\n", 2, "expected 3 fields '<frame folder> <num_frames> <label>', found 2"),
    (b"/a/00001 ten 0\n", 1, "frame count 'ten' is not an integer"),
    (b"/a/00001 10 7\n", 1, r"label 7 out of range, expected 0..6 (7 classes)"),
    (b"/a/00001 10 -1\n", 1, r"label -1 out of range"),
    (b"/a/00001 10 x\n", 1, "label 'x' is not an integer"),
    (b"/a/00001 10 1\n/a/00002 1 1\n/a/00001 10 1\n", 3, "path '/a/00001' duplicates line 1 (same normalised path '/a/00001')"),
    (b"/a/00001 10 1\n/a/caf\xe9 3 1\n", 2, "not UTF-8 text (byte 0xe9 at column 7)"),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, line, what):
    lst = tmp_path / "bad.txt"
    lst.write_bytes(text)
    with pytest.raises(DataError, match=re.escape(f"{lst}:{line}: {what}")):
        load_listfile(lst, root=tmp_path)


def test_check_frames_reports_mismatches(synthetic_dfew, tmp_path):
    ids = ["00001", "00002", "00003"]
    lst = tmp_path / "l.txt"
    lst.write_text("".join(f"/x/{c} {n} 0\n" for c, n in zip(ids, (10, 12, 10))))
    root = synthetic_dfew / "Clip/clip_224x224"
    t = load_listfile(lst, root=root)  # counts kept as listed
    assert t.num_frames.tolist() == [10, 12, 10]
    assert frame_count_mismatches(t) == [("00002", 12, 10)]
    with pytest.raises(DataError, match=re.escape(f"{lst}: 1 clip(s) have frame counts that differ from the disk: "
                                                  f"{lst}:2 clip 00002: listed 12, on disk 10")):
        load_listfile(lst, root=root, check_frames=True)


def test_fold_lists_must_not_overlap_and_train_must_complement(tmp_path):
    pat = str(tmp_path / "S_set_{k}_test.txt")
    for k, ids in ((1, ["00001", "00002"]), (2, ["00003", "00001"])):
        Path(pat.format(k=k)).write_text("".join(f"/x/{c} 5 0\n" for c in ids))
    with pytest.raises(DataError, match=re.escape(f"{pat.format(k=2)}:2: clip 00001 is also in {pat.format(k=1)}:1")):
        load_fold_lists(pat, num_folds=2)
    Path(pat.format(k=2)).write_text("/x/00003 5 0\n")
    train = str(tmp_path / "S_set_{k}_train.txt")
    Path(train.format(k=1)).write_text("/x/00003 5 0\n")
    Path(train.format(k=2)).write_text("/x/00001 5 0\n")
    with pytest.raises(DataError, match=re.escape(f"{train.format(k=2)}: expected the clips of every test list but "
                                                  "fold 2; 0 extra (e.g. []), 1 missing (e.g. ['00002'])")):
        load_fold_lists(pat, num_folds=2, train_pattern=train)
    with pytest.raises(DataError, match="S_set_3_test.txt: fold list not found"):
        load_fold_lists(pat, num_folds=3)


def test_keep_rule_keeps_clip_ids_distinct(tmp_path):
    lst = tmp_path / "two.txt"
    lst.write_text("/a/00001 10 1\n/b/00001 10 1\n")
    assert load_listfile(lst, root=tmp_path).clip_id.tolist() == ["a/00001", "b/00001"]
    with pytest.raises(DataError, match=re.escape(f"{lst}:2: path '/b/00001' duplicates line 1 (same clip id '00001')")):
        load_listfile(lst, root=tmp_path, keep=1)
