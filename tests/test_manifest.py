"""The generic manifest (CSV / TSV / JSON lines) and vote sheets.

The fast (byte-level) tokeniser and the csv-module path must give the same table; labels
are mapped by name; every malformed row names file:line (more cases, generated, in
test_malformed.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dfer.data.corpora.manifest import load_manifest, read_vote_sheet
from dfer.data.table import ClipKind, Split
from dfer.emotions import BASIC7, FERPLUS8
from dfer.errors import DataError

HEADER = "path,label,fear,happy,sad,neutral,angry,surprise,disgust,fold,split,group"


def write(tmp_path, text: str, name="m.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_columns_votes_labels_folds_groups(tmp_path):
    p = write(tmp_path, HEADER + "\n"
              "clips/0001,sad,0,1,8,1,0,0,0,1,train,s01\n"
              "clips/0002/,,,,,,,,,2,val,s02\n"
              "img/0003.png,angry,0.1,0,0,0,0.6,0,0.3,,test,\n"
              "\n"
              "vids/0004.MP4,4,1,1,1,1,1,1,4,3,,s01\n")
    t = load_manifest(p)
    # classes follow the vote columns' header order
    assert t.classes == ("fear", "happy", "sad", "neutral", "angry", "surprise", "disgust")
    assert list(t.clip_id) == ["clips/0001", "clips/0002", "img/0003.png", "vids/0004.MP4"]
    assert t.source[1] == str(tmp_path / "clips" / "0002")
    assert list(t.kind) == [ClipKind.FRAMES, ClipKind.FRAMES, ClipKind.IMAGE, ClipKind.VIDEO]
    assert [t.classes[k] if k >= 0 else None for k in t.label] == ["sad", None, "angry", "angry"]
    assert np.isnan(t.votes[1]).all() and not t.has_votes[1]
    np.testing.assert_allclose(t.votes[0] / t.votes[0].sum(), [0, 0.1, 0.8, 0.1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(t.votes[2], [0.1, 0, 0, 0, 0.6, 0, 0.3], atol=1e-7)
    assert t.fold.tolist() == [1, 2, 0, 3]
    assert t.split.tolist() == [Split.TRAIN, Split.VAL, Split.TEST, Split.NONE]
    assert t.group.tolist() == ["s01", "s02", "", "s01"]
    assert t.num_frames.tolist() == [0, 0, 1, 0]  # a still image is a one-frame clip


def test_classes_option_maps_votes_and_labels_by_name(tmp_path):
    p = write(tmp_path, HEADER + "\nclips/0001,sad,2,1,5,1,0,0,1,1,train,s01\n")
    t = load_manifest(p, classes="basic7")
    assert t.classes == BASIC7
    assert t.votes[0].tolist() == [1, 5, 1, 0, 0, 1, 2]  # happy sad neutral angry surprise disgust fear
    assert t.classes[t.label[0]] == "sad"
    with pytest.raises(DataError, match=r"vote columns .* do not match the classes .*missing \['contempt'\]"):
        load_manifest(p, classes=FERPLUS8)


def test_label_only_manifest_needs_the_right_classes(tmp_path):
    p = write(tmp_path, "path,label\na.jpg,contempt\nb.jpg,0\n")
    with pytest.raises(DataError, match=r"m\.csv:2: class 'contempt' is not one of the classes"):
        load_manifest(p)
    t = load_manifest(p, classes="ferplus8")
    assert [t.classes[k] for k in t.label] == ["contempt", "neutral"]


def test_fast_path_equals_csv_module_path(tmp_path):
    rng = np.random.default_rng(0)
    votes = rng.integers(0, 5, size=(50, 7))
    votes[:, 0] += 1
    lines = [f"clips/{i:04d},{','.join(map(str, v))},{i % 5 + 1}" for i, v in enumerate(votes)]
    fast = write(tmp_path, "path," + ",".join(BASIC7) + ",fold\n" + "\n".join(lines) + "\n", "fast.csv")
    # a quoted cell sends the file through the csv module
    slow = write(tmp_path, "path," + ",".join(BASIC7) + ",fold\n" + "\n".join(lines[:-1])
                 + '\n"' + lines[-1].split(",", 1)[0] + '",' + lines[-1].split(",", 1)[1] + "\n", "slow.csv")
    a, b = load_manifest(fast), load_manifest(slow)
    for col in ("clip_id", "source", "kind", "votes", "fold", "label"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    np.testing.assert_array_equal(a.votes, votes.astype(np.float32))


def test_decimal_parsing_is_exact(tmp_path):
    cells = ["0.1", "0.3333", "12", "0.000001", "1.5", ".25", "7.", "1e-3", " 2 ", "0.9999999"]
    p = write(tmp_path, "path,happy,sad\n" + "".join(f"c{i},{c},1\n" for i, c in enumerate(cells)))
    t = load_manifest(p)
    np.testing.assert_array_equal(t.votes[:, 0], np.array([float(c) for c in cells], np.float32))


def test_crlf_bom_tsv_and_jsonl(tmp_path):
    p = tmp_path / "m.tsv"
    p.write_bytes("\ufeffpath\tlabel\r\nclips/a\thappy\r\n\r\nclips/b\tsad\r\n".encode())
    t = load_manifest(p)
    assert list(t.clip_id) == ["clips/a", "clips/b"] and t.label.tolist() == [0, 1]
    j = tmp_path / "m.jsonl"
    j.write_text("\n".join(json.dumps(r) for r in [
        {"path": "a.jpg", "happy": 3, "sad": 1, "fold": 1},
        {"path": "b.jpg", "happy": None, "sad": None, "fold": 2},
    ]) + "\n")
    t = load_manifest(j)
    assert t.votes[0].tolist() == [3, 1] and not t.has_votes[1] and t.fold.tolist() == [1, 2]


def test_root_resolution_and_escape(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    p = write(tmp_path, "path,label\nclips/a,happy\n./clips/../clips/b,sad\n")
    t = load_manifest(p, root=root)
    assert t.source.tolist() == [str(root / "clips/a"), str(root / "clips/b")]
    p = write(tmp_path, f"path,label\nclips/a,happy\n{tmp_path}/elsewhere/b,sad\n")
    with pytest.raises(DataError, match=r"m\.csv:3: path '.*elsewhere/b' leaves the root"):
        load_manifest(p, root=root)
    # without a root the user set, absolute paths and .. are the user's business
    assert load_manifest(p).source[1] == f"{tmp_path}/elsewhere/b"
    with pytest.raises(DataError, match="folder not found"):
        load_manifest(p, root=tmp_path / "nope")


def test_errors_name_file_and_line(tmp_path):
    cases = {
        "path,label\na,happy\nb\n": r":3: 1 cells, expected 2",
        "path,happy,sad\na,1,1\nb,x,1\n": r":3: happy 'x' is not a number",
        "path,happy,sad\na,1,1\nb,0,0\n": r":3: votes are all zero",
        "path,happy,sad\na,1,1\nb,inf,0\n": r":3: a vote is NaN or infinite",
        "path,happy,sad\na,1,1\nb,,2\n": r":3: some vote cells are empty",
        "path,label,fold\na,happy,1\nb,sad,x\n": r":3: fold 'x' is not an integer",
        "path,label,fold\na,happy,1\nb,sad,-1\n": r":3: fold -1 out of range",
        "path,label\na,happy\nb,9\n": r":3: label index 9 out of range",
        "path,split\na,train\nb,holdout\n": r":3: split 'holdout' unknown",
        "path,label\na,happy\n,sad\n": r":3: empty path",
        "path,label\na,happy\nb,sad\na/,sad\n": r":4: duplicate clip id 'a', first given on line 2",
        "label\nhappy\n": r".*no 'path' column",
        "path,label,Label\na,happy,sad\n": r".*column 'Label' appears twice",
        "path,happy,joy\na,1,1\n": r".*two vote columns name the same class",
        "": r".*empty manifest",
        "path,num_frames\nx.jpg,5\n": r":2: a still image has num_frames 5",
    }
    for text, pattern in cases.items():
        p = write(tmp_path, text)
        with pytest.raises(DataError, match=r"m\.csv" + pattern):
            load_manifest(p)
    with pytest.raises(DataError, match=r"nope\.csv: manifest not found"):
        load_manifest(tmp_path / "nope.csv")


def test_vote_sheet(tmp_path):
    p = write(tmp_path, "video_name,Happiness,Sadness,neutral\n001.mp4,1,2,3\n/002/,0,0,5\n", "v.csv")
    s = read_vote_sheet(p, classes=("sad", "happy", "neutral"))
    assert s.clip_id.tolist() == ["001", "002"]
    assert s.votes.tolist() == [[2, 1, 3], [0, 0, 5]]
    p = write(tmp_path, "id,happy,sad\n001,1,2\n002,,\n", "v.csv")
    with pytest.raises(DataError, match=r"v\.csv:3: row without votes"):
        read_vote_sheet(p)
    p = write(tmp_path, "id happy sad\n001 1 2\n001.mp4 3 4\n", "v.txt")
    with pytest.raises(DataError, match=r"v\.txt:3: duplicate clip id '001', first given on line 2"):
        read_vote_sheet(p)
