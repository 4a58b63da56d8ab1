"""Generated malformed inputs: every case ends in a DataError naming file and line.

Hypothesis writes a valid manifest / split file / vote sheet / list file, breaks one row in
one way (wrong cell count, unknown class name, NaN / negative / all-zero votes, duplicate
id, a path leaving the --root, non-UTF-8 bytes, ...), and checks that loading raises
:class:`DataError` whose message starts with ``<file>:<line of the broken row>`` — never
another exception, never a table. The unbroken file must load with the labels it names.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfer.data.corpora.ferv39k import load_ferv39k
from dfer.data.corpora.mafw import load_mafw
from dfer.data.corpora.manifest import load_manifest, read_vote_sheet
from dfer.emotions import BASIC7, MAFW11
from dfer.errors import DataError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ROW_CORRUPTIONS = ["extra_cell", "missing_cell", "nan", "negative", "all_zero", "partly_empty", "not_number",
                   "duplicate", "escape_root", "non_utf8", "bad_label", "bad_fold"]


@st.composite
def manifests(draw):
    k = draw(st.integers(2, 7))
    classes = draw(st.permutations(BASIC7))[:k]
    spelled = [draw(st.sampled_from([c, c.upper(), c.capitalize()])) for c in classes]
    n = draw(st.integers(1, 6))
    votes = draw(st.lists(st.lists(st.integers(0, 10), min_size=k, max_size=k).filter(lambda v: sum(v) > 0),
                          min_size=n, max_size=n))
    labels = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
    folds = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    quoted = draw(st.booleans())  # quotes send the file through the csv module instead of the fast path
    return spelled, votes, labels, folds, quoted


def _write_manifest(d: Path, spelled, votes, labels, folds, quoted) -> tuple[Path, list[list[str]]]:
    rows = [[f"clips/{i:03d}", lab, *map(str, v), str(f)] for i, (v, lab, f) in enumerate(zip(votes, labels, folds))]
    return d / "m.csv", [["path", "label", *spelled, "fold"]] + rows


def _dump(path: Path, rows: list[list[str]], quoted: bool, raw_line: dict[int, bytes] | None = None) -> None:
    q = (lambda c: f'"{c}"') if quoted else (lambda c: c)
    lines = [",".join(q(c) for c in r).encode() for r in rows]
    for i, b in (raw_line or {}).items():
        lines[i] = b
    path.write_bytes(b"\n".join(lines) + b"\n")


@SETTINGS
@given(m=manifests())
def test_valid_manifest_loads_with_named_labels(m):
    spelled, votes, labels, folds, quoted = m
    with tempfile.TemporaryDirectory() as d:
        path, rows = _write_manifest(Path(d), *m)
        _dump(path, rows, quoted)
        t = load_manifest(path)
    assert [t.classes[k] for k in t.label] == labels
    assert t.classes == tuple(c.lower() for c in spelled)
    np.testing.assert_array_equal(t.votes, np.array(votes, np.float32))
    assert t.fold.tolist() == folds


@SETTINGS
@given(m=manifests(), how=st.sampled_from(ROW_CORRUPTIONS), data=st.data())
def test_malformed_manifest_row_names_file_and_line(m, how, data):
    spelled, votes, labels, folds, quoted = m
    with tempfile.TemporaryDirectory() as d:
        path, rows = _write_manifest(Path(d), *m)
        r = data.draw(st.integers(1, len(rows) - 1), label="row")
        k = len(spelled)
        v = data.draw(st.integers(2, 1 + k), label="vote column")
        raw = None
        root = None
        if how == "extra_cell":
            rows[r].append("1")
        elif how == "missing_cell":
            rows[r].pop()
        elif how == "nan":
            rows[r][v] = data.draw(st.sampled_from(["nan", "NaN", "inf", "-inf"]))
        elif how == "negative":
            rows[r][v] = data.draw(st.sampled_from(["-1", "-0.5", "-3e2"]))
        elif how == "all_zero":
            rows[r][2:2 + k] = ["0"] * k
        elif how == "partly_empty":
            if k == 1:
                return
            rows[r][v] = ""
        elif how == "not_number":
            rows[r][v] = data.draw(st.sampled_from(["x", "1,5", "one", "1..2", "--1"]))
            if rows[r][v] == "1,5" and not quoted:
                rows[r][v] = "1;5"
        elif how == "duplicate":
            if len(rows) < 3:
                return
            other = 1 if r != 1 else 2
            rows[max(r, other)][0] = rows[min(r, other)][0] + data.draw(st.sampled_from(["", "/"]))
            r = max(r, other)
        elif how == "escape_root":
            root = Path(d) / "root"
            root.mkdir()
            rows[r][0] = data.draw(st.sampled_from(["../outside", "clips/../../x", "/etc/passwd", f"{d}/elsewhere"]))
        elif how == "non_utf8":
            line = ",".join(rows[r]).encode()
            cut = data.draw(st.integers(0, len(line)))
            raw = {r: line[:cut] + data.draw(st.sampled_from([b"\xff", b"\xc3(", b"\xe9", b"\x80"])) + line[cut:]}
        elif how == "bad_label":
            rows[r][1] = data.draw(st.sampled_from(["hapy", "boredom", "7", "99", "-2", "contempt"]))
        elif how == "bad_fold":
            rows[r][-1] = data.draw(st.sampled_from(["x", "-1", "128", "1.5"]))
        _dump(path, rows, quoted, raw)
        with pytest.raises(DataError) as e:
            load_manifest(path, root=root)
    assert str(e.value).startswith(f"{path}:{r + 1}: "), (how, str(e.value))


@SETTINGS
@given(m=manifests(), bad=st.sampled_from(["hapy", "Sadd", "joyfull", "valence", "happy sad", "neutral2"]))
def test_unknown_class_name_in_header(m, bad):
    spelled, *_ = m
    with tempfile.TemporaryDirectory() as d:
        path, rows = _write_manifest(Path(d), *m)
        rows[0][2] = bad
        _dump(path, rows, m[-1])
        with pytest.raises(DataError, match=rf"^{path}: unknown column '{bad}'"):
            load_manifest(path)


# ------------------------------------------------------------------------------ vote sheets
@SETTINGS
@given(m=manifests(), how=st.sampled_from(["nan", "negative", "all_zero", "duplicate", "wrong_count", "non_utf8",
                                           "empty_row"]), data=st.data())
def test_malformed_vote_sheet(m, how, data):
    spelled, votes, *_ = m
    k = len(spelled)
    rows = [["clip_id", *spelled]] + [[f"Scene/Happy/{i:04d}", *map(str, v)] for i, v in enumerate(votes)]
    r = data.draw(st.integers(1, len(rows) - 1))
    raw = None
    if how == "nan":
        rows[r][data.draw(st.integers(1, k))] = "nan"
    elif how == "negative":
        rows[r][data.draw(st.integers(1, k))] = "-2"
    elif how in ("all_zero", "empty_row"):
        rows[r][1:] = ["0" if how == "all_zero" else ""] * k
    elif how == "duplicate":
        if len(rows) < 3:
            return
        rows[2][0] = rows[1][0] + ".mp4"
        r = 2
    elif how == "wrong_count":
        rows[r] = rows[r][:-1]
    elif how == "non_utf8":
        raw = {r: ",".join(rows[r]).encode() + b"\xfe"}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "votes.csv"
        _dump(path, rows, False, raw)
        with pytest.raises(DataError) as e:
            read_vote_sheet(path)
    assert str(e.value).startswith(f"{path}:{r + 1}: "), (how, str(e.value))


# ------------------------------------------------------------------------------ split files
FERV_LINES = ["Action/Sad/0010 Sad", "Action/Happy/0011 Happy", "Crime/Fear/0003 Fear", "Crime/Angry/0004 Angry"]


@SETTINGS
@given(how=st.sampled_from(["fields", "path", "unknown", "contradicts", "duplicate", "non_utf8", "index"]),
       r=st.integers(0, len(FERV_LINES) - 1), data=st.data())
def test_malformed_ferv39k_split(how, r, data):
    lines = [ln.encode() for ln in FERV_LINES]
    clip, name = FERV_LINES[r].split()
    if how == "fields":
        lines[r] = data.draw(st.sampled_from([clip, f"{clip} {name} extra", f"{clip},{name}"])).encode()
    elif how == "path":
        lines[r] = data.draw(st.sampled_from([f"Action/{clip.split('/')[-1]} {name}", f"A/B/C/D {name}",
                                              f"Action//0001 {name}"])).encode()
    elif how == "unknown":
        lines[r] = f"{clip} {data.draw(st.sampled_from(['Bored', 'Hapy', 'Calm']))}".encode()
    elif how == "contradicts":
        other = next(c for c in BASIC7 if c != name.lower())
        lines[r] = f"{clip} {other}".encode()
    elif how == "duplicate":
        lines.append(lines[r])
        r = len(lines) - 1
    elif how == "non_utf8":
        lines[r] = lines[r] + b"\xff"
    elif how == "index":
        lines[r] = f"{clip} 3".encode()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "FERV39K"
        (root / "2_ClipsforFaceCrop").mkdir(parents=True)
        setup = root / "4_setups" / "All_scenes"
        setup.mkdir(parents=True)
        (setup / "train_All.csv").write_bytes(b"\n".join(lines) + b"\n")
        (setup / "test_All.csv").write_text("Crime/Disgust/0021 Disgust\n")
        with pytest.raises(DataError) as e:
            load_ferv39k(root)
    assert str(e.value).startswith(f"{setup / 'train_All.csv'}:{r + 1}: "), (how, str(e.value))


@SETTINGS
@given(how=st.sampled_from(["fields", "unknown_clip", "contradicts", "non_utf8"]), r=st.integers(0, 2),
       data=st.data())
def test_malformed_mafw_split(how, r, data):
    single = [("00001", "anger"), ("00002", "happiness"), ("00003", "contempt")]
    lines = [f"{c}.mp4 {lab}".encode() for c, lab in single]
    if how == "fields":
        lines[r] = data.draw(st.sampled_from([b"00001.mp4", b"00001.mp4 anger x"]))
    elif how == "unknown_clip":
        lines[r] = b"09999.mp4 anger"
    elif how == "contradicts":
        c, lab = single[r]
        lines[r] = f"{c}.mp4 {next(x for x in MAFW11 if x != {'anger': 'angry', 'happiness': 'happy'}.get(lab, lab))}".encode()
    elif how == "non_utf8":
        lines[r] = b"\xc3" + lines[r]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "MAFW"
        (root / "Labels").mkdir(parents=True)
        (root / "Labels/single_label.txt").write_text("".join(f"{c}.mp4 {lab} cap\n" for c, lab in single))
        (root / "data/clips").mkdir(parents=True)
        for k in range(1, 6):
            s = root / "Train & Test Set/single/no_caption" / f"set_{k}"
            s.mkdir(parents=True)
            (s / "train.txt").write_text("")
            (s / "test.txt").write_bytes(b"\n".join(lines) + b"\n" if k == 1 else b"")
        with pytest.raises(DataError) as e:
            load_mafw(root)
    path = root / "Train & Test Set/single/no_caption/set_1/test.txt"
    assert str(e.value).startswith(f"{path}:{r + 1}: "), (how, str(e.value))


# ------------------------------------------------------------------------------ list files
@SETTINGS
@given(how=st.sampled_from(["fields", "count", "label_range", "label_text", "escape_root", "non_utf8"]),
       r=st.integers(0, 3), data=st.data())
def test_malformed_list_file(how, r, data):
    listfile = pytest.importorskip("dfer.data.corpora.listfile",
                                   reason="dfer.data.corpora.listfile is written by another helper")
    lines = [f"/data/DFEW/{i:05d} {10 + i} {i % 7}".encode() for i in range(1, 5)]
    if how == "fields":
        lines[r] = data.draw(st.sampled_from([b"/data/DFEW/00001 10", b"/data/DFEW/00001 10 1 2"]))
    elif how == "count":
        lines[r] = f"/data/DFEW/{r:05d} {data.draw(st.sampled_from(['x', '-3', '1.5']))} 1".encode()
    elif how == "label_range":
        lines[r] = f"/data/DFEW/{r:05d} 10 {data.draw(st.sampled_from(['7', '99', '-1']))}".encode()
    elif how == "label_text":
        lines[r] = f"/data/DFEW/{r:05d} 10 x".encode()
    elif how == "escape_root":
        lines[r] = f"/data/DFEW/../../etc/{r:05d} 10 1".encode()
    elif how == "non_utf8":
        lines[r] = lines[r] + b"\xff"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "list.txt"
        path.write_bytes(b"\n".join(lines) + b"\n")
        (Path(d) / "root").mkdir()
        with pytest.raises(DataError) as e:
            # with strip_prefix the remainder of each path is kept whole, so `..` could escape
            listfile.load_listfile(path, root=Path(d) / "root", strip_prefix="/data/DFEW", classes="basic7")
    assert f"{path}:{r + 1}" in str(e.value), (how, str(e.value))
