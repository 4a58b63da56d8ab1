"""The synthetic DFEW-layout corpus: exact layout, determinism, votes, folds, truth."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfer.cli import main
from dfer.data.corpora.dfew import load_dfew
from dfer.data.corpora.synthetic import SynthConfig, read_truth, write_synthetic_dfew
from dfer.emotions import BASIC7
from dfer.errors import ConfigError, DataError

XLSX_HEADER = ["1happy", "2sad", "3neutral", "4angry", "5surprise", "6disgust", "7fear", "order", "label"]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _sheet(root: Path) -> list[tuple]:
    from openpyxl import load_workbook

    wb = load_workbook(root / "Annotation/annotation.xlsx", read_only=True)
    rows = [tuple(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    wb.close()
    return rows


def _split(root: Path, part: str, k: int) -> list[tuple[str, int]]:
    with open(root / f"EmoLabel_DataSplit/{part}(single-labeled)/set_{k}.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["video_name", "label"]
    return [(a, int(b)) for a, b in rows[1:]]


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """Many one-frame clips: cheap to write, enough for statistics."""
    root = tmp_path_factory.mktemp("many") / "DFEW"
    return write_synthetic_dfew(root, SynthConfig(num_clips=800, num_frames=1, size=16, seed=3,
                                                  label_noise=0.2, hard_fraction=0.25))


def test_same_seed_gives_identical_bytes_whatever_the_workers(tmp_path):
    cfg = dict(num_clips=12, num_frames=3, size=32, seed=7, label_noise=0.1)
    a = write_synthetic_dfew(tmp_path / "a", SynthConfig(**cfg))
    b = write_synthetic_dfew(tmp_path / "b", SynthConfig(**cfg, workers=2))
    c = write_synthetic_dfew(tmp_path / "c", SynthConfig(**{**cfg, "seed": 8}))
    ha, hb, hc = _hashes(a), _hashes(b), _hashes(c)
    # the config file records workers; everything else must match byte for byte
    ha.pop("synthetic_config.json"), hb.pop("synthetic_config.json")
    assert ha == hb
    assert len(ha) == 12 * 3 + 10 + 1 + 1  # frames, 10 split CSVs, sheet, truth
    assert ha["Annotation/annotation.xlsx"] != hc["Annotation/annotation.xlsx"]
    assert ha["Clip/clip_224x224/00001/00001.jpg"] != hc["Clip/clip_224x224/00001/00001.jpg"]


def test_layout_is_exactly_dfews(synthetic_dfew):
    root = synthetic_dfew
    top = sorted(p.name for p in root.iterdir())
    assert top == ["Annotation", "Clip", "EmoLabel_DataSplit", "synthetic_config.json", "synthetic_truth.csv"]
    assert sorted(p.name for p in (root / "EmoLabel_DataSplit").iterdir()) == \
        ["test(single-labeled)", "train(single-labeled)"]
    for part in ("train", "test"):
        files = sorted(p.name for p in (root / f"EmoLabel_DataSplit/{part}(single-labeled)").iterdir())
        assert files == [f"set_{k}.csv" for k in range(1, 6)]
        assert (root / f"EmoLabel_DataSplit/{part}(single-labeled)/set_1.csv").read_text().splitlines()[0] \
            == "video_name,label"
    clips = sorted(p.name for p in (root / "Clip/clip_224x224").iterdir())
    assert clips == [f"{i:05d}" for i in range(1, 71)]
    frames = sorted(p.name for p in (root / "Clip/clip_224x224/00042").iterdir())
    assert frames == [f"{t:05d}.jpg" for t in range(1, 11)]
    im = Image.open(root / "Clip/clip_224x224/00042/00007.jpg")
    assert (im.format, im.size, im.mode) == ("JPEG", (48, 48), "RGB")
    rows = _sheet(root)
    assert list(rows[0]) == XLSX_HEADER
    assert [r[7] for r in rows[1:]] == list(range(1, 71))
    assert json.loads((root / "synthetic_config.json").read_text())["num_clips"] == 70


def test_votes_labels_and_folds_are_consistent(synthetic_dfew):
    root = synthetic_dfew
    rows = _sheet(root)[1:]
    votes = np.array([r[:7] for r in rows])
    assert votes.dtype.kind == "i"
    assert (votes.sum(axis=1) == 10).all()
    top = votes.max(axis=1)
    tie = (votes == top[:, None]).sum(axis=1) > 1
    sheet_label = np.array([r[8] for r in rows])
    # no label noise: the label is the unique majority, 0 for ties
    assert (sheet_label[tie] == 0).all()
    assert (sheet_label[~tie] == votes[~tie].argmax(axis=1) + 1).all()
    labelled = {f"{i + 1:05d}": int(sheet_label[i]) for i in range(70) if sheet_label[i] > 0}
    tests = [dict(_split(root, "test", k)) for k in range(1, 6)]
    union = {}
    for t in tests:
        assert not set(t) & set(union), "test sets overlap"
        union.update(t)
    assert union == labelled  # the test sets partition the single-labelled clips, labels agree
    for k in range(1, 6):
        train = dict(_split(root, "train", k))
        assert set(train) == set(labelled) - set(tests[k - 1])
        assert all(train[c] == labelled[c] for c in train)


def test_class_imbalance_and_coexistence_follow_dfew(many):
    truth = read_truth(many)
    counts = np.bincount(truth["vote_label"][truth["vote_label"] >= 0], minlength=7)
    c = dict(zip(BASIC7, counts))
    assert c["happy"] + c["neutral"] > 3 * (c["disgust"] + c["fear"])
    assert min(c["happy"], c["neutral"]) > max(c["disgust"], c["fear"])
    t = load_dfew(many)
    q = t.soft_labels()
    lab = truth["vote_label"][[int(c) - 1 for c in t.clip_id]]  # majority vote: label_noise is on
    mean_q = np.stack([q[lab == k].mean(axis=0) for k in range(7)])
    h, s, n, a, su, d, f = range(7)
    # Fig. 5: neutral is the most frequent co-vote of every other class; happy mixes least;
    # angry <-> disgust and sad/surprise/fear go together
    off = mean_q.copy()
    np.fill_diagonal(off, 0)
    assert off[h].sum() < off[[s, a, su, d, f]].sum(axis=1).min()
    assert off[a, d] > off[a, [h, su]].max() and off[d, a] > off[d, [h, su]].max()
    assert off[f, [s, su]].min() > off[f, [h, a, d]].max()


def test_truth_agrees_with_votes_for_clear_clips(many):
    truth = read_truth(many)
    clear = ~truth["is_hard"] & (truth["mixture"].max(axis=1) >= 0.8) & (truth["vote_label"] >= 0)
    assert clear.sum() > 200
    agree = (truth["vote_label"][clear] == truth["true_label"][clear]).mean()
    assert agree > 0.9
    hard = truth["is_hard"] & (truth["vote_label"] >= 0)
    assert (truth["vote_label"][hard] == truth["true_label"][hard]).mean() < agree
    assert truth["is_hard"].sum() == round(0.25 * 800)


def test_label_noise_is_exact_recorded_and_written_consistently(many):
    truth = read_truth(many)
    labelled = truth["vote_label"] >= 0
    corrupt = truth["label_corrupted"]
    assert corrupt.sum() == round(0.2 * labelled.sum())
    assert not corrupt[~labelled].any()
    assert (truth["given_label"][corrupt] != truth["vote_label"][corrupt]).all()
    # wrong in every sense: the clip shows none of the corrupted labels' classes
    shown = truth["mixture"][np.flatnonzero(corrupt), truth["given_label"][corrupt]]
    assert (shown == 0).all() and (truth["given_label"][corrupt] != truth["true_label"][corrupt]).all()
    # ... and they are spread over the classes, not one stand-in class
    assert len(np.unique(truth["given_label"][corrupt])) >= 5
    assert (truth["given_label"][~corrupt] == truth["vote_label"][~corrupt]).all()
    t = load_dfew(many)  # CSV and sheet labels agree, so the adapter accepts the noisy labels
    given = dict(zip(truth["video_name"].tolist(), truth["given_label"].tolist()))
    assert [given[c] for c in t.clip_id] == t.label.tolist()


def test_load_dfew_reads_the_corpus_back(synthetic_dfew):
    t = load_dfew(synthetic_dfew)
    rows = _sheet(synthetic_dfew)[1:]
    labelled = [r for r in rows if r[8] > 0]
    assert len(t) == len(labelled) and t.name == "dfew"
    fold_of = {c: k for k in range(1, 6) for c, _ in _split(synthetic_dfew, "test", k)}
    assert t.fold.tolist() == [fold_of[c] for c in t.clip_id]
    assert t.label.tolist() == [r[8] - 1 for r in labelled]
    np.testing.assert_array_equal(t.votes, np.array([r[:7] for r in labelled], np.float32))
    assert (t.num_frames == 10).all()
    np.testing.assert_allclose(t.soft_labels().sum(axis=1), 1, rtol=1e-6)


def test_cli_writes_and_refuses_a_used_folder(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["synth", str(out), "--clips", "6", "--frames", "2", "--size", "24", "--seed", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("dfer synth: wrote 6 clips x 2 frames at 24px") and "\n" not in line
    assert main(["synth", str(out), "--clips", "6"]) == 2
    assert "expected a new or empty folder" in capsys.readouterr().err


def test_config_is_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"SynthConfig.label_noise = 1.5, expected in \[0, 1\)"):
        write_synthetic_dfew(tmp_path / "x", SynthConfig(label_noise=1.5))
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="y: expected a new or empty folder"):
        write_synthetic_dfew(tmp_path / "y", SynthConfig(num_clips=3))


def test_nuisance_zero_removes_pose_lighting_and_noise_but_not_expression(tmp_path):
    cfg = dict(num_clips=6, num_frames=6, size=32, seed=2)
    clean = write_synthetic_dfew(tmp_path / "n0", SynthConfig(**cfg, nuisance=0.0))
    full = write_synthetic_dfew(tmp_path / "n1", SynthConfig(**cfg))

    def frames(root, cid):
        return np.stack([np.asarray(Image.open(p), np.float32)
                         for p in sorted((root / "Clip/clip_224x224" / cid).glob("*.jpg"))])

    for cid in ("00001", "00002", "00003"):
        a, b = frames(clean, cid), frames(full, cid)
        # no sensor noise, drift or flicker: the background corner barely changes between
        # frames (only JPEG blocks shared with the moving brows), unlike with full nuisance
        still, moving = (np.abs(np.diff(x[:, :4, :4], axis=0)).mean() for x in (a, b))
        assert still < 0.25 * moving, (still, moving)
        # the face still moves with the expression envelope
        assert np.abs(np.diff(a, axis=0)).mean() > 0.1
    # votes, labels and truth do not depend on the nuisance
    assert (clean / "synthetic_truth.csv").read_bytes() == (full / "synthetic_truth.csv").read_bytes()
    with pytest.raises(ConfigError, match=r"SynthConfig.nuisance = 2.0, expected in \[0, 1\]"):
        write_synthetic_dfew(tmp_path / "bad", SynthConfig(nuisance=2.0))
