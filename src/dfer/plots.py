"""Figures of a run and of a corpus, written as PNG files.

- :func:`plot_confusion`: row-normalised confusion matrix with percentages in the cells,
  as the MIDAS paper's Fig. 6 (the diagonal is the per-class accuracy of Table 1).
- :func:`plot_coexistence`: mean soft label per majority class, the paper's Fig. 5
  (see :func:`dfer.metrics.coexistence_matrix`).
- :func:`plot_class_distribution`: clips per class, the paper's Fig. 4.
- :func:`plot_reliability`: reliability diagram of :func:`dfer.metrics.reliability_curve`.
- :func:`plot_timeline`: predicted emotion distribution over the time of a video, with the
  spans where no face was found shaded.

Figures are built with :class:`matplotlib.figure.Figure` directly rather than through
pyplot: no display and no GUI backend is ever touched, no global figure state is kept,
and the process-wide backend is left as the caller set it. Every file is written to a
temporary name in the target folder and moved into place (:func:`dfer.io.atomic_path`), so a reader
never sees half a PNG. Each function returns the path it wrote. The image is
``figsize * dpi`` pixels exactly (no tight bounding box).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dfer.io import atomic_path
from dfer.metrics import to_numpy

__all__ = [
    "EMOTION_COLOURS",
    "plot_confusion",
    "plot_coexistence",
    "plot_class_distribution",
    "plot_reliability",
    "plot_timeline",
]

#: One colour per canonical emotion, so that a class keeps its colour across figures.
EMOTION_COLOURS: dict[str, str] = {
    "happy": "#f2b701", "sad": "#3969ac", "neutral": "#8c8c8c", "angry": "#e73f74",
    "surprise": "#f58518", "disgust": "#11a579", "fear": "#7f3c8d", "contempt": "#80ba5a",
    "anxiety": "#008695", "helplessness": "#cf1c90", "disappointment": "#a5aa99",
}
_FALLBACK = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2",
             "#ff9da6", "#9d755d", "#bab0ac", "#1f77b4", "#d62728")


def _colours(classes: Sequence[str]) -> list[str]:
    return [EMOTION_COLOURS.get(str(c).lower(), _FALLBACK[i % len(_FALLBACK)]) for i, c in enumerate(classes)]


def _save(fig: Figure, path: str | os.PathLike, dpi: int) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically; the folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return path


def _square(matrix: Any, classes: Sequence[str], what: str) -> np.ndarray:
    m = to_numpy(matrix, np.float64)
    C = len(classes)
    if m.shape != (C, C):
        raise ValueError(f"{what}: expected a ({C}, {C}) matrix for {C} classes, got shape {m.shape}")
    return m


def _heatmap(ax, values: np.ndarray, text: list[list[str]], classes: Sequence[str], vmax: float,
             cmap: str) -> Any:
    shown = np.ma.masked_invalid(values)
    im = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=vmax)
    C = len(classes)
    for i in range(C):
        for j in range(C):
            v = values[i, j]
            # dark text on light cells, light text on dark ones
            colour = "white" if np.isfinite(v) and v > 0.6 * vmax else "black"
            ax.text(j, i, text[i][j], ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(C), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(C), labels=list(classes))
    return im


def plot_confusion(
    cm: Any,
    classes: Sequence[str],
    path: str | os.PathLike,
    normalise: str | None = "row",
    title: str | None = None,
    figsize: tuple[float, float] = (6.0, 5.0),
    dpi: int = 100,
) -> Path:
    """Confusion matrix heatmap (the paper's Fig. 6).

    Args:
        cm: (C, C) counts, rows = true class.
        classes: the C class names.
        path: PNG to write.
        normalise: ``"row"`` (each row divided by its count, cells in percent, the diagonal
            being the per-class accuracy), ``"all"`` (divided by the total, in percent) or
            ``None`` (raw counts). A class with no clip has an empty row.
        title: figure title.
        figsize: inches; the image is ``figsize * dpi`` pixels.
        dpi: pixels per inch.

    Returns:
        ``path`` as a Path.
    """
    m = _square(cm, classes, "cm")
    if normalise == "row":
        s = m.sum(axis=1, keepdims=True)
        values = np.divide(m, s, out=np.full_like(m, np.nan), where=s > 0)
        text = [["" if not np.isfinite(v) else f"{100 * v:.1f}" for v in row] for row in values]
        vmax, label = 1.0, "fraction of the true class"
    elif normalise == "all":
        total = m.sum()
        values = m / total if total > 0 else np.full_like(m, np.nan)
        text = [["" if not np.isfinite(v) else f"{100 * v:.1f}" for v in row] for row in values]
        vmax, label = max(float(np.nanmax(values)) if total > 0 else 1.0, 1e-12), "fraction of all clips"
    elif normalise is None or normalise == "none":
        values = m
        text = [[f"{int(v)}" if float(v).is_integer() else f"{v:.3g}" for v in row] for row in m]
        vmax, label = max(float(m.max()) if m.size else 1.0, 1.0), "clips"
    else:
        raise ValueError(f"normalise: expected 'row', 'all' or None, got {normalise!r}")
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    im = _heatmap(ax, values, text, classes, vmax, "Blues")
    fig.colorbar(im, ax=ax, label=label)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)


def plot_coexistence(
    matrix: Any,
    classes: Sequence[str],
    path: str | os.PathLike,
    title: str | None = "Mean soft label per majority class",
    figsize: tuple[float, float] = (6.0, 5.0),
    dpi: int = 100,
) -> Path:
    """Heatmap of vote coexistence (the paper's Fig. 5).

    Args:
        matrix: (C, C) from :func:`dfer.metrics.coexistence_matrix`; rows = majority class,
            NaN rows (a class never the majority) are left blank.
        classes: the C class names.
        path: PNG to write.
        title: figure title (None for none).
        figsize: inches; dpi: pixels per inch.
    """
    m = _square(matrix, classes, "matrix")
    text = [["" if not np.isfinite(v) else f"{v:.2f}" for v in row] for row in m]
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    im = _heatmap(ax, m, text, classes, 1.0, "Oranges")
    fig.colorbar(im, ax=ax, label="mean soft label")
    ax.set_xlabel("voted class")
    ax.set_ylabel("majority class")
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)


def plot_class_distribution(
    counts: Any,
    classes: Sequence[str],
    path: str | os.PathLike,
    title: str | None = "Clips per class",
    figsize: tuple[float, float] = (6.0, 4.0),
    dpi: int = 100,
) -> Path:
    """Bar chart of the number of clips of each class (the paper's Fig. 4).

    Args:
        counts: (C,) clips per class, or a mapping {class name: count}.
        classes: the C class names, in the order of the bars.
        path: PNG to write.
        title: figure title.
        figsize: inches; dpi: pixels per inch.
    """
    if isinstance(counts, dict):
        missing = [c for c in classes if c not in counts]
        if missing:
            raise ValueError(f"counts: no count for classes {missing}")
        counts = [counts[c] for c in classes]
    n = to_numpy(counts, np.float64)
    if n.shape != (len(classes),):
        raise ValueError(f"counts: expected shape ({len(classes)},) for {len(classes)} classes, got {n.shape}")
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar(range(len(classes)), n, color=_colours(classes))
    ax.bar_label(bars, labels=[f"{int(v)}" if float(v).is_integer() else f"{v:.3g}" for v in n], fontsize=8)
    ax.set_xticks(range(len(classes)), labels=list(classes), rotation=30, ha="right")
    ax.set_ylabel("clips")
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)


def plot_reliability(
    curve: dict[str, Any],
    path: str | os.PathLike,
    title: str | None = None,
    figsize: tuple[float, float] = (5.0, 5.0),
    dpi: int = 100,
) -> Path:
    """Reliability diagram: accuracy against confidence per bin, with the diagonal.

    Args:
        curve: output of :func:`dfer.metrics.reliability_curve` (``edges``, ``accuracy``,
            ``confidence``, ``counts``, optionally ``ece``).
        path: PNG to write.
        title: figure title; default states the ECE when the curve carries it.
        figsize: inches; dpi: pixels per inch.
    """
    edges = to_numpy(curve["edges"], np.float64)
    acc = to_numpy(curve["accuracy"], np.float64)
    conf = to_numpy(curve["confidence"], np.float64)
    counts = to_numpy(curve["counts"], np.float64)
    M = edges.size - 1
    if not (acc.shape == conf.shape == counts.shape == (M,)):
        raise ValueError(f"curve: expected {M} bins for {M + 1} edges, got accuracy {acc.shape}, "
                         f"confidence {conf.shape}, counts {counts.shape}")
    fig = Figure(figsize=figsize, layout="constrained")
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    width = np.diff(edges)
    ok = counts > 0
    ax.bar(edges[:-1][ok], acc[ok], width=width[ok], align="edge", color="#4c78a8",
           edgecolor="black", linewidth=0.5, label="accuracy")
    # the gap between confidence and accuracy, the quantity the ECE averages
    ax.bar(edges[:-1][ok], np.abs(conf[ok] - acc[ok]), bottom=np.minimum(acc[ok], conf[ok]),
           width=width[ok], align="edge", facecolor="none", edgecolor="#e45756", hatch="//",
           linewidth=0.8, label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ece = curve.get("ece")
    if title is None and ece is not None and np.isfinite(ece):
        title = f"ECE = {100 * float(ece):.2f}%"
    if title:
        ax.set_title(title)
    ax_n.bar(edges[:-1], counts, width=width, align="edge", color="#8c8c8c")
    ax_n.set_xlabel("confidence (top-label probability)")
    ax_n.set_ylabel("clips")
    return _save(fig, path, dpi)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """First and last index of every run of True in a 1-D bool mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def _spans(times: np.ndarray, mask: np.ndarray) -> list[tuple[float, float]]:
    """Runs of ``mask`` as time spans reaching halfway to the neighbouring samples."""
    if times.size == 0:
        return []
    step = np.diff(times)
    half_before = np.concatenate([[step[0] if step.size else 0.5], step]) / 2
    half_after = np.concatenate([step, [step[-1] if step.size else 0.5]]) / 2
    return [(float(times[i] - half_before[i]), float(times[j] + half_after[j])) for i, j in _runs(mask)]


def plot_timeline(
    times: Any,
    probs: Any,
    classes: Sequence[str],
    path: str | os.PathLike,
    no_face: Any = None,
    title: str | None = None,
    figsize: tuple[float, float] = (10.0, 3.5),
    dpi: int = 100,
) -> Path:
    """Predicted emotion distribution over a video's time, stacked to 1 at every window.

    Args:
        times: (T,) seconds of the window centres, increasing.
        probs: (T, C) probabilities per window; rows without a prediction (NaN) are drawn
            as gaps.
        classes: the C class names (they keep their colour from :data:`EMOTION_COLOURS`).
        path: PNG to write.
        no_face: optional (T,) bool, the windows where no face was found, shaded grey;
            or a sequence of ``(start, end)`` spans in seconds.
        title: figure title.
        figsize: inches; dpi: pixels per inch.
    """
    t = to_numpy(times, np.float64)
    p = to_numpy(probs, np.float64)
    C = len(classes)
    if t.ndim != 1 or p.shape != (t.size, C):
        raise ValueError(f"expected times (T,) and probs (T, {C}), got {t.shape} and {p.shape}")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise ValueError("times: expected strictly increasing window times")
    spans: list[tuple[float, float]] = []
    if no_face is not None:
        nf = to_numpy(no_face)
        if nf.ndim == 1 and nf.shape == t.shape and (nf.dtype == bool or np.isin(nf, (0, 1)).all()):
            spans = _spans(t, nf.astype(bool))
        elif nf.ndim == 2 and nf.shape[1] == 2:
            spans = [(float(a), float(b)) for a, b in nf]
        else:
            raise ValueError(f"no_face: expected a (T,) bool mask with T={t.size} or (start, end) spans, got shape {nf.shape}")
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    # one stack per run of windows with a prediction, so a gap is not bridged by a slope
    finite = np.isfinite(p).all(axis=1) if p.size else np.zeros(t.size, bool)
    for k, (i, j) in enumerate(_runs(finite)):
        ax.stackplot(t[i:j + 1], p[i:j + 1].T, colors=_colours(classes),
                     labels=list(classes) if k == 0 else ())
    for k, (a, b) in enumerate(spans):
        ax.axvspan(a, b, color="#404040", alpha=0.35, linewidth=0, label="no face" if k == 0 else None)
    ax.set_ylim(0, 1)
    lo, hi = min([t[0]] + [a for a, _ in spans]) if t.size else 0.0, max([t[-1]] + [b for _, b in spans]) if t.size else 1.0
    if hi > lo:
        ax.set_xlim(lo, hi)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)
