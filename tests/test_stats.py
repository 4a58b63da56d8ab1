"""`dfer data stats`: Fig. 4 class distribution, Table 6 clear/ambiguous partition,
Fig. 5 coexistence, on a hand-checked manifest and on the synthetic DFEW corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dfer.cli import main
from dfer.data.corpora.manifest import load_manifest
from dfer.data.stats import compute_stats, format_stats


def manifest(tmp_path):
    # 10 votes per clip over happy, sad, neutral
    rows = [
        ("a", "10,0,0"),  # happy, clear (1.0 > 0.9)
        ("b", "9,0,1"),  # happy, ambiguous (0.9 is not > 0.9)
        ("c", "0,6,4"),  # sad, ambiguous
        ("d", "0,10,0"),  # sad, clear
        ("e", "5,5,0"),  # tie: no class, left out of counts and coexistence
        ("f", ",,"),  # no votes: in no partition
    ]
    p = tmp_path / "m.csv"
    p.write_text("path,happy,sad,neutral\n" + "".join(f"{c},{v}\n" for c, v in rows))
    return p


def test_compute_stats_by_hand(tmp_path):
    s = compute_stats(load_manifest(manifest(tmp_path)))
    assert s["classes"] == ["happy", "sad", "neutral"]
    assert s["counts"] == [2, 2, 0]
    assert s["num_unlabelled"] == 2 and s["num_with_votes"] == 5
    assert s["clear"] == [1, 1, 0] and s["ambiguous"] == [1, 1, 0]
    m = np.array([[np.nan if v is None else v for v in r] for r in s["coexistence"]])
    np.testing.assert_allclose(m[0], [0.95, 0, 0.05], atol=1e-6)  # mean of (1,0,0), (.9,0,.1)
    np.testing.assert_allclose(m[1], [0, 0.8, 0.2], atol=1e-6)  # mean of (0,.6,.4), (0,1,0)
    assert np.isnan(m[2]).all()  # neutral is never the majority
    text = format_stats(s)
    assert "clear = max soft label > 0.9" in text and "Coexistence (Fig. 5)" in text


def test_stats_cli_without_votes(tmp_path, capsys):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    p = tmp_path / "m.csv"
    p.write_text("path,label\nx.png,happy\ny.png,fear\nz.png,fear\n")
    assert main(["data", "stats", str(p), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "No votes in this corpus" in out
    assert (tmp_path / "o/class_distribution.png").stat().st_size > 0
    assert not (tmp_path / "o/coexistence.png").exists()
    assert json.loads((tmp_path / "o/stats.json").read_text())["counts"] == [1, 0, 0, 0, 0, 0, 2]


def test_stats_cli_on_synthetic_dfew(synthetic_dfew, tmp_path, capsys):
    pytest.importorskip("dfer.data.corpora.dfew", reason="dfer.data.corpora.dfew (another helper) not written yet")
    out_dir = tmp_path / "stats"
    assert main(["data", "stats", str(synthetic_dfew), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    s = json.loads((out_dir / "stats.json").read_text())
    from dfer.data.corpora.synthetic import read_truth

    given = read_truth(synthetic_dfew)["given_label"]
    # DFEW leaves tied clips out of its folds; every indexed clip has votes and a label
    assert s["num_clips"] == s["num_with_votes"] == int((given >= 0).sum())
    assert s["counts"] == np.bincount(given[given >= 0], minlength=7).tolist()
    # every labelled clip is in exactly one part of the partition
    assert [a + b for a, b in zip(s["clear"], s["ambiguous"])] == s["counts"]
    assert s["num_clear"] == sum(s["clear"])  # a clear clip always has a class (ties are not clear)
    assert f"Table 6 groups: clear = {sum(s['clear'])} clips" in out
    for png in ("class_distribution.png", "coexistence.png"):
        data = (out_dir / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    rows = [r for r in s["coexistence"] if r[0] is not None]
    np.testing.assert_allclose([sum(r) for r in rows], 1.0, atol=1e-5)


def test_stats_writes_only_into_a_new_folder_or_its_own(synthetic_dfew, tmp_path, capsys):
    """A folder of the user's (anything but an earlier stats.json) is refused before a file
    is written; a rerun into its own folder replaces its own figures."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "class_distribution.png").write_bytes(b"the user's own figure")
    assert main(["data", "stats", str(synthetic_dfew), "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "did not write" in err and len(err.strip().splitlines()) == 1
    assert (mine / "class_distribution.png").read_bytes() == b"the user's own figure"
    out = tmp_path / "stats"
    for _ in range(2):
        assert main(["data", "stats", str(synthetic_dfew), "--out", str(out)]) == 0
    assert (out / "stats.json").is_file()
