"""Corpus adapters on tiny trees in each corpus's exact on-disk layout.

Every tree is built by the test in tmp_path. Labels are checked by *name* against what the
tree says, across corpora whose class orders differ (FERV39K alphabetical vs DFEW order,
MAFW official vs community order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfer.data.corpora.afew import load_afew
from dfer.data.corpora.ferv39k import load_ferv39k
from dfer.data.corpora.mafw import load_mafw
from dfer.data.corpora.registry import detect_kind, load_corpus, load_source
from dfer.data.table import ClipKind, Split
from dfer.emotions import BASIC7, BASIC7_ALPHABETICAL, MAFW11, MAFW11_COMMUNITY
from dfer.errors import ConfigError, DataError


def frames(folder: Path, n: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(folder / f"{i:05d}.jpg")


# ------------------------------------------------------------------------------ FERV39K
FERV_TRAIN = ["Action/Sad/0010 Sad", "Action/Happy/0011 Happy", "Crime/Fear/0003 Fear", "Crime/Angry/0004 Angry"]
FERV_TEST = ["Action/Neutral/0020 Neutral", "Crime/Disgust/0021 Disgust", "Crime/Surprise/0022 Surprise"]


def ferv39k_tree(root: Path, videos: bool = False) -> Path:
    for line in FERV_TRAIN + FERV_TEST:
        clip = line.split()[0]
        if videos:
            p = root / "0_7_LabelClips" / f"{clip}.mp4"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
        else:
            frames(root / "2_ClipsforFaceCrop" / clip, 2)
    setup = root / "4_setups" / "All_scenes"
    setup.mkdir(parents=True)
    (setup / "train_All.csv").write_text("\n".join(FERV_TRAIN) + "\n")
    (setup / "test_All.csv").write_text("\n".join(FERV_TEST) + "\n")
    return root


def test_ferv39k_frames_splits_scenes_and_labels_by_name(tmp_path):
    t = load_ferv39k(ferv39k_tree(tmp_path / "FERV39K"))
    assert len(t) == 7
    got = {cid: t.classes[lab] for cid, lab in zip(t.clip_id, t.label)}
    for line in FERV_TRAIN + FERV_TEST:
        clip, name = line.split()
        assert got[clip] == name.lower()
    train = set(t.split_part("train").clip_id)
    assert train == {line.split()[0] for line in FERV_TRAIN}
    assert set(t.split_part("test").clip_id) == {line.split()[0] for line in FERV_TEST}
    assert dict(zip(t.clip_id, t.group))["Crime/Fear/0003"] == "Crime"
    assert (t.kind == ClipKind.FRAMES).all()
    assert t.source[list(t.clip_id).index("Action/Sad/0010")].endswith("2_ClipsforFaceCrop/Action/Sad/0010")
    assert np.isnan(t.votes).all()


def test_ferv39k_alphabetical_vs_dfew_order_same_names(tmp_path):
    root = ferv39k_tree(tmp_path / "F")
    a = load_ferv39k(root, classes=BASIC7)
    b = load_ferv39k(root, classes=BASIC7_ALPHABETICAL)
    names_a = [a.classes[k] for k in a.label]
    names_b = [b.classes[k] for k in b.label]
    assert names_a == names_b
    # the indices themselves differ (otherwise the test would prove nothing)
    assert not np.array_equal(a.label, b.label)


def test_ferv39k_videos_and_vote_sheet(tmp_path):
    root = ferv39k_tree(tmp_path / "F", videos=True)
    sheet = tmp_path / "plus.csv"
    # classes in another order than the corpus, ids with .mp4: both mapped
    sheet.write_text("clip,fear,happy,sad,neutral,angry,surprise,disgust\n"
                     "Action/Sad/0010.mp4,1,0,8,1,0,0,0\n"
                     "Crime/Fear/0003,6,0,2,2,0,0,0\n")
    t = load_ferv39k(root, votes=sheet)
    assert (t.kind == ClipKind.VIDEO).all()
    assert t.source[0].endswith(".mp4")
    i = list(t.clip_id).index("Action/Sad/0010")
    soft = t.soft_labels()
    assert soft[i, BASIC7.index("sad")] == pytest.approx(0.8)
    assert soft[i, BASIC7.index("fear")] == pytest.approx(0.1)
    j = list(t.clip_id).index("Crime/Fear/0003")
    assert soft[j, BASIC7.index("fear")] == pytest.approx(0.6)
    assert int(t.has_votes.sum()) == 2


def test_ferv39k_vote_sheet_with_unknown_clip_names_line(tmp_path):
    root = ferv39k_tree(tmp_path / "F")
    sheet = tmp_path / "plus.csv"
    sheet.write_text("id," + ",".join(BASIC7) + "\nAction/Sad/0010,0,8,2,0,0,0,0\nAction/Sad/9999,0,8,2,0,0,0,0\n")
    with pytest.raises(DataError, match=r"plus\.csv:3: clip id 'Action/Sad/9999' is not in the corpus"):
        load_ferv39k(root, votes=sheet)


def test_ferv39k_label_contradicting_folder(tmp_path):
    root = ferv39k_tree(tmp_path / "F")
    (root / "4_setups/All_scenes/test_All.csv").write_text("Action/Neutral/0020 Neutral\nCrime/Disgust/0021 Angry\n")
    with pytest.raises(DataError, match=r"test_All\.csv:2: label 'Angry' contradicts the emotion folder"):
        load_ferv39k(root)


def test_ferv39k_scan_without_setups(tmp_path):
    root = tmp_path / "F"
    frames(root / "2_ClipsforFaceCrop/Action/Happy/0001", 1)
    frames(root / "2_ClipsforFaceCrop/Action/Sad/0002", 1)
    t = load_ferv39k(root)
    assert [t.classes[k] for k in t.label] == ["happy", "sad"]
    assert (t.split == Split.NONE).all()


# ------------------------------------------------------------------------------ AFEW
def test_afew_train_val_and_val_as_test(tmp_path):
    root = tmp_path / "AFEW"
    for part, cls, name in [("Train_AFEW", "Angry", "000046280.avi"), ("Train_AFEW", "Happy", "000150"),
                            ("Val_AFEW", "Surprise", "001.avi"), ("Val_AFEW", "Disgust", "002.avi")]:
        p = root / part / cls / name
        if p.suffix:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
        else:
            frames(p, 2)
    (root / "Val_AFEW" / "Disgust" / "notes.txt").write_text("x")
    t = load_afew(root)
    names = {cid: t.classes[k] for cid, k in zip(t.clip_id, t.label)}
    assert names == {"train/Angry/000046280.avi": "angry", "train/Happy/000150": "happy",
                     "val/Surprise/001.avi": "surprise", "val/Disgust/002.avi": "disgust"}
    assert list(t.kind) == [ClipKind.VIDEO, ClipKind.FRAMES, ClipKind.VIDEO, ClipKind.VIDEO]
    assert sorted(t.split_part("val").clip_id) == ["val/Disgust/002.avi", "val/Surprise/001.avi"]
    assert t.meta["ignored"] == [str(root / "Val_AFEW" / "Disgust" / "notes.txt")]
    test = load_afew(root, parts="val", val_as_test=True)
    assert len(test) == 2 and (test.split == Split.TEST).all()


def test_afew_unknown_class_folder(tmp_path):
    (tmp_path / "Val_AFEW" / "Bored").mkdir(parents=True)
    with pytest.raises(DataError, match=r"Val_AFEW/Bored.*unknown class name 'Bored'"):
        load_afew(tmp_path, parts="val")


# ------------------------------------------------------------------------------ MAFW
MAFW_SINGLE = [("00001", "anger"), ("00002", "happiness"), ("00003", "contempt"), ("00004", "helplessness"),
               ("00005", "sadness")]


def mafw_tree(root: Path, videos: bool = True) -> Path:
    (root / "Labels").mkdir(parents=True)
    (root / "Labels/single_label.txt").write_text(
        "".join(f"{c}.mp4  {lab}  a caption, with words\n" for c, lab in MAFW_SINGLE))
    (root / "Labels/multi_label.txt").write_text(
        "00001.mp4\tanger_disgust_anxiety\tcaption\n00009.mp4\tfear_surprise\tcaption\n")
    if videos:
        (root / "data/clips").mkdir(parents=True)
        for c, _ in MAFW_SINGLE:
            (root / f"data/clips/{c}.mp4").write_bytes(b"")
    else:
        for c, _ in MAFW_SINGLE:
            frames(root / f"data/faces/{c}", 2)
    folds = {1: ["00001", "00002"], 2: ["00003"], 3: ["00004"], 4: ["00005"], 5: []}
    lab = dict(MAFW_SINGLE)
    for k, test in folds.items():
        d = root / "Train & Test Set/single/no_caption" / f"set_{k}"
        d.mkdir(parents=True)
        (d / "test.txt").write_text("".join(f"{c}.mp4 {lab[c]}\n" for c in test))
        (d / "train.txt").write_text("".join(f"{c}.mp4 {lab[c]}\n" for c in lab if c not in test))
    return root


def test_mafw_labels_folds_and_multi_hot(tmp_path):
    t = load_mafw(mafw_tree(tmp_path / "MAFW"))
    assert [t.classes[k] for k in t.label] == ["angry", "happy", "contempt", "helplessness", "sad"]
    assert t.fold.tolist() == [1, 1, 2, 3, 4]
    hot = {t.classes[k] for k in np.flatnonzero(t.multi_hot[0])}
    assert hot == {"angry", "disgust", "anxiety"}
    assert t.multi_hot[1].sum() == 1 and t.multi_hot[1, t.label[1]]
    assert t.meta["compound_only"] == 1
    assert t.source[0].endswith("data/clips/00001.mp4") and (t.kind == ClipKind.VIDEO).all()
    train, test = t.fold_split(1)
    assert sorted(test.clip_id) == ["00001", "00002"] and len(train) == 3


def test_mafw_official_vs_community_order_same_names(tmp_path):
    root = mafw_tree(tmp_path / "MAFW", videos=False)
    a = load_mafw(root, classes=MAFW11)
    b = load_mafw(root, classes=MAFW11_COMMUNITY)
    assert [a.classes[k] for k in a.label] == [b.classes[k] for k in b.label]
    assert not np.array_equal(a.label, b.label)
    for i in range(len(a)):
        assert {a.classes[k] for k in np.flatnonzero(a.multi_hot[i])} == \
               {b.classes[k] for k in np.flatnonzero(b.multi_hot[i])}
    assert a.source[0].endswith("data/faces/00001") and (a.kind == ClipKind.FRAMES).all()


def test_mafw_split_label_contradiction_and_double_fold(tmp_path):
    root = mafw_tree(tmp_path / "MAFW")
    f = root / "Train & Test Set/single/no_caption/set_2/test.txt"
    f.write_text("00003.mp4 contempt\n00005.mp4 anger\n")
    with pytest.raises(DataError, match=r"set_2/test\.txt:2: label 'anger' contradicts Labels/single_label\.txt"):
        load_mafw(root)
    f.write_text("00003.mp4 contempt\n00001.mp4 anger\n")
    with pytest.raises(DataError, match=r"set_2/test\.txt:2: clip '00001' is in two test folds"):
        load_mafw(root)


def test_mafw_unknown_label_names_line(tmp_path):
    root = mafw_tree(tmp_path / "MAFW")
    with open(root / "Labels/single_label.txt", "a") as f:
        f.write("00006.mp4  boredom  caption\n")
    with pytest.raises(DataError, match=r"single_label\.txt:6: unknown class name 'boredom'"):
        load_mafw(root)


# ------------------------------------------------------------------------------ registry
def test_registry_detects_and_dispatches(tmp_path):
    f = ferv39k_tree(tmp_path / "F")
    m = mafw_tree(tmp_path / "M")
    (tmp_path / "A" / "Val_AFEW" / "Sad").mkdir(parents=True)
    (tmp_path / "A" / "Val_AFEW" / "Sad" / "x.avi").write_bytes(b"")
    assert detect_kind(f) == "ferv39k" and detect_kind(m) == "mafw" and detect_kind(tmp_path / "A") == "afew"
    assert len(load_corpus(str(f))) == 7
    assert load_corpus({"kind": "mafw", "root": m, "classes": "mafw11_community"}).classes == MAFW11_COMMUNITY
    assert len(load_source("afew", tmp_path / "A", parts="val")) == 1
    man = tmp_path / "m.csv"
    man.write_text("path,label\nclips/a,sad\n")
    (tmp_path / "r" / "clips").mkdir(parents=True)
    t = load_corpus({"kind": "manifest", "path": man, "root": tmp_path / "r"})
    assert t.source[0] == str(tmp_path / "r" / "clips" / "a")


def test_registry_errors(tmp_path):
    with pytest.raises(ConfigError, match="corpus kind 'imagenet' unknown"):
        load_source("imagenet", tmp_path)
    with pytest.raises(ConfigError, match=r"corpus kind 'afew': unknown option\(s\) \['layout'\]"):
        load_source("afew", tmp_path, layout="frames")
    with pytest.raises(DataError, match=r"not a DFEW, FERV39K, AFEW, MAFW, FER\+ or synthetic folder"):
        detect_kind(tmp_path)


# ------------------------------------------------------------------------------ list files
def test_listfile_reads_every_community_list(lists_dir):
    from dfer.data.corpora import listfile

    lists = lists_dir
    test_ids = []
    for k in range(1, 6):
        t = listfile.load_listfile(lists / f"DFEW_set_{k}_test.txt", root="/data", classes="basic7")
        test_ids.append(set(t.clip_id))
    n = sum(len((lists / f"DFEW_set_{k}_test.txt").read_text().split("\n")) - 1 for k in range(1, 6))
    assert sum(map(len, test_ids)) == n and len(set().union(*test_ids)) == n
    tr = listfile.load_listfile(lists / "FERV39K_train.txt", root="/data", classes="basic7")
    te = listfile.load_listfile(lists / "FERV39K_test.txt", root="/data", classes="basic7")
    assert (len(tr), len(te)) == (29, 29)  # four clips of each of the seven classes, and a namesake
    m = listfile.load_listfile(lists / "MAFW_set_1_test.txt", root="/data", classes="mafw11_community")
    # community label 3 is anger, 0 happiness: the first lines of set 1 are label 3
    assert m.classes[m.label[0]] == "angry"
