"""Behaviour of dfer.plots: every figure is a readable PNG of the promised size, written
atomically, and its pixels depend on the data it shows."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dfer import metrics as M
from dfer import plots

CLASSES = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]


def read_png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def only_png_left(folder):
    return sorted(p.name for p in folder.iterdir())


def test_confusion_identity_and_uniform_differ(tmp_path):
    eye = plots.plot_confusion(np.eye(7, dtype=int) * 10, CLASSES, tmp_path / "eye.png", title="MIDAS")
    uni = plots.plot_confusion(np.ones((7, 7), int), CLASSES, tmp_path / "uni.png")
    a, b = read_png(eye), read_png(uni)
    assert a.shape == b.shape == (500, 600, 3)  # figsize (6, 5) at 100 dpi
    # the identity has seven dark diagonal cells on white, the uniform one an even tint
    assert np.abs(a.astype(int) - b.astype(int)).sum() > 1e5
    assert only_png_left(tmp_path) == ["eye.png", "uni.png"]  # no temporary file left


def test_confusion_handles_absent_class_and_raw_counts(tmp_path):
    cm = M.confusion_matrix([0, 0, 2, 2, 2], [0, 1, 2, 2, 0], 3)  # class 1 absent
    row = plots.plot_confusion(cm, CLASSES[:3], tmp_path / "row.png", figsize=(4, 3), dpi=50)
    raw = plots.plot_confusion(cm, CLASSES[:3], tmp_path / "raw.png", normalise=None, figsize=(4, 3), dpi=50)
    assert read_png(row).shape == read_png(raw).shape == (150, 200, 3)
    assert not np.array_equal(read_png(row), read_png(raw))
    with pytest.raises(ValueError, match=r"normalise: expected 'row', 'all' or None, got 'col'"):
        plots.plot_confusion(cm, CLASSES[:3], tmp_path / "x.png", normalise="col")
    with pytest.raises(ValueError, match=r"expected a \(7, 7\) matrix for 7 classes, got shape \(3, 3\)"):
        plots.plot_confusion(cm, CLASSES, tmp_path / "x.png")


def test_overwrites_atomically_and_creates_folders(tmp_path):
    target = tmp_path / "run" / "figs" / "confusion.png"
    plots.plot_confusion(np.eye(3), CLASSES[:3], target)
    first = read_png(target)
    plots.plot_confusion(np.ones((3, 3)), CLASSES[:3], target)
    assert not np.array_equal(first, read_png(target))
    assert only_png_left(target.parent) == ["confusion.png"]


def test_coexistence_and_class_distribution(tmp_path):
    rng = np.random.default_rng(0)
    soft = rng.dirichlet(np.full(7, 0.3), size=200)
    m = M.coexistence_matrix(soft, CLASSES)
    p = plots.plot_coexistence(m, CLASSES, tmp_path / "coexist.png", dpi=80)
    assert read_png(p).shape == (400, 480, 3)
    counts = {"happy": 1500, "sad": 1000, "neutral": 1900, "angry": 1200, "surprise": 900,
              "disgust": 100, "fear": 600}
    a = plots.plot_class_distribution(counts, CLASSES, tmp_path / "dist_a.png")
    b = plots.plot_class_distribution([100] * 7, CLASSES, tmp_path / "dist_b.png")
    assert read_png(a).shape == (400, 600, 3)
    assert not np.array_equal(read_png(a), read_png(b))
    with pytest.raises(ValueError, match=r"counts: no count for classes \['fear'\]"):
        plots.plot_class_distribution({c: 1 for c in CLASSES[:6]}, CLASSES, tmp_path / "x.png")


def test_reliability_diagram(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(7, 0.5), size=300)
    labels = rng.integers(0, 7, 300)
    p = plots.plot_reliability(M.reliability_curve(probs, labels, 10), tmp_path / "rel.png")
    perfect = M.reliability_curve(np.eye(7)[labels], labels, 10)
    q = plots.plot_reliability(perfect, tmp_path / "perfect.png")
    assert read_png(p).shape == (500, 500, 3)
    assert not np.array_equal(read_png(p), read_png(q))


def test_timeline_shades_spans_without_a_face(tmp_path):
    t = np.arange(20) * 0.5
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(7), size=20)
    no_face = np.zeros(20, bool)
    no_face[5:9] = True
    probs[no_face] = np.nan  # no prediction where no face was found
    a = plots.plot_timeline(t, probs, CLASSES, tmp_path / "a.png", no_face=no_face)
    b = plots.plot_timeline(t, probs, CLASSES, tmp_path / "b.png")
    c = plots.plot_timeline(t, probs, CLASSES, tmp_path / "c.png", no_face=[(2.25, 4.25)])
    assert read_png(a).shape == (350, 1000, 3)
    assert not np.array_equal(read_png(a), read_png(b))
    # a mask and the equivalent explicit span draw the same figure
    assert np.array_equal(read_png(a), read_png(c))
    with pytest.raises(ValueError, match=r"expected times \(T,\) and probs \(T, 7\)"):
        plots.plot_timeline(t, probs[:, :3], CLASSES, tmp_path / "x.png")
