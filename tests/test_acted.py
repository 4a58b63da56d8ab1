"""Acted-emotion corpora labelled by their file names (dfer.data.corpora.acted).

Fixtures in tests/data/acted/: three real Javanese clips (MIT), RAVDESS and CREMA-D name
fixtures (empty files named as each corpus names its clips) and twelve real rows of
CREMA-D's vote table. Everything else is built in tmp_path. Labels are checked by *name*,
votes against the real rows read here independently of the adapter.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfer.cli import main
from dfer.data.corpora.acted import load_acted, load_cremad, load_javanese, load_ravdess, read_cremad_votes
from dfer.data.corpora.registry import load_source, option_values
from dfer.data.stats import compute_stats, format_stats
from dfer.data.table import ClipKind
from dfer.emotions import BASIC7, FERPLUS8
from dfer.errors import ConfigError, DataError

DATA = Path(__file__).resolve().parent / "data" / "acted"
JAVANESE, RAVDESS, CREMAD = DATA / "javanese", DATA / "ravdess", DATA / "cremad"
VOTES = CREMAD / "processedResults" / "tabulatedVotes.csv"
CREMAD_COLUMNS = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}


def names_of(t) -> dict[str, str]:
    """clip id -> class name of its hard label."""
    return {cid: t.classes[k] for cid, k in zip(t.clip_id.tolist(), t.label.tolist())}


def touch(root: Path, *names: str) -> Path:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    return root


def frames(folder: Path, n: int = 2) -> None:
    folder.mkdir(parents=True)
    for i in range(1, n + 1):
        Image.new("RGB", (4, 4)).save(folder / f"{i:05d}.jpg")


# ------------------------------------------------------------------------------ javanese
def test_javanese_real_clips_labelled_by_name_in_any_class_order():
    t = load_javanese(JAVANESE)
    expected = {"01-01-03_01.mp4": "happy", "04-02-04_01.mp4": "surprise", "07-03-01_01.mp4": "neutral"}
    assert names_of(t) == expected
    assert names_of(load_javanese(JAVANESE, classes="ferplus8")) == expected
    assert t.classes == BASIC7 and load_javanese(JAVANESE, classes="ferplus8").classes == FERPLUS8
    assert dict(zip(t.clip_id.tolist(), t.group.tolist())) == {
        "01-01-03_01.mp4": "01", "04-02-04_01.mp4": "04", "07-03-01_01.mp4": "07"}
    assert (t.kind == ClipKind.VIDEO).all() and (t.fold == 0).all() and np.isnan(t.votes).all()
    assert all(Path(s).is_absolute() and Path(s).is_file() for s in t.source)
    assert t.meta["fields"]["sentence"]["04-02-04_01.mp4"] == "02"
    assert sorted(Path(p).name for p in t.meta["ignored"]) == ["LICENSE", "README.md"]


def test_javanese_codes_can_be_changed_and_check_and_stats_work_end_to_end(tmp_path, capsys):
    t = load_source("javanese", JAVANESE, codes="04=drop")
    assert names_of(t) == {"01-01-03_01.mp4": "happy", "07-03-01_01.mp4": "neutral"}
    assert t.meta["dropped"] == {"04": 1}
    # every code must land in the class set, or be dropped: never a clip quietly unlabelled
    with pytest.raises(ConfigError, match=r"codes: 02 means sad, which is not one of the classes .*\(02=drop\)"):
        load_source("javanese", JAVANESE, classes="happy,neutral", codes="04=drop")
    t = load_source("javanese", JAVANESE, classes="happy,neutral", codes="02=drop,04=drop,05=drop,06=drop")
    assert t.classes == ("happy", "neutral")
    assert names_of(t) == {"01-01-03_01.mp4": "happy", "07-03-01_01.mp4": "neutral"}
    # the real clips decode: dfer data check reads them and their frame counts
    assert main(["data", "check", str(JAVANESE), "--kind", "javanese", "--cache-dir", str(tmp_path / "c")]) == 0
    assert "javanese: 3 clips checked" in capsys.readouterr().out
    text = format_stats(compute_stats(load_javanese(JAVANESE)))
    assert "javanese: 3 clips" in text and "3 classes present (7 in the class set), 3 actors" in text


# ------------------------------------------------------------------------------ ravdess
def test_ravdess_calm_is_neutral_by_default_drop_or_refused_as_a_class():
    t = load_ravdess(RAVDESS)
    got = names_of(t)
    assert got == {
        "Actor_01/01-01-01-01-01-01-01.mp4": "neutral", "Actor_01/02-01-02-01-01-01-01.mp4": "neutral",
        "Actor_01/01-01-03-02-01-01-01.mp4": "happy", "Actor_01/02-02-05-01-02-01-01.mp4": "angry",
        "Actor_02/01-01-02-02-02-02-02.mp4": "neutral", "Actor_02/02-01-08-01-01-01-02.mp4": "surprise",
        "Actor_02/01-01-07-01-01-02-02.mp4": "disgust"}
    assert set(t.group.tolist()) == {"01", "02"}
    assert sorted(Path(p).suffix for p in t.meta["ignored"]) == [".md", ".wav", ".wav"]  # audio-only, no face
    dropped = load_ravdess(RAVDESS, calm="drop")
    assert set(names_of(dropped)) == set(got) - {"Actor_01/02-01-02-01-01-01-01.mp4",
                                                 "Actor_02/01-01-02-02-02-02-02.mp4"}
    assert dropped.meta["dropped"] == {"02": 2}
    with pytest.raises(ConfigError, match="no calm class"):
        load_ravdess(RAVDESS, calm="keep")
    with pytest.raises(ConfigError, match="calm must be one of neutral, drop, keep"):
        load_ravdess(RAVDESS, calm="quiet")


def test_ravdess_modalities_keep_video_only_or_both_and_count_the_rest(tmp_path):
    only_video = load_ravdess(RAVDESS, modalities="02")
    assert {Path(c).name[:2] for c in only_video.clip_id} == {"02"} and len(only_video) == 3
    assert only_video.meta["not_selected"] == {"modality=01": 4}
    # from YAML `modalities: 02` arrives as the number 2; a command line's word is typed the same way
    assert option_values("ravdess", ["modalities=02"]) == {"modalities": 2}
    assert np.array_equal(load_source("ravdess", RAVDESS, modalities=2).clip_id, only_video.clip_id)
    # an audio-only recording saved under a video extension is left out and counted
    root = touch(tmp_path, "Actor_03/03-01-05-01-01-01-03.mp4", "Actor_03/01-01-05-01-01-01-03.mp4")
    t = load_ravdess(root)
    assert t.clip_id.tolist() == ["Actor_03/01-01-05-01-01-01-03.mp4"] and t.meta["not_selected"] == {"modality=03": 1}
    with pytest.raises(ConfigError, match="03 is audio only"):
        load_ravdess(RAVDESS, modalities="01,03")
    # one recording as both files (the same frames): read once, from the video-only file
    both = touch(tmp_path / "both", "Actor_04/01-01-05-01-01-01-04.mp4", "Actor_04/02-01-05-01-01-01-04.mp4",
                 "Actor_04/01-01-05-01-01-02-04.mp4")
    t = load_ravdess(both)
    assert t.clip_id.tolist() == ["Actor_04/01-01-05-01-01-02-04.mp4", "Actor_04/02-01-05-01-01-01-04.mp4"]
    assert t.meta["same_recording"] == 1
    assert len(load_ravdess(both, modalities="01")) == 2  # one modality: nothing to merge


# ------------------------------------------------------------------------------ cremad
def real_rows(condition_digit: str) -> dict[str, dict[str, int]]:
    """fileName -> {emotion: count} of the fixture's rows of one condition, read with csv."""
    with open(VOTES, newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["fileName"]: {CREMAD_COLUMNS[c]: int(r[c]) for c in CREMAD_COLUMNS}
            for r in rows if r[""].startswith(condition_digit)}


@pytest.mark.parametrize("condition,digit", [("face", "2"), ("voice", "1"), ("audiovisual", "3")])
def test_cremad_soft_labels_are_the_real_vote_counts_of_the_condition(condition, digit):
    t = load_cremad(CREMAD, votes=str(VOTES), **({} if condition == "face" else {"vote_condition": condition}))
    rows = real_rows(digit)
    assert len(t) == len(rows) == 4
    soft = t.soft_labels()
    for i, cid in enumerate(t.clip_id.tolist()):
        counts = rows[Path(cid).stem]
        total = sum(counts.values())
        for k, name in enumerate(t.classes):
            assert soft[i, k] == pytest.approx(counts.get(name, 0) / total, rel=1e-6, abs=1e-7), (cid, name)
    # the acted emotion stays the hard label, whatever the raters saw
    assert names_of(t) == {"VideoFlash/1001_DFA_ANG_XX.flv": "angry", "VideoFlash/1001_IEO_HAP_LO.flv": "happy",
                           "VideoFlash/1015_TIE_SAD_XX.flv": "sad", "VideoFlash/1091_IEO_DIS_MD.flv": "disgust"}


def test_cremad_face_votes_differ_from_voice_votes_and_from_the_acted_label():
    face = load_cremad(CREMAD, votes=str(VOTES))
    voice = load_cremad(CREMAD, votes=str(VOTES), vote_condition="voice")
    assert not np.array_equal(face.votes, voice.votes)
    dis = face.clip_id.tolist().index("VideoFlash/1091_IEO_DIS_MD.flv")
    assert face.classes[int(face.votes[dis].argmax())] == "sad"  # 9 of 11 face raters: sad
    assert face.meta["label_vote_disagreements"] >= 1 and face.meta["vote_condition"] == "face"
    hard_only = load_cremad(CREMAD, votes="off")
    assert np.isnan(hard_only.votes).all() and np.array_equal(hard_only.label, face.label)
    # a clone of CREMA-D holds its vote table beside the clips: read without being named,
    # from the clone or from its VideoFlash folder; a relative path is looked up under the root
    for found in (load_cremad(CREMAD), load_cremad(CREMAD / "VideoFlash"),
                  load_cremad(CREMAD, votes="processedResults/tabulatedVotes.csv")):
        assert np.array_equal(found.votes, face.votes)
    assert dict(zip(face.clip_id.tolist(), face.group.tolist()))["VideoFlash/1091_IEO_DIS_MD.flv"] == "1091"


def test_cremad_votes_join_frame_folders_too(tmp_path):
    """After `dfer preprocess` a clip is a folder of frames named like the video: same votes."""
    for name in ("1001_DFA_ANG_XX", "1091_IEO_DIS_MD"):
        frames(tmp_path / "faces" / name)
    (tmp_path / "faces" / "manifest.csv").write_text("path,num_frames\n")
    t = load_source("cremad", tmp_path, votes=str(VOTES), folds=2)
    rows = real_rows("2")
    assert (t.kind == ClipKind.FRAMES).all() and t.folds() == [1, 2]
    for cid, v in zip(t.clip_id.tolist(), t.votes):
        assert {c: int(x) for c, x in zip(t.classes, v) if x} == {c: n for c, n in rows[Path(cid).name].items() if n}


def edited_votes(tmp_path: Path, edit) -> Path:
    """A copy of the fixture's vote table with ``edit(lines)`` applied (lines without newline)."""
    lines = VOTES.read_text().splitlines()
    edit(lines)
    p = tmp_path / "tabulatedVotes.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def at(lines: list[str], row_id: str) -> int:
    return next(i for i, s in enumerate(lines) if s.startswith(f'"{row_id}"'))


def set_cell(lines, row_id: str, column: int, value: str) -> None:
    i = at(lines, row_id)
    cells = lines[i].split(",")
    cells[column] = value
    lines[i] = ",".join(cells)


def drop_column(lines, name: str) -> None:
    col = lines[0].split(",").index(f'"{name}"')
    lines[:] = [",".join(c for j, c in enumerate(s.split(",")) if j != col) for s in lines]


BAD_VOTES = {
    # name: (edit, the line named in the message or None, what the message says)
    "missing column": (lambda ls: drop_column(ls, "H"), None, r"no column H in the header"),
    "negative count": (lambda ls: set_cell(ls, "200062", 1, "-1"), 7, r"vote count A is '-1'; expected a whole number"),
    "fractional count": (lambda ls: set_cell(ls, "300002", 4, "0.5"), 10, r"vote count H is '0.5'"),
    "empty count": (lambda ls: set_cell(ls, "100062", 6, ""), 3, r"vote count S is empty"),
    "count not a number": (lambda ls: set_cell(ls, "201154", 2, '"x"'), 8, r"D 'x' is not a number"),
    "condition digit": (lambda ls: set_cell(ls, "107375", 0, '"407375"'), 5,
                        r"row id '407375': its first digit must be 1 \(voice\), 2 \(face\) or 3"),
    "conflicting duplicate": (lambda ls: ls.append(ls[at(ls, "200002")].replace(",0,0,0,9,1,0,", ",0,0,0,8,2,0,")),
                              14, r"'1001_IEO_HAP_LO' has a second row in the face condition \(first on line 6\)"),
}


@pytest.mark.parametrize("case", list(BAD_VOTES))
def test_cremad_bad_vote_table_is_one_error_naming_file_and_line(tmp_path, case):
    edit, line, says = BAD_VOTES[case]
    p = edited_votes(tmp_path, edit)
    with pytest.raises(DataError, match=says) as e:
        load_cremad(CREMAD, votes=str(p))
    assert str(e.value).startswith(f"{p}:{line}: " if line else f"{p}: ") and "\n" not in str(e.value)


def test_cremad_clip_without_a_row_of_the_condition_is_named(tmp_path):
    p = edited_votes(tmp_path, lambda ls: ls.pop(at(ls, "207375")))
    with pytest.raises(DataError, match=r"no row of the face condition .* 'VideoFlash/1091_IEO_DIS_MD.flv'") as e:
        load_cremad(CREMAD, votes=str(p))
    assert str(e.value).startswith(str(p))
    assert len(load_cremad(CREMAD, votes=str(p), vote_condition="voice")) == 4  # the voice rows are all there


def test_cremad_identical_duplicate_row_is_accepted_and_counted(tmp_path):
    p = edited_votes(tmp_path, lambda ls: ls.append(ls[at(ls, "200002")]))
    t = load_cremad(CREMAD, votes=str(p))
    assert t.meta["duplicate_vote_rows"] == 1
    assert np.array_equal(t.votes, load_cremad(CREMAD, votes=str(VOTES)).votes)
    assert read_cremad_votes(p).line["1001_IEO_HAP_LO"] == 6  # the first of the two rows


# ------------------------------------------------------------------------------ a user's own scheme
def own_tree(root: Path) -> Path:
    """sNN_<emotion word>_take<N>: videos, a frame folder, a nested folder and some clutter."""
    touch(root, "s01_joy_take1.mp4", "s01_anger_take1.avi", "s02_meh_take1.MOV", "nested/deeper/s03_joy_take2.webm",
          "s02_boring_take1.mp4", "notes.txt", "manifest.csv", ".hidden_s01_joy_take9.mp4", ".cache/s09_joy_take1.mp4")
    frames(root / "s03_anger_take1")
    return root


def test_own_pattern_with_codes_as_a_string(tmp_path):
    root = own_tree(tmp_path / "own")
    t = load_source("acted", root, pattern=r"(?P<actor>s\d+)_(?P<emotion>[a-z]+)_take(?P<take>\d)",
                    codes="joy=happiness, anger=angry ,meh=neutral,boring=drop", name="mine")
    assert t.name == "mine"
    assert names_of(t) == {"s01_joy_take1.mp4": "happy", "s01_anger_take1.avi": "angry", "s02_meh_take1.MOV": "neutral",
                           "nested/deeper/s03_joy_take2.webm": "happy", "s03_anger_take1": "angry"}
    kinds = dict(zip(t.clip_id.tolist(), t.kind.tolist()))
    assert kinds["s03_anger_take1"] == ClipKind.FRAMES and kinds["s02_meh_take1.MOV"] == ClipKind.VIDEO
    assert dict(zip(t.clip_id.tolist(), t.group.tolist()))["nested/deeper/s03_joy_take2.webm"] == "s03"
    assert t.meta["fields"] == {"take": {"s01_joy_take1.mp4": "1", "s01_anger_take1.avi": "1",
                                         "s02_meh_take1.MOV": "1", "nested/deeper/s03_joy_take2.webm": "2",
                                         "s03_anger_take1": "1"}}
    assert t.meta["dropped"] == {"boring": 1}
    assert sorted(Path(p).name for p in t.meta["ignored"]) == ["manifest.csv", "notes.txt"]


def test_numeric_codes_match_by_value_as_yaml_gives_them(tmp_path):
    root = touch(tmp_path, "a1-01.mp4", "a2-2.mp4", "a3-03.mp4")
    t = load_acted(root, pattern=r"a(?P<actor>\d)-(?P<emotion>\d+)", codes={1: "happy", "02": "sad", "3": None})
    assert names_of(t) == {"a1-01.mp4": "happy", "a2-2.mp4": "sad"}
    with pytest.raises(ConfigError, match="code '01' given twice"):
        load_acted(root, pattern=r"a(?P<actor>\d)-(?P<emotion>\d+)", codes="1=happy,01=sad")


def test_folds_by_actor_never_split_an_actor_over_several_k(tmp_path):
    # ten actors (numbers sort by value: 2 before 10), 1 to 4 clips each
    rng = np.random.default_rng(0)
    actors = [str(a) for a in (2, 10, 3, 7, 11, 1, 5, 30, 4, 9)]
    for a in actors:
        for take in range(int(rng.integers(1, 5))):
            touch(tmp_path, f"p{a}_{take}_happy.mp4")
    order = sorted(actors, key=int)
    for k in range(2, 11):
        t = load_acted(tmp_path, pattern=r"p(?P<actor>\d+)_\d_(?P<emotion>[a-z]+)", codes="happy=happy", folds=k)
        fold_of = {}
        for a, f in zip(t.group.tolist(), t.fold.tolist()):
            assert fold_of.setdefault(a, f) == f, f"actor {a} in folds {fold_of[a]} and {f} (k={k})"
        assert sorted(set(fold_of.values())) == list(range(1, k + 1))
        assert [fold_of[a] for a in order] == sorted(fold_of[a] for a in order)  # contiguous runs in actor order
        sizes = np.bincount(list(fold_of.values()))[1:]
        assert sizes.max() - sizes.min() <= 1
        for f in t.folds():  # each fold's test actors are absent from its training clips
            train, test = t.fold_split(f)
            assert not set(train.group.tolist()) & set(test.group.tolist())
    with pytest.raises(DataError, match="folds=11: only 10 actor"):
        load_acted(tmp_path, pattern=r"p(?P<actor>\d+)_\d_(?P<emotion>[a-z]+)", codes="happy=happy", folds=11)
    with pytest.raises(ConfigError, match="folds must be 0"):
        load_acted(tmp_path, pattern=r"p(?P<actor>\d+)_\d_(?P<emotion>[a-z]+)", codes="happy=happy", folds=1)
    with pytest.raises(ConfigError, match=r"no \(\?P<actor>...\) group"):
        load_acted(tmp_path, pattern=r"p\d+_\d_(?P<emotion>[a-z]+)", codes="happy=happy", folds=2)


# ------------------------------------------------------------------------------ bad input
PATTERN = r"(?P<actor>s\d+)_(?P<emotion>[a-z]+)"


def bad_tree(root: Path, bad: str) -> Path:
    """Two good clips and one bad: a file name, or a frame folder when ``bad`` ends in /."""
    touch(root, "s01_joy.mp4", "s02_joy.mp4")
    frames(root / bad) if bad.endswith("/") else touch(root, bad)
    return root


def test_bad_name_stops_naming_the_file_or_is_skipped_with_its_reason(tmp_path):
    cases = {"holiday.mp4": r"/holiday.mp4: file name 'holiday' does not match the pattern ",
             "s03_grief.mp4": r"/s03_grief.mp4: emotion code 'grief' in the file name is not one of the codes joy",
             "extracted/clip_7/": r"/extracted/clip_7: folder name 'clip_7' does not match"}  # frames named otherwise
    for k, (bad, says) in enumerate(cases.items()):
        with pytest.raises(DataError, match=says):
            load_acted(bad_tree(tmp_path / f"case{k}", bad), pattern=PATTERN, codes="joy=happy")
        bad_tree(tmp_path / "all", bad)
    t = load_acted(tmp_path / "all", pattern=PATTERN, codes="joy=happy", on_bad_name="skip")
    assert t.clip_id.tolist() == ["s01_joy.mp4", "s02_joy.mp4"]
    reasons = {Path(s["path"]).name: s["reason"] for s in t.meta["skipped"]}
    assert set(reasons) == {"holiday.mp4", "s03_grief.mp4", "clip_7"}
    assert "code 'grief'" in reasons["s03_grief.mp4"] and "does not match" in reasons["clip_7"]
    assert "3 clips skipped" in format_stats(compute_stats(t))


def test_folder_without_clips_and_bad_options_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    touch(tmp_path, "docs/readme.txt")
    for root in (tmp_path / "empty", tmp_path / "docs"):
        with pytest.raises(DataError, match=r"no clip found") as e:
            load_javanese(root)
        assert "\n" not in str(e.value)
    touch(tmp_path, "only/s01_meh.mp4")
    with pytest.raises(DataError, match=r"none of its 1 clips is left \(1 dropped\)"):
        load_acted(tmp_path / "only", pattern=PATTERN, codes="meh=drop")
    with pytest.raises(DataError, match="folder not found"):
        load_javanese(tmp_path / "nowhere")
    bad_options = [
        (dict(pattern=r"(?P<actor>s\d+)_(?P<mood>[a-z]+)", codes="joy=happy"), r"no \(\?P<emotion>...\) group"),
        (dict(pattern=r"(?P<emotion>[a-z+", codes="joy=happy"), "is not a regular expression"),
        (dict(pattern=PATTERN, codes="joy=joyous"), r"codes: joy=joyous: unknown emotion name 'joyous'"),
        (dict(pattern=PATTERN, codes="joyhappy"), r"'joyhappy' is not KEY=VALUE"),
        (dict(pattern=PATTERN, codes="joy=contempt"), r"joy means contempt, which is not one of the classes"),
        (dict(pattern=PATTERN, codes="joy=happy", on_bad_name="ignore"), "on_bad_name must be error or skip"),
        (dict(pattern=PATTERN, codes="joy=happy", select="channel=01"), r"select names \['channel'\]"),
    ]
    for options, says in bad_options:
        with pytest.raises(ConfigError, match=says):
            load_acted(tmp_path / "only", **options)


def test_registry_needs_pattern_and_codes_and_checks_plain_types(tmp_path):
    with pytest.raises(ConfigError, match=r"'acted' needs the option\(s\) \['codes', 'pattern'\]"):
        load_source("acted", JAVANESE)
    with pytest.raises(ConfigError, match="option folds expects int, got 'two'"):
        load_source("javanese", JAVANESE, folds="two")
    assert option_values("cremad", ["folds=3", "votes=null", "vote_condition=voice"]) == {
        "folds": 3, "votes": None, "vote_condition": "voice"}
    assert option_values("acted", [r"pattern=(?P<emotion>\d+)-[a-z]: x"]) == {"pattern": r"(?P<emotion>\d+)-[a-z]: x"}


def test_cli_bad_name_exits_2_with_one_line_and_no_traceback(tmp_path, capsys):
    root = tmp_path / "clips"
    root.mkdir()
    for f in JAVANESE.glob("*.mp4"):
        (root / f.name).symlink_to(f)
    touch(root, "01-01-03_01 (copy).mp4")
    assert main(["data", "stats", str(root), "--kind", "javanese", "-o", "folds=2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{root}/01-01-03_01 (copy).mp4: file name '01-01-03_01 (copy)' does not match AA-SS-EE_RR" in err
    assert not (tmp_path / "o").exists()
