"""FER+ (dfer.data.corpora.ferplus) on 24 real faces kept in tests/data/ferplus.

Both forms users have: the folders FER+'s generator writes, and Kaggle's fer2013.csv with
Microsoft's fer2013new.csv (joined by position, named by ``Image name``). The two forms of
the fixture hold the same faces, so they must give the same table and the same pixels.
Then ties for the most votes: a hard-label run with ``data.ties`` unset stops before a
model is built, and a one-epoch run with ``data.ties=first`` finishes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfer.cli import main
from dfer.config import load_config
from dfer.data.corpora.ferplus import load_ferplus
from dfer.data.corpora.registry import detect_kind, load_corpus, load_source
from dfer.data.decode import read_frames
from dfer.data.table import ClipKind, Split
from dfer.emotions import FERPLUS8
from dfer.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
FERPLUS = ROOT / "tests" / "data" / "ferplus"
KAGGLE = FERPLUS / "kaggle"
STILL_FACE = ROOT / "configs" / "ferplus" / "still_face.yaml"

TRAIN_KEPT = ["fer0000000", "fer0000001", "fer0000003", "fer0000004", "fer0000005", "fer0000007", "fer0000010",
              "fer0000026", "fer0000060", "fer0000095", "fer0000183", "fer0000196", "fer0010406"]
VAL_KEPT = ["fer0028638", "fer0028639", "fer0028641", "fer0028642", "fer0028644", "fer0028753"]
KEPT = [f"FER2013Train/{n}.png" for n in TRAIN_KEPT] + [f"FER2013Valid/{n}.png" for n in VAL_KEPT]
# most votes unknown (459, 1117, 28812) or NF (10628: all ten votes; 31788: four of ten)
EXCLUDED = ["FER2013Train/fer0000459.png", "FER2013Train/fer0001117.png", "FER2013Train/fer0010628.png",
            "FER2013Valid/fer0028812.png", "FER2013Valid/fer0031788.png"]
# tied for the most emotion votes: (clip, the tied classes)
TIES = {"FER2013Train/fer0000003.png": ("neutral", "sad"), "FER2013Train/fer0000026.png": ("neutral", "surprise"),
        "FER2013Train/fer0000183.png": ("surprise", "angry", "fear"),
        "FER2013Valid/fer0028638.png": ("neutral", "contempt"), "FER2013Valid/fer0028641.png": ("neutral", "happy"),
        "FER2013Valid/fer0028753.png": ("sad", "angry")}


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def _votes_by_id(root: Path) -> dict[str, list[int]]:
    """The ten vote columns of every row of the fixture's label.csv files, read directly."""
    out = {}
    for folder in ("FER2013Train", "FER2013Valid"):
        for row in _rows(root / folder / "label.csv"):
            out[f"{folder}/{row[0]}"] = [int(c) for c in row[2:]]
    return out


def _same_table(a, b) -> None:
    assert a.classes == b.classes
    assert a.clip_id.tolist() == b.clip_id.tolist()
    np.testing.assert_array_equal(a.votes, b.votes)  # NaN rows compare equal here
    np.testing.assert_array_equal(a.split, b.split)
    np.testing.assert_array_equal(a.kind, b.kind)
    np.testing.assert_array_equal(a.num_frames, b.num_frames)
    np.testing.assert_array_equal(a.label, b.label)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "L" and img.size == (48, 48)
        return np.asarray(img).copy()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---------------------------------------------------------------------------- the folder form
def test_folder_form_gives_ids_classes_votes_and_splits():
    t = load_ferplus(FERPLUS)
    assert t.classes == FERPLUS8 == ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")
    assert t.clip_id.tolist() == KEPT  # label.csv order, Train then Valid; unknown / NF majorities left out
    assert t.meta["excluded_unknown"] == len(EXCLUDED)
    assert (t.kind == ClipKind.IMAGE).all() and (t.num_frames == 1).all() and (t.label == -1).all()
    for cid, src in zip(t.clip_id, t.source):
        assert os.path.isabs(src) and Path(src) == FERPLUS / cid
    assert t.split.tolist() == [Split.TRAIN] * len(TRAIN_KEPT) + [Split.VAL] * len(VAL_KEPT)
    # votes are the eight emotion columns of label.csv; unknown and NF are not emotions
    raw = _votes_by_id(FERPLUS)
    for cid, v in zip(t.clip_id, t.votes):
        assert v.tolist() == raw[cid][:8], cid
    by_id = dict(zip(t.clip_id, t.votes))
    assert by_id["FER2013Train/fer0000003.png"].tolist() == [4, 0, 0, 4, 1, 0, 0, 0]
    # an emotion tied with unknown keeps the image (3 neutral = 3 unknown)
    assert by_id["FER2013Train/fer0000196.png"].tolist() == [3, 0, 2, 1, 1, 0, 0, 0]
    # the one real row of nine taggers: soft labels are votes over their own sum
    soft = dict(zip(t.clip_id, t.soft_labels()))
    np.testing.assert_allclose(soft["FER2013Train/fer0010406.png"], np.array([4, 0, 0, 0, 0, 3, 1, 0]) / 8)
    np.testing.assert_allclose(t.soft_labels().sum(axis=1), 1.0, atol=1e-6)
    # majority classes where there is one; the six ties have none
    hard = dict(zip(t.clip_id, t.hard_labels()))
    assert {cid for cid, h in hard.items() if h < 0} == set(TIES)
    assert FERPLUS8[hard["FER2013Train/fer0000007.png"]] == "happy"
    assert FERPLUS8[hard["FER2013Valid/fer0028639.png"]] == "contempt"


def test_sources_are_absolute_whatever_the_root(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    rel = Path("tests") / "data" / "ferplus"
    assert load_ferplus(rel).source.tolist() == load_ferplus(FERPLUS).source.tolist()
    monkeypatch.chdir(tmp_path)
    cached = load_ferplus(KAGGLE, cache="cache")
    assert cached.source.tolist() == [str(tmp_path / "cache" / cid) for cid in KEPT]


def test_exclusion_off_keeps_every_image_and_no_emotion_vote_means_nan():
    t = load_ferplus(FERPLUS, exclude_unknown=False)
    assert sorted(t.clip_id.tolist()) == sorted(KEPT + EXCLUDED)
    assert t.meta["excluded_unknown"] == 0
    by_id = dict(zip(t.clip_id, t.votes))
    # ten NF votes and no emotion vote: no usable label at all
    assert np.isnan(by_id["FER2013Train/fer0010628.png"]).all()
    assert t.clip_id[~t.has_votes].tolist() == ["FER2013Train/fer0010628.png"]
    # an unknown majority keeps its emotion votes
    assert by_id["FER2013Valid/fer0028812.png"].tolist() == [2, 0, 0, 1, 0, 0, 0, 3]
    assert by_id["FER2013Valid/fer0031788.png"].tolist() == [1, 0, 0, 2, 0, 0, 0, 0]
    # and training would stop on the image without votes, whatever rule decides ties
    with pytest.raises(DataError, match=r"1 clip\(s\) have neither a label nor votes .*fer0010628\.png"):
        t.resolve_labels("first")


@pytest.mark.parametrize("splits, expected", [
    ("train", [c for c in KEPT if c.startswith("FER2013Train/")]),
    (["val"], [c for c in KEPT if c.startswith("FER2013Valid/")]),
    ("val, train", KEPT),
])
def test_splits_select_folders(splits, expected, tmp_path):
    assert load_ferplus(FERPLUS, splits=splits).clip_id.tolist() == expected
    assert load_ferplus(KAGGLE, splits=splits, cache=tmp_path).clip_id.tolist() == expected


def test_splits_that_are_absent_or_unknown():
    with pytest.raises(DataError, match=r"no FER\+ folder found \(expected FER2013Test with a label\.csv"):
        load_ferplus(FERPLUS, splits="test")
    with pytest.raises(DataError, match=r"FER\+ split 'dev' unknown; expected train, val or test"):
        load_ferplus(FERPLUS, splits=["train", "dev"])
    with pytest.raises(DataError, match=r"FER\+ splits: none given"):
        load_ferplus(FERPLUS, splits=[])


def test_both_forms_are_detected_and_load_through_the_registry(tmp_path):
    assert detect_kind(FERPLUS) == "ferplus"
    assert detect_kind(KAGGLE) == "ferplus"
    _same_table(load_corpus(FERPLUS), load_ferplus(FERPLUS))
    _same_table(load_corpus({"kind": "ferplus", "root": str(KAGGLE), "cache": str(tmp_path)}), load_ferplus(FERPLUS))
    _same_table(load_source(None, FERPLUS, exclude_unknown=False), load_ferplus(FERPLUS, exclude_unknown=False))


# ---------------------------------------------------------------------------- the Kaggle form
def test_kaggle_csv_pair_gives_the_same_table_and_the_same_pixels(tmp_path):
    # the quirk this form exists for: names follow the row index at first, then drift
    names = [r[1] for r in _rows(KAGGLE / "fer2013new.csv")[1:]]
    assert names[0] == "fer0000000.png" and "" in names
    drift = [(i, n) for i, n in enumerate(names) if n and n != f"fer{i:07d}.png"]
    assert drift and any(f"fer{i:07d}.png" in names for i, _ in drift)  # a by-index join would misname faces

    for exclude in (True, False):
        folders = load_ferplus(FERPLUS, exclude_unknown=exclude)
        kaggle = load_ferplus(KAGGLE, exclude_unknown=exclude, cache=tmp_path / "cache")
        _same_table(kaggle, folders)
        for cid, a, b in zip(folders.clip_id, folders.source, kaggle.source):
            assert Path(b) == tmp_path / "cache" / cid
            assert np.array_equal(_pixels(a), _pixels(b)), cid
            # and the decoder the training loader uses reads the same RGB frame from both
            assert np.array_equal(read_frames(a, ClipKind.IMAGE, [0]), read_frames(b, ClipKind.IMAGE, [0])), cid
    # the file itself also works as root; fer2013new.csv is found beside it
    _same_table(load_ferplus(KAGGLE / "fer2013.csv", cache=tmp_path / "cache"), load_ferplus(FERPLUS))

    # one image per named row (unknown majorities too); the twelve unnamed rows wrote nothing
    pngs = [p for p in _files(tmp_path / "cache") if p.suffix == ".png"]
    assert sorted(p.relative_to(tmp_path / "cache").as_posix() for p in pngs) == sorted(KEPT + EXCLUDED)
    unnamed = [np.array(r[1].split(), np.uint8).reshape(48, 48)
               for r, name in zip(_rows(KAGGLE / "fer2013.csv")[1:], names) if not name]
    assert len(unnamed) == 12
    assert not any(np.array_equal(_pixels(p), u) for p in pngs for u in unnamed)


def test_the_cache_is_written_once_and_again_when_the_csv_files_change(tmp_path):
    kaggle = tmp_path / "kaggle"
    shutil.copytree(KAGGLE, kaggle)
    cache = tmp_path / "cache"
    load_ferplus(kaggle, cache=cache)
    target = cache / "FER2013Train" / "fer0000000.png"
    before = {p: p.stat().st_mtime_ns for p in _files(cache)}
    load_ferplus(kaggle, cache=cache)
    assert {p: p.stat().st_mtime_ns for p in _files(cache)} == before  # nothing rewritten
    # a corrected fer2013.csv in the same place, read into the same explicit cache folder
    lines = (kaggle / "fer2013.csv").read_text().splitlines(keepends=True)
    emotion, px, usage = lines[1].split(",")
    values = px.split()
    values[0] = "0" if values[0] != "0" else "255"
    lines[1] = ",".join([emotion, " ".join(values), usage])
    (kaggle / "fer2013.csv").write_text("".join(lines))
    st = (kaggle / "fer2013.csv").stat()
    os.utime(kaggle / "fer2013.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load_ferplus(kaggle, cache=cache)
    assert _pixels(target)[0, 0] == int(values[0])  # not the stale face
    assert _pixels(target)[0, 1:].tolist() == [int(v) for v in values[1:48]]


# ---------------------------------------------------------------------------- bad input: folder form
def _copy_folders(tmp_path: Path) -> Path:
    root = tmp_path / "ferplus"
    shutil.copytree(FERPLUS, root, ignore=shutil.ignore_patterns("kaggle", "*.py", "*.md"))
    return root


def _edit_cells(path: Path, line: int, edit) -> None:
    """Rewrite CSV record ``line`` (1-based) of ``path`` as ``edit(cells)``, quoting as csv does."""
    rows = _rows(path)
    rows[line - 1] = edit(list(rows[line - 1]))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue())


def _set(index: int, value: str):
    def edit(cells):
        cells[index] = value
        return cells
    return edit


TRAIN_CSV = "FER2013Train/label.csv"


def _no_label_csv(root):
    (root / "FER2013Valid" / "label.csv").unlink()


def _missing_image(root):
    (root / "FER2013Train" / "fer0000004.png").unlink()


def _narrow_image(root):
    Image.new("L", (40, 48)).save(root / "FER2013Train" / "fer0000005.png")


def _not_an_image(root):
    (root / "FER2013Train" / "fer0000005.png").write_bytes(b"not a png at all")


def _not_utf8(root):
    p = root / TRAIN_CSV
    p.write_bytes(p.read_bytes().replace(b"fer0000001", b"fer\xff000001"))


@pytest.mark.parametrize("damage, message", [
    (_no_label_csv, r"FER2013Valid/label\.csv: FER\+ label file not found \(the folder holds no label\.csv\)"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 3, lambda c: c[:-1]),
     r"FER2013Train/label\.csv:3: expected 12 cells \(name, face box, 10 votes\), found 11"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 3, lambda c: c + ["0"]), r"FER2013Train/label\.csv:3: expected 12 cells"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 2, _set(2, "1.5")),
     r"FER2013Train/label\.csv:2: vote for neutral is '1\.5', expected a non-negative integer"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 2, _set(11, "-1")), r"label\.csv:2: vote for NF is '-1'"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 2, _set(3, "x")), r"label\.csv:2: vote for happiness is 'x'"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 2, _set(3, "\u00b2")), r"label\.csv:2: vote for happiness is '\u00b2'"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 6, lambda c: c[:2] + ["0"] * 10),
     r"FER2013Train/label\.csv:6: every vote is 0"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 4, _set(1, "(0, 0, 48)")),
     r"FER2013Train/label\.csv:4: face box '\(0, 0, 48\)' is not '\(left, top, right, bottom\)' in pixels"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 4, _set(1, "(48, 0, 0, 48)")), r"label\.csv:4: face box '\(48, 0, 0, 48\)'"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 4, _set(1, "(0, 0, 48, a)")), r"label\.csv:4: face box"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 4, _set(1, "(0, 0, 64, 64)")),
     r"FER2013Train/label\.csv:4: image .*fer0000004\.png is 48x48, the face box says 64x64"),
    (_missing_image, r"FER2013Train/label\.csv:4: image .*FER2013Train/fer0000004\.png not found"),
    (_narrow_image, r"FER2013Train/label\.csv:5: image .*fer0000005\.png is 40x48, the face box says 48x48"),
    (_not_an_image, r"FER2013Train/label\.csv:5: image .*fer0000005\.png cannot be read"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 9, _set(0, "fer0000000.png")),
     r"FER2013Train/label\.csv:9: image fer0000000\.png is named again \(first on line 1\)"),
    (lambda r: _edit_cells(r / TRAIN_CSV, 9, _set(0, " ")), r"FER2013Train/label\.csv:9: image name ' ' is not a file"),
    (_not_utf8, r"FER2013Train/label\.csv:2: bytes that are not UTF-8"),
], ids=["no-label-csv", "11-cells", "13-cells", "vote-1.5", "vote-negative", "vote-x", "vote-superscript",
        "no-vote", "box-3-numbers", "box-inverted", "box-not-int", "box-larger-than-image", "image-missing",
        "image-wrong-size", "image-unreadable", "name-twice", "name-empty", "not-utf8"])
def test_bad_folder_form_raises_one_data_error_naming_file_and_line(tmp_path, damage, message):
    root = _copy_folders(tmp_path)
    damage(root)
    with pytest.raises(DataError, match=message):
        load_ferplus(root)


def test_check_images_off_reads_only_label_csv(tmp_path):
    root = _copy_folders(tmp_path)
    _missing_image(root)
    assert load_ferplus(root, check_images=False).clip_id.tolist() == KEPT


# ---------------------------------------------------------------------------- bad input: Kaggle form
FER_CSV, NEW_CSV = "fer2013.csv", "fer2013new.csv"
LAST = 36  # fer2013.csv / fer2013new.csv line of the last named row (FER2013Valid/fer0031788.png)


def _edit_pixels(edit):
    def damage(k):
        _edit_cells(k / FER_CSV, LAST, lambda c: [c[0], " ".join(edit(c[1].split())), c[2]])
    return damage


def _drop_last_row(k):
    lines = (k / NEW_CSV).read_text().splitlines(keepends=True)
    (k / NEW_CSV).write_text("".join(lines[:-1]))


@pytest.mark.parametrize("damage, message", [
    (_edit_pixels(lambda v: v[:-1]), r"fer2013\.csv:36: pixels hold 2303 values, expected 2304 \(48x48 grey levels\)"),
    (_edit_pixels(lambda v: v + ["0"]), r"fer2013\.csv:36: pixels hold 2305 values"),
    (_edit_pixels(lambda v: ["12a"] + v[1:]), r"fer2013\.csv:36: pixels must be integers 0\.\.255$"),
    (_edit_pixels(lambda v: ["1.5"] + v[1:]), r"fer2013\.csv:36: pixels must be integers 0\.\.255$"),
    (_edit_pixels(lambda v: ["256"] + v[1:]), r"fer2013\.csv:36: pixels must be integers 0\.\.255, found \d+\.\.256"),
    (_edit_pixels(lambda v: ["-3"] + v[1:]), r"fer2013\.csv:36: pixels must be integers 0\.\.255, found -3\.\.\d+"),
    (lambda k: _edit_cells(k / FER_CSV, LAST, lambda c: c + ["x"]), r"fer2013\.csv:36: expected 3 cells, found 4"),
    (lambda k: _edit_cells(k / FER_CSV, 2, _set(2, "Train")),
     r"fer2013\.csv:2: Usage 'Train' unknown; expected one of \['PrivateTest', 'PublicTest', 'Training'\]"),
    (lambda k: _edit_cells(k / FER_CSV, 1, _set(1, "pixel")),
     r"fer2013\.csv:1: header lacks column\(s\) \['pixels'\]; found \['emotion', 'pixel', 'Usage'\]"),
    (lambda k: (k / FER_CSV).write_text(""), r"fer2013\.csv: empty; expected a header line"),
    (lambda k: (k / NEW_CSV).unlink(), r"fer2013new\.csv: fer2013new\.csv not found beside fer2013\.csv"),
    (_drop_last_row, r"fer2013new\.csv: 35 rows, but .*fer2013\.csv has 36; FER\+ labels the rows of fer2013\.csv in"),
    (lambda k: _edit_cells(k / NEW_CSV, LAST, _set(0, "Training")),
     r"fer2013new\.csv:36: Usage 'Training' does not match 'PublicTest' on line 36 of .*fer2013\.csv"),
    (lambda k: _edit_cells(k / NEW_CSV, 1, _set(9, "contemp")),
     r"fer2013new\.csv:1: header lacks column\(s\) \['contempt'\]"),
    (lambda k: _edit_cells(k / NEW_CSV, LAST, lambda c: c[:-1]), r"fer2013new\.csv:36: expected 12 cells, found 11"),
    (lambda k: _edit_cells(k / NEW_CSV, LAST, _set(2, "one")), r"fer2013new\.csv:36: vote for neutral is 'one'"),
    (lambda k: _edit_cells(k / NEW_CSV, LAST, _set(1, "fer0028638.png")),
     r"fer2013new\.csv:36: image fer0028638\.png is named again \(first on line 26\)"),
], ids=["pixels-short", "pixels-long", "pixels-not-int", "pixels-float", "pixels-above-255", "pixels-negative",
        "fer-4-cells", "usage-unknown", "fer-header", "fer-empty", "no-fer2013new", "row-count", "usage-disagrees",
        "new-header", "new-11-cells", "new-vote", "new-name-twice"])
def test_bad_kaggle_form_raises_one_data_error_and_writes_nothing(tmp_path, damage, message):
    kaggle = tmp_path / "kaggle"
    shutil.copytree(KAGGLE, kaggle)
    damage(kaggle)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=message):
        load_ferplus(kaggle, cache=cache)
    # the bad row is the last named one: a loader that wrote as it read would have left 23 faces
    assert _files(cache) == []


# ---------------------------------------------------------------------------- dfer data stats
def _stats(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["data", "stats", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_stats_cli_counts_train_and_valid_after_the_exclusion(tmp_path, capsys, monkeypatch):
    rc, out, err = _stats(capsys, FERPLUS, "--kind", "ferplus", "--out", tmp_path / "folders")
    assert rc == 0, err
    assert out.startswith("ferplus: 19 clips (train 13, val 6), 19 with votes, 6 without a class")
    folders = json.loads((tmp_path / "folders" / "stats.json").read_text())
    assert folders["splits"] == {"train": 13, "val": 6} and folders["num_clips"] == 19
    assert sum(folders["counts"]) == 13 and folders["counts"][FERPLUS8.index("neutral")] == 6
    # the Kaggle pair, detected from its folder and named as a file, gives the same numbers
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for source, extra in ((KAGGLE, []), (KAGGLE / "fer2013.csv", ["--kind", "ferplus"])):
        out_dir = tmp_path / f"kaggle{len(extra)}"
        rc, out2, err = _stats(capsys, source, *extra, "--out", out_dir)
        assert rc == 0, err
        assert json.loads((out_dir / "stats.json").read_text()) == folders
        assert out2.splitlines()[:14] == out.splitlines()[:14]
    assert len([p for p in _files(tmp_path / "xdg") if p.suffix == ".png"]) == 24  # the cache, in XDG_CACHE_HOME


def test_stats_cli_bad_file_is_exit_2_and_one_line(tmp_path, capsys, monkeypatch):
    root = _copy_folders(tmp_path)
    _edit_cells(root / TRAIN_CSV, 7, _set(5, "many"))
    rc, out, err = _stats(capsys, root, "--kind", "ferplus", "--out", tmp_path / "o")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err
    assert "FER2013Train/label.csv:7: vote for sadness is 'many'" in lines[0]
    assert not (tmp_path / "o").exists()

    kaggle = tmp_path / "kaggle"
    shutil.copytree(KAGGLE, kaggle)
    _edit_pixels(lambda v: v[:100])(kaggle)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    rc, out, err = _stats(capsys, kaggle, "--out", tmp_path / "o")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err
    assert "fer2013.csv:36: pixels hold 100 values, expected 2304" in lines[0]
    assert _files(tmp_path / "xdg") == []


# ---------------------------------------------------------------------------- ties, then training
def _config(tmp_path: Path, *overrides: str):
    """The shipped still-face recipe on the fixture, tiny: FER+ Valid validates and tests
    (the fixture holds no Test split)."""
    return load_config(STILL_FACE, [f"data.source.root={FERPLUS}", "data.source.test_split=val",
                                    f"out_dir={tmp_path}", "data.size=16", "optim.batch_size=4",
                                    "eval.batch_size=8", "data.num_workers=0", "threads=1", "tensorboard=false",
                                    "progress=false", "optim.epochs=1", *overrides])


def _forbid_building(monkeypatch):
    import dfer.train

    def forbidden(*a, **k):
        raise AssertionError("built a model or a loader before every hard label was decided")

    monkeypatch.setattr(dfer.train, "create_model", forbidden)
    monkeypatch.setattr(dfer.train, "make_dataset", forbidden)


def test_ties_decide_the_hard_labels_of_the_splits(tmp_path):
    from dfer.data.splits import build_splits

    first = build_splits(_config(tmp_path, "label_mode=hard", "data.ties=first"))
    assert first.train.clip_id.tolist() == KEPT[:13] and first.val.clip_id.tolist() == KEPT[13:]
    for part in (first.train, first.val, first.test):
        for cid, lab in zip(part.clip_id, part.label):
            if cid in TIES:
                assert FERPLUS8[lab] == TIES[cid][0]  # the first tied class in FERPLUS8 order
            else:
                assert lab == int(np.argmax(part.votes[list(part.clip_id).index(cid)]))
    drop = build_splits(_config(tmp_path, "label_mode=hard", "data.ties=drop"))
    assert drop.train.clip_id.tolist() == [c for c in KEPT[:13] if c not in TIES]
    assert drop.val.clip_id.tolist() == [c for c in KEPT[13:] if c not in TIES]
    rand = build_splits(_config(tmp_path, "label_mode=hard", "data.ties=random"))
    for part in (rand.train, rand.val):
        for cid, lab in zip(part.clip_id, part.label):
            assert cid not in TIES or FERPLUS8[lab] in TIES[cid]


def test_hard_labels_with_ties_and_no_rule_stop_before_the_model_is_built(tmp_path, monkeypatch, capsys):
    from dfer.train import train

    _forbid_building(monkeypatch)
    cfg = _config(tmp_path, "label_mode=hard", "data.ties=null")
    assert cfg.data.ties is None
    tie = (r"\(training clips\): 3 clip\(s\) have a tie for the most votes \(e\.g\. "
           r"\['FER2013Train/fer0000003\.png', .*\]\); set data\.ties=drop, first or random")
    with pytest.raises(DataError, match=tie):
        train(cfg)
    assert not list(tmp_path.rglob("config.yaml")) and not list(tmp_path.rglob("*.safetensors"))
    # the same through the command line: exit 2, one line, no traceback
    rc = main(["train", "-c", str(STILL_FACE), f"data.source.root={FERPLUS}", "data.source.test_split=val",
               f"out_dir={tmp_path}", "label_mode=hard", "data.ties=null", "progress=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert "3 clip(s) have a tie for the most votes" in err[0] and "data.ties" in err[0]


@pytest.mark.slow
def test_one_epoch_on_the_fixture_with_ties_first_finishes(tmp_path):
    from dfer.train import train

    run = train(_config(tmp_path, "label_mode=hard", "data.ties=first"))
    res = json.loads((run / "results.json").read_text())
    assert res["num_clips"] == 6 and 0.0 <= res["war"] <= 1.0
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1"] and rows[0]["val_uar"] != ""  # FER+ Valid validated the epoch
    preds = {r["clip_id"]: r for r in csv.DictReader(open(run / "predictions.csv"))}
    assert sorted(preds) == sorted(KEPT[13:])
    assert preds["FER2013Valid/fer0028638.png"]["label"] == "neutral"  # tied with contempt: the first
    assert preds["FER2013Valid/fer0028753.png"]["label"] == "sad"  # tied with angry
