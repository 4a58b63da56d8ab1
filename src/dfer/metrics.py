"""Evaluation metrics: UAR / WAR from a confusion matrix, divergences to the votes, calibration.
Kept as one module: the metrics share one check of their inputs, and :func:`summarise`
reports them together.

The MIDAS paper (Sec. 4.3, Table 1) reports, per cross-validation fold,

- the accuracy of each class (its recall: correct clips of class c / clips of class c),
- UAR, the unweighted average recall: ``UAR = (1/|P|) * sum_{c in P} cm[c, c] / sum_j cm[c, j]``,
- WAR, the weighted average recall, i.e. plain accuracy: ``WAR = trace(cm) / sum(cm)``,

with rows of ``cm`` the true class. ``P`` is the set of classes *present* in the ground
truth of the evaluated clips. The DFER research code bases divide by the per-class count
unconditionally, so a fold that lacks a class turns UAR into NaN; here an absent class is
left out of the mean and named in :func:`summarise` (``absent_classes``) so a reader knows
the mean ran over fewer classes.

Beyond the paper: KL and Jensen-Shannon divergences between the annotator distribution
(the soft label, votes / their sum) and the predicted distribution, top-label expected
calibration error (Guo et al., 2017) with its reliability curve, the negative
log-likelihood, and the ambiguity
analyses of Sec. 5.4-5.5: vote coexistence per majority class (Fig. 5) and the clear /
mixed partition at a maximum soft label above 0.9 (Table 6).

Every function is pure numpy. Inputs may be numpy arrays, sequences or torch tensors
(converted with ``.detach().cpu()``); nothing here imports torch. Metrics are fractions in
[0, 1], not percentages. Labels outside ``[0, num_classes)`` are a bug in the caller (the
ClipTable marks "no hard label" with -1 and the caller filters those clips), so they raise
``ValueError`` rather than being dropped; :func:`summarise` is the one place that accepts
-1 and counts those clips apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "to_numpy",
    "confusion_matrix",
    "per_class_recall",
    "absent_classes",
    "uar",
    "war",
    "kl_divergence",
    "js_divergence",
    "negative_log_likelihood",
    "reliability_curve",
    "expected_calibration_error",
    "top_class_gap",
    "summarise",
    "clear_mask",
    "coexistence_matrix",
]

#: Tolerance on probability row sums: softmax rows sum to 1 within ~1e-6 in float32 and
#: ~1e-3 in bfloat16 (mixed precision); rows of logits almost never do, so this catches
#: logits passed by mistake without rejecting real input.
_ROW_SUM_TOL = 1e-2


# --------------------------------------------------------------------------- conversion

def to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU.

    Floating tensors go through float64 first so that bfloat16 / float16 tensors (which
    numpy cannot hold) convert too.

    Args:
        x: numpy array, sequence, scalar or torch tensor.
        dtype: optional numpy dtype of the result.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _labels(x: Any, name: str) -> np.ndarray:
    """1-D int64 label vector; float input is accepted only when every value is integral."""
    a = to_numpy(x)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D label vector of shape (N,), got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if a.dtype == bool or not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) \
                or not np.all(a == np.round(a)):
            raise ValueError(f"{name}: expected integer class indices, got dtype {a.dtype}")
    return a.astype(np.int64)


def _check_range(a: np.ndarray, num_classes: int, name: str) -> None:
    bad = (a < 0) | (a >= num_classes)
    if bad.any():
        found = np.unique(a[bad])[:5].tolist()
        raise ValueError(
            f"{name}: expected class indices in [0, {num_classes}), found {found} in "
            f"{int(bad.sum())} of {a.size} clips; filter clips without a hard label (-1) "
            f"before computing metrics"
        )


def _probs(x: Any, name: str = "probs", num_classes: int | None = None) -> np.ndarray:
    """(N, C) float64 probability rows: finite, non-negative, each summing to 1."""
    p = to_numpy(x, np.float64)
    if p.ndim != 2:
        raise ValueError(f"{name}: expected probabilities of shape (N, C), got shape {p.shape}")
    if num_classes is not None and p.shape[1] != num_classes:
        raise ValueError(f"{name}: expected {num_classes} classes, got shape {p.shape}")
    if p.size == 0:
        return p
    if not np.all(np.isfinite(p)):
        rows = np.flatnonzero(~np.isfinite(p).all(axis=1))[:5].tolist()
        raise ValueError(f"{name}: expected finite probabilities, rows {rows} hold NaN or inf")
    if p.min() < -1e-9:
        raise ValueError(
            f"{name}: expected non-negative probabilities, found {p.min():.4g}; pass softmax "
            f"probabilities, not logits"
        )
    s = p.sum(axis=1)
    if np.abs(s - 1.0).max() > _ROW_SUM_TOL:
        raise ValueError(
            f"{name}: expected rows that sum to 1, found row sums in [{s.min():.4g}, {s.max():.4g}]"
            f"; pass softmax probabilities, not logits"
        )
    return np.clip(p, 0.0, None)


def _check_cm(cm: Any) -> np.ndarray:
    m = to_numpy(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square confusion matrix of shape (C, C), got shape {m.shape}")
    return m


# --------------------------------------------------------------------------- UAR / WAR

def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Count matrix of predictions against ground truth.

    Args:
        y_true: (N,) int true class indices in ``[0, num_classes)``.
        y_pred: (N,) int predicted class indices in ``[0, num_classes)``.
        num_classes: C.

    Returns:
        (C, C) int64 matrix; ``cm[i, j]`` counts clips of true class i predicted as j
        (rows = true class, as in the paper's Fig. 6).

    Raises:
        ValueError: if the vectors differ in length or hold an index outside
            ``[0, num_classes)``. A -1 ("no hard label") is an error here, not skipped:
            the caller decides which clips are scored.
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    C = int(num_classes)
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    _check_range(t, C, "y_true")
    _check_range(p, C, "y_pred")
    return np.bincount(t * C + p, minlength=C * C).reshape(C, C).astype(np.int64)


def per_class_recall(cm: Any) -> np.ndarray:
    """Recall of every class (the paper's "accuracy for each emotion class", Table 1).

    Args:
        cm: (C, C) confusion matrix, rows = true class.

    Returns:
        (C,) float64; NaN for a class with no clip in the ground truth (no division by
        zero takes place, so no warning is emitted).
    """
    m = _check_cm(cm).astype(np.float64)
    support = m.sum(axis=1)
    return np.divide(np.diag(m), support, out=np.full(m.shape[0], np.nan), where=support > 0)


def absent_classes(cm: Any) -> list[int]:
    """Indices of the classes with no clip in the ground truth (all-zero rows of ``cm``)."""
    m = _check_cm(cm)
    return np.flatnonzero(m.sum(axis=1) == 0).tolist()


def uar(cm: Any) -> float:
    """Unweighted average recall: the mean recall over the classes present in the ground truth.

    Absent classes are left out of the mean (see :func:`absent_classes`); UAR is NaN only
    when the matrix holds no clip at all.

    Args:
        cm: (C, C) confusion matrix, rows = true class.
    """
    r = per_class_recall(cm)
    present = ~np.isnan(r)
    return float(r[present].mean()) if present.any() else math.nan


def war(cm: Any) -> float:
    """Weighted average recall, i.e. accuracy: ``trace(cm) / sum(cm)``; NaN for an empty matrix."""
    m = _check_cm(cm)
    total = m.sum()
    return float(np.trace(m) / total) if total > 0 else math.nan


# --------------------------------------------------------------------------- divergences

def kl_divergence(target: Any, probs: Any, eps: float = 1e-8) -> np.ndarray:
    """Per-row ``KL(target || probs) = sum_c t_c * (log t_c - log p_c)`` in nats.

    Terms with ``t_c = 0`` contribute 0 (``0 log 0 = 0``); ``p_c`` is floored at ``eps`` so
    that a class the model rules out costs ``-log eps`` instead of infinity.

    Args:
        target: (N, C) reference distributions (the soft labels), rows sum to 1.
        probs: (N, C) predicted distributions, rows sum to 1.
        eps: floor of the predicted probabilities.

    Returns:
        (N,) float64, >= 0 (0 where ``target == probs``).
    """
    t = _probs(target, "target")
    p = _probs(probs, "probs", t.shape[1])
    if t.shape != p.shape:
        raise ValueError(f"target and probs differ in shape: {t.shape} vs {p.shape}")
    log_ratio = np.log(t, out=np.zeros_like(t), where=t > 0) - np.log(np.maximum(p, eps))
    kl = np.where(t > 0, t * log_ratio, 0.0).sum(axis=1)
    return np.maximum(kl, 0.0)  # rounding can leave -1e-17 on equal rows


def js_divergence(target: Any, probs: Any) -> np.ndarray:
    """Per-row Jensen-Shannon divergence in nats: ``(KL(t || m) + KL(p || m)) / 2``, ``m = (t + p) / 2``.

    Symmetric in its arguments, finite without any floor (``m > 0`` wherever ``t`` or
    ``p`` is) and bounded by ``ln 2`` (reached by distributions with disjoint support).

    Args:
        target: (N, C) distributions, rows sum to 1.
        probs: (N, C) distributions, rows sum to 1.

    Returns:
        (N,) float64 in ``[0, ln 2]``.
    """
    t = _probs(target, "target")
    p = _probs(probs, "probs", t.shape[1])
    if t.shape != p.shape:
        raise ValueError(f"target and probs differ in shape: {t.shape} vs {p.shape}")
    m = 0.5 * (t + p)

    def _kl_to_m(a: np.ndarray) -> np.ndarray:
        pos = a > 0
        ratio = np.divide(a, m, out=np.ones_like(a), where=pos)
        return (a * np.log(ratio, out=np.zeros_like(a), where=pos)).sum(axis=1)

    js = 0.5 * (_kl_to_m(t) + _kl_to_m(p))
    return np.clip(js, 0.0, math.log(2.0))


def negative_log_likelihood(probs: Any, labels: Any, eps: float = 1e-12) -> float:
    """Mean ``-log p[label]`` over the clips (probabilities floored at ``eps``); NaN if empty."""
    p = _probs(probs)
    y = _labels(labels, "labels")
    _check_range(y, p.shape[1], "labels")
    if y.size == 0:
        return math.nan
    return float(-np.log(np.maximum(p[np.arange(y.size), y], eps)).mean())


# --------------------------------------------------------------------------- calibration

def reliability_curve(probs: Any, labels: Any, num_bins: int = 15, *, soft_labels: Any = None) -> dict[str, Any]:
    """Top-label reliability curve with ``num_bins`` equal-width confidence bins.

    A clip's confidence is its largest predicted probability; it falls in bin ``b`` when
    ``edges[b] < confidence <= edges[b + 1]`` (bins closed on the right, as in Guo et al.,
    2017; a confidence of exactly 0 goes to the first bin).

    Args:
        probs: (N, C) predicted probabilities.
        labels: (N,) int true classes in ``[0, C)``.
        num_bins: M.
        soft_labels: (N, C) vote distributions: then a clip's "accuracy" is the share of
            the votes its top class got (calibration against how people vote rather than
            against the majority; one-hot rows give the accuracy back) and ``labels`` may be
            None.

    Returns:
        dict with ``edges`` (M+1,) float64, ``accuracy`` (M,) float64 fraction of correct
        top-label predictions per bin (the mean vote share of the top class with
        ``soft_labels``), ``confidence`` (M,) float64 mean confidence per bin
        (both NaN for an empty bin), ``counts`` (M,) int64, and ``ece`` (float).
    """
    if int(num_bins) < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    M = int(num_bins)
    p = _probs(probs)
    if soft_labels is not None:
        t = _probs(soft_labels, "soft_labels", p.shape[1])
        if t.shape[0] != p.shape[0]:
            raise ValueError(f"probs and soft_labels differ in length: {p.shape[0]} vs {t.shape[0]}")
        correct = t[np.arange(len(p)), p.argmax(axis=1)] if p.size else np.zeros(0)
    else:
        y = _labels(labels, "labels")
        if y.shape[0] != p.shape[0]:
            raise ValueError(f"probs and labels differ in length: {p.shape[0]} vs {y.shape[0]}")
        _check_range(y, p.shape[1], "labels")
        correct = (p.argmax(axis=1) == y).astype(np.float64) if p.size else np.zeros(0)
    edges = np.linspace(0.0, 1.0, M + 1)
    conf = p.max(axis=1) if p.size else np.zeros(0)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, M - 1)
    counts = np.bincount(b, minlength=M).astype(np.int64)
    nonempty = counts > 0
    acc = np.divide(np.bincount(b, weights=correct, minlength=M), counts,
                    out=np.full(M, np.nan), where=nonempty)
    mean_conf = np.divide(np.bincount(b, weights=conf, minlength=M), counts,
                          out=np.full(M, np.nan), where=nonempty)
    n = counts.sum()
    ece = float((counts[nonempty] / n * np.abs(acc[nonempty] - mean_conf[nonempty])).sum()) if n else math.nan
    return {"edges": edges, "accuracy": acc, "confidence": mean_conf, "counts": counts, "ece": ece}


def expected_calibration_error(probs: Any, labels: Any, num_bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al., 2017).

    ``ECE = sum_b (n_b / N) * |acc_b - conf_b|`` over ``num_bins`` equal-width bins of the
    top-label confidence (see :func:`reliability_curve`). 0 for a perfectly calibrated
    model; NaN when there is no clip.

    Args:
        probs: (N, C) predicted probabilities.
        labels: (N,) int true classes in ``[0, C)``.
        num_bins: number of equal-width bins on [0, 1].
    """
    return reliability_curve(probs, labels, num_bins)["ece"]


def top_class_gap(probs: Any, target: Any) -> float:
    """Soft calibration against a reference distribution (the votes, or a known mixture).

    For each clip take the model's top class ``k`` and compare the probability it gives
    ``k`` with the share of the reference on ``k``: ``mean_i |p_i[k_i] - t_i[k_i]|``. A
    model whose confidence matches the annotators' agreement scores 0.

    Args:
        probs: (N, C) predicted probabilities.
        target: (N, C) reference distributions.

    Returns:
        float in [0, 1]; NaN when there is no clip.
    """
    p = _probs(probs)
    t = _probs(target, "target", p.shape[1])
    if t.shape != p.shape:
        raise ValueError(f"target and probs differ in shape: {t.shape} vs {p.shape}")
    if p.shape[0] == 0:
        return math.nan
    k = p.argmax(axis=1)
    rows = np.arange(p.shape[0])
    return float(np.abs(p[rows, k] - t[rows, k]).mean())


# --------------------------------------------------------------------------- summary

def _py(x: Any) -> Any:
    """Plain-Python, JSON-ready value: floats with NaN -> None, numpy scalars unwrapped."""
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def _class_names(classes: Sequence[str] | int, num_classes: int) -> list[str]:
    names = [str(i) for i in range(classes)] if isinstance(classes, int) else [str(c) for c in classes]
    if len(names) != num_classes:
        raise ValueError(f"classes: expected {num_classes} names (the width of probs), got {len(names)}")
    return names


def summarise(
    probs: Any,
    labels: Any,
    classes: Sequence[str] | int,
    soft_labels: Any = None,
    has_votes: Any = None,
    num_bins: int = 15,
) -> dict[str, Any]:
    """Every clip-level metric of one evaluation, as a JSON-ready dict (for results.json).

    Hard-label metrics (UAR, WAR, per-class recall, confusion matrix, ECE, NLL) use the
    clips whose label is in ``[0, C)``; clips labelled -1 (no hard label, e.g. a tied vote)
    are counted in ``num_unlabelled`` and enter only the divergences to the votes. The
    prediction of a clip is the argmax of its probabilities.

    Args:
        probs: (N, C) predicted probabilities (softmax of the logits).
        labels: (N,) int hard labels in ``[-1, C)``.
        classes: the C class names in index order (or C itself).
        soft_labels: optional (N, C) annotator distributions.
        has_votes: optional (N,) bool, the clips whose ``soft_labels`` come from votes
            (ClipTable.has_votes); the others (one-hot of a hard label) are left out of
            ``kl_to_votes`` / ``js_to_votes``. Default: every row of ``soft_labels``.
        num_bins: bins of the ECE.

    Returns:
        dict with ``classes``, ``num_clips``, ``num_unlabelled``, ``uar``, ``war``,
        ``per_class_recall`` {name: recall}, ``support`` {name: clips}, ``absent_classes``
        [names], ``confusion_matrix`` (list of C lists of int, rows = true class), ``ece``,
        ``nll``, and when ``soft_labels`` is given ``num_with_votes``, ``kl_to_votes``,
        ``js_to_votes`` (means over the clips with votes) and ``top_gap_to_votes``
        (:func:`top_class_gap`). Floats are plain Python; NaN becomes None.
    """
    p = _probs(probs)
    N, C = p.shape
    names = _class_names(classes, C)
    y = _labels(labels, "labels")
    if y.shape[0] != N:
        raise ValueError(f"probs and labels differ in length: {N} vs {y.shape[0]}")
    bad = (y < -1) | (y >= C)
    if bad.any():
        raise ValueError(f"labels: expected values in [-1, {C}), found {np.unique(y[bad])[:5].tolist()}")
    scored = y >= 0
    ps, ys = p[scored], y[scored]
    cm = confusion_matrix(ys, ps.argmax(axis=1) if ys.size else ys, C)
    recall = per_class_recall(cm)
    out: dict[str, Any] = {
        "classes": names,
        "num_clips": int(N),
        "num_unlabelled": int((~scored).sum()),
        "uar": _py(uar(cm)),
        "war": _py(war(cm)),
        "per_class_recall": {n: _py(r) for n, r in zip(names, recall)},
        "support": {n: int(s) for n, s in zip(names, cm.sum(axis=1))},
        "absent_classes": [names[i] for i in absent_classes(cm)],
        "confusion_matrix": cm.tolist(),
        "ece": _py(expected_calibration_error(ps, ys, num_bins)),
        "nll": _py(negative_log_likelihood(ps, ys)),
    }
    if soft_labels is not None:
        s = to_numpy(soft_labels, np.float64)
        if s.shape != p.shape:
            raise ValueError(f"soft_labels: expected shape {p.shape} like probs, got {s.shape}")
        v = np.ones(N, bool) if has_votes is None else to_numpy(has_votes).astype(bool)
        if v.shape != (N,):
            raise ValueError(f"has_votes: expected shape ({N},), got {v.shape}")
        out["num_with_votes"] = int(v.sum())
        if v.any():
            out["kl_to_votes"] = _py(kl_divergence(s[v], p[v]).mean())
            out["js_to_votes"] = _py(js_divergence(s[v], p[v]).mean())
            out["top_gap_to_votes"] = _py(top_class_gap(p[v], s[v]))
        else:
            out["kl_to_votes"] = out["js_to_votes"] = out["top_gap_to_votes"] = None
    return out


# --------------------------------------------------------------------------- video level

# --------------------------------------------------------------------------- ambiguity (Sec. 5.4-5.5)

def clear_mask(soft_labels: Any, threshold: float = 0.9) -> np.ndarray:
    """Clips of the paper's "clear expression group": maximum soft label above ``threshold``.

    Sec. 5.5: "data with maximum soft label values of more than 0.9". The comparison is
    strict and ignores differences below 1e-6, so 9 of 10 votes (0.9, stored as float32
    0.8999999762) is not clear at 0.9 and 8 of 10 (float32 0.8000000119) is not clear at
    0.8 either; with ten annotators only unanimous clips are clear at the default.

    Args:
        soft_labels: (N, C) annotator distributions.
        threshold: the maximum soft label must exceed this.

    Returns:
        (N,) bool.
    """
    s = _probs(soft_labels, "soft_labels")
    if s.shape[0] == 0:
        return np.zeros(0, bool)
    return s.max(axis=1) > threshold + 1e-6


def coexistence_matrix(
    soft_labels: Any,
    classes: Sequence[str] | int,
    labels: Any = None,
) -> np.ndarray:
    """Mean soft label of the clips of each majority class (the paper's Fig. 5).

    Row ``i`` averages the soft labels of the clips whose majority class is ``i``; entry
    ``(i, j)`` is how much class ``j`` is voted for alongside ``i``. Rows sum to 1.

    Args:
        soft_labels: (N, C) annotator distributions.
        classes: the C class names (or C), to check the width.
        labels: optional (N,) majority class of each clip (e.g. DFEW's single label);
            -1 leaves a clip out. Default: the argmax of the soft label, leaving out the
            clips whose top share is tied between classes (no majority).

    Returns:
        (C, C) float64, rows = majority class; a class that is never the majority has a
        row of NaN.
    """
    s = _probs(soft_labels, "soft_labels")
    C = len(_class_names(classes, s.shape[1]))
    if labels is None:
        top = s.max(axis=1, keepdims=True) if s.size else np.zeros((0, 1))
        tied = (np.abs(s - top) <= 1e-6).sum(axis=1) > 1
        y = np.where(tied, -1, s.argmax(axis=1) if s.size else 0).astype(np.int64)
    else:
        y = _labels(labels, "labels")
        if y.shape[0] != s.shape[0]:
            raise ValueError(f"labels: expected {s.shape[0]} labels like soft_labels, got {y.shape[0]}")
        bad = (y < -1) | (y >= C)
        if bad.any():
            raise ValueError(f"labels: expected values in [-1, {C}), found {np.unique(y[bad])[:5].tolist()}")
    keep = y >= 0
    sums = np.zeros((C, C))
    np.add.at(sums, y[keep], s[keep])
    counts = np.bincount(y[keep], minlength=C).astype(np.float64)
    return np.divide(sums, counts[:, None], out=np.full((C, C), np.nan), where=counts[:, None] > 0)


