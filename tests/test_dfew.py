"""The DFEW adapter: reads DFEW's own files and refuses inconsistent ones by name."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from dfer.data.corpora.dfew import load_dfew
from dfer.data.table import ClipKind
from dfer.emotions import BASIC7, BASIC7_ALPHABETICAL
from dfer.errors import ConfigError, DataError

TEST = "EmoLabel_DataSplit/test(single-labeled)"
TRAIN = "EmoLabel_DataSplit/train(single-labeled)"
SHEET = "Annotation/annotation.xlsx"


@pytest.fixture
def corpus(tmp_path, synthetic_dfew) -> Path:
    """A private copy of the synthetic corpus' labels; frames shared through a symlink."""
    root = tmp_path / "DFEW"
    root.mkdir()
    shutil.copytree(synthetic_dfew / "EmoLabel_DataSplit", root / "EmoLabel_DataSplit")
    shutil.copytree(synthetic_dfew / "Annotation", root / "Annotation")
    (root / "Clip").symlink_to(synthetic_dfew / "Clip")
    return root


@pytest.fixture
def own_frames(corpus) -> Path:
    """``corpus`` with a private, editable copy of the frame folders."""
    src = (corpus / "Clip").resolve()
    (corpus / "Clip").unlink()
    shutil.copytree(src, corpus / "Clip")
    return corpus


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def _edit_sheet(root: Path, fn) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(root / SHEET)
    fn(wb.worksheets[0])
    wb.save(root / SHEET)


def _first_labelled_row(root: Path) -> tuple[int, str]:
    """(sheet row number, clip id) of the first clip of test set_1."""
    cid = _lines(root / TEST / "set_1.csv")[1].split(",")[0]
    return int(cid) + 1, cid


def test_reads_folds_labels_votes_and_frames(corpus):
    t = load_dfew(corpus)
    assert t.name == "dfew" and t.classes == BASIC7
    for k in range(1, 6):
        rows = [line.split(",") for line in _lines(corpus / TEST / f"set_{k}.csv")[1:]]
        sub = t.take(t.fold == k)
        assert sub.clip_id.tolist() == sorted(r[0] for r in rows)
        lab = dict((r[0], int(r[1]) - 1) for r in rows)
        assert sub.label.tolist() == [lab[c] for c in sub.clip_id]
    assert (t.votes.sum(axis=1) == 10).all()
    assert (t.kind == ClipKind.FRAMES).all() and (t.num_frames == 10).all()
    assert all(s.endswith(f"Clip/clip_224x224/{c}") and os.path.isabs(s) for c, s in zip(t.clip_id, t.source))
    np.testing.assert_allclose(t.soft_labels(), t.votes / 10, rtol=1e-6)


def test_vote_columns_are_mapped_by_name_not_position(corpus):
    before = load_dfew(corpus)

    def reverse_vote_columns(ws):
        rows = [list(r) for r in ws.iter_rows(values_only=True)]
        for r, row in enumerate(rows, start=1):
            for j, v in enumerate(row[:7][::-1] + row[7:], start=1):
                ws.cell(r, j, v)

    _edit_sheet(corpus, reverse_vote_columns)
    after = load_dfew(corpus)
    np.testing.assert_array_equal(before.votes, after.votes)
    alpha = load_dfew(corpus, classes="basic7_alphabetical")
    assert alpha.classes == BASIC7_ALPHABETICAL
    perm = [BASIC7.index(c) for c in BASIC7_ALPHABETICAL]
    np.testing.assert_array_equal(alpha.votes, before.votes[:, perm])
    assert [alpha.classes[i] for i in alpha.label] == [BASIC7[i] for i in before.label]


def test_include_unlabelled_adds_the_ties(corpus):
    t = load_dfew(corpus, include_unlabelled=True)
    extra = t.take(t.fold == 0)
    assert len(t) == 70 and len(extra) == 70 - len(load_dfew(corpus))
    assert (extra.label == -1).all()
    v = extra.votes
    assert ((v == v.max(axis=1, keepdims=True)).sum(axis=1) > 1).all()  # they are ties


def test_video_folder_and_16f_layouts(corpus, tmp_path):
    ids = load_dfew(corpus).clip_id
    videos = tmp_path / "clip_224x224_avi"
    videos.mkdir()
    for c in ids:
        (videos / f"{c}.avi").write_bytes(b"")
    t = load_dfew(corpus, frames=str(videos))
    assert (t.kind == ClipKind.VIDEO).all() and (t.num_frames == 0).all()
    assert t.source[0] == str(videos / f"{ids[0]}.avi")
    with pytest.raises(DataError, match=r"clip_224x224_16f: DFEW frame/video folder not found"):
        load_dfew(corpus, frames="clip_224x224_16f")


def test_missing_root_and_split_file(corpus, tmp_path):
    with pytest.raises(DataError, match=r"nowhere: DFEW root folder not found"):
        load_dfew(tmp_path / "nowhere")
    (corpus / TEST / "set_3.csv").unlink()
    with pytest.raises(DataError, match=re.escape(f"{TEST}/set_3.csv not found under {corpus}")):
        load_dfew(corpus)


def test_bad_header(corpus):
    path = corpus / TEST / "set_2.csv"
    lines = _lines(path)
    _write(path, ["name,emotion"] + lines[1:])
    with pytest.raises(DataError, match=re.escape(f"{path}:1: expected the header 'video_name,label', found 'name,emotion'")):
        load_dfew(corpus)


@pytest.mark.parametrize("bad, what", [("x", r"label 'x' is not an integer 1..7"),
                                       ("9", r"label 9 is not one of 1..7"),
                                       ("0", r"label 0 is not one of 1..7")])
def test_bad_label_names_the_line(corpus, bad, what):
    path = corpus / TEST / "set_4.csv"
    lines = _lines(path)
    lines[3] = lines[3].split(",")[0] + "," + bad
    _write(path, lines)
    with pytest.raises(DataError, match=re.escape(f"{path}:4: ") + what):
        load_dfew(corpus)


def test_duplicate_id_in_a_split(corpus):
    path = corpus / TEST / "set_1.csv"
    lines = _lines(path)
    _write(path, lines + [lines[1]])
    cid = lines[1].split(",")[0]
    with pytest.raises(DataError, match=re.escape(f"{path}:{len(lines) + 1}: clip {cid} listed twice (first at line 2)")):
        load_dfew(corpus)


def test_clip_in_two_test_sets(corpus):
    one, two = corpus / TEST / "set_1.csv", corpus / TEST / "set_2.csv"
    moved = _lines(one)[1]
    _write(two, _lines(two) + [moved])
    cid = moved.split(",")[0]
    with pytest.raises(DataError, match=re.escape(f"{two}:") + r"\d+: " + f"clip {cid} is already in test set_1"):
        load_dfew(corpus)


def test_train_set_must_be_the_complement_of_its_test_set(corpus):
    train2 = corpus / TRAIN / "set_2.csv"
    lines = _lines(train2)
    dropped = lines.pop(5).split(",")[0]
    _write(train2, lines)
    with pytest.raises(DataError, match=re.escape(f"{train2}: train set_2 lacks 1 clip(s) of the other test sets, "
                                                  f"e.g. ['{dropped}']")):
        load_dfew(corpus)
    test2 = _lines(corpus / TEST / "set_2.csv")[1]
    _write(train2, lines + [test2])
    cid = test2.split(",")[0]
    with pytest.raises(DataError, match=f"clip {cid} is in train set_2 and in test set_2"):
        load_dfew(corpus)


def test_csv_label_disagreeing_with_the_sheet(corpus):
    path = corpus / TEST / "set_1.csv"
    lines = _lines(path)
    cid, lab = lines[1].split(",")
    new = int(lab) % 7 + 1
    lines[1] = f"{cid},{new}"
    _write(path, lines)
    # the train CSVs carry the label too: keep them consistent so the sheet check is reached
    for k in range(2, 6):
        p = corpus / TRAIN / f"set_{k}.csv"
        _write(p, [f"{cid},{new}" if ln.startswith(cid + ",") else ln for ln in _lines(p)])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: clip {cid} has label {new} but {corpus / SHEET}:")
                       + r"\d+ " + f"has label {lab}"):
        load_dfew(corpus)


def test_clip_missing_from_the_sheet(corpus):
    row, cid = _first_labelled_row(corpus)
    _edit_sheet(corpus, lambda ws: ws.delete_rows(row))
    with pytest.raises(DataError, match=re.escape(f"{corpus / TEST / 'set_1.csv'}:2: clip {cid} is not in {corpus / SHEET}")):
        load_dfew(corpus)


def test_vote_rows_not_summing_to_the_annotators(corpus):
    row, cid = _first_labelled_row(corpus)

    def add_vote(ws):
        label_col = ws.cell(row, 9).value  # keep the majority: add to the labelled class
        ws.cell(row, label_col, ws.cell(row, label_col).value + 1)

    _edit_sheet(corpus, add_vote)
    with pytest.raises(DataError, match=re.escape(f"{corpus / SHEET}: 1 vote row(s) do not sum to 10 annotators: "
                                                  f"row {row} (clip {cid}) sums to 11")):
        load_dfew(corpus)
    # the remedy the message names, as a setting
    from dfer.config import load_config
    from dfer.data.corpora.registry import load_source

    src = load_config(None, [f"data.source.root={corpus}", "data.source.options.check_annotators=null"]).data.source
    assert load_source(src.kind, src.root, **src.options).meta["vote_sums"][11] == 1
    t = load_dfew(corpus, check_annotators=None)
    assert t.meta["vote_sums"][11] == 1
    i = t.clip_id.tolist().index(cid)
    assert t.soft_labels()[i].max() == pytest.approx(t.votes[i].max() / 11)


@pytest.mark.parametrize("value, what", [
    (-1, "has negative votes"),
    ("many", "column 'sad' holds 'many', expected a number"),
    (None, "column 'sad' is empty or not a number"),
    ("NaN", "column 'sad' holds 'NaN', expected a finite number"),
])
def test_bad_vote_cells_name_the_row(corpus, value, what):
    row, _ = _first_labelled_row(corpus)
    _edit_sheet(corpus, lambda ws: setattr(ws.cell(row, 2), "value", value))
    with pytest.raises(DataError, match=re.escape(f"{corpus / SHEET}:{row}: ") + ".*" + re.escape(what)):
        load_dfew(corpus)


def test_all_zero_votes(corpus):
    row, cid = _first_labelled_row(corpus)

    def zero(ws):
        for j in range(1, 8):
            ws.cell(row, j, 0)

    _edit_sheet(corpus, zero)
    with pytest.raises(DataError, match=re.escape(f"{corpus / SHEET}:{row}: clip {cid} has votes that are all zero")):
        load_dfew(corpus)


def test_sheet_header_and_duplicates(corpus):
    _edit_sheet(corpus, lambda ws: ws.cell(1, 6, "6contempt"))
    with pytest.raises(DataError, match=re.escape(f"{corpus / SHEET}:1: header lacks the column(s) ['disgust']")):
        load_dfew(corpus)
    _edit_sheet(corpus, lambda ws: (ws.cell(1, 6, "6disgust"), ws.cell(3, 8, ws.cell(2, 8).value)))
    with pytest.raises(DataError, match=re.escape(f"{corpus / SHEET}:3: clip 00001 appears twice in the sheet (first at row 2)")):
        load_dfew(corpus)


def test_missing_or_empty_frame_folder_names_the_clip(own_frames):
    t = load_dfew(own_frames)
    cid = t.clip_id[3]
    folder = own_frames / "Clip/clip_224x224" / cid
    for f in folder.iterdir():
        f.unlink()
    with pytest.raises(DataError, match=re.escape(f"clip {cid}: frame folder {folder} holds no image files")):
        load_dfew(own_frames)
    folder.rmdir()
    with pytest.raises(DataError, match=re.escape(f"clip {cid}: no frame folder or video {folder} found")):
        load_dfew(own_frames)


def test_classes_must_cover_dfew(corpus):
    with pytest.raises(ConfigError, match=r"lack the DFEW classes \['fear'\]"):
        load_dfew(corpus, classes=("happy", "sad", "neutral", "angry", "surprise", "disgust"))
    t = load_dfew(corpus, classes="mafw11_community")  # a superset: extra classes get no votes
    assert t.votes.shape[1] == 11 and (t.votes[:, 7:] == 0).all()
