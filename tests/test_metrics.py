"""Behaviour of dfer.metrics: UAR / WAR against hand computations and loop references,
divergences against scipy, ECE against constructed models, video aggregation, ambiguity helpers."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from dfer import metrics as M


# --------------------------------------------------------------------------- references

def loop_uar_war(y_true, y_pred, num_classes):
    """UAR / WAR straight from the definitions, one clip at a time (no confusion matrix)."""
    recalls = []
    for c in range(num_classes):
        hits = [p == c for t, p in zip(y_true, y_pred) if t == c]
        if hits:
            recalls.append(sum(hits) / len(hits))
    uar = sum(recalls) / len(recalls) if recalls else math.nan
    war = sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true) if y_true else math.nan
    return uar, war


def loop_ece(probs, labels, num_bins):
    """Top-label ECE with bins (lo, hi], one bin and one clip at a time."""
    n = len(labels)
    total = 0.0
    for b in range(num_bins):
        lo, hi = b / num_bins, (b + 1) / num_bins
        members = [i for i in range(n) if (lo < probs[i].max() <= hi) or (b == 0 and probs[i].max() == 0)]
        if not members:
            continue
        acc = sum(int(np.argmax(probs[i]) == labels[i]) for i in members) / len(members)
        conf = sum(float(probs[i].max()) for i in members) / len(members)
        total += len(members) / n * abs(acc - conf)
    return total


def clips_from_cm(cm):
    """Expand a confusion matrix into (y_true, y_pred) lists."""
    y_true, y_pred = [], []
    for i, row in enumerate(cm):
        for j, n in enumerate(row):
            y_true += [i] * n
            y_pred += [j] * n
    return y_true, y_pred


def random_dists(rng, n, c, zeros=False):
    x = rng.gamma(0.7, size=(n, c))
    if zeros:
        x[rng.random((n, c)) < 0.4] = 0.0
        x[np.arange(n), rng.integers(0, c, n)] += 0.5  # keep every row non-empty
    return x / x.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- UAR / WAR by hand

# (cm rows = true class, UAR, WAR, absent classes), every number worked out on paper
HAND_CASES = [
    # recalls 3/4, 1/2, 4/6 -> UAR (9 + 6 + 8) / 36; WAR 8 / 12
    ([[3, 1, 0], [0, 1, 1], [1, 1, 4]], 23 / 36, 8 / 12, []),
    # class 2 absent from the fold (but predicted once): recalls 1/2, 3/3, 4/5 over 3 classes
    ([[1, 0, 0, 1], [0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 1, 4]], (0.5 + 1.0 + 0.8) / 3, 8 / 10, [2]),
    # everything wrong
    ([[0, 1], [1, 0]], 0.0, 0.0, []),
    # one class present: UAR equals its recall; two classes absent
    ([[0, 0, 0], [1, 2, 0], [0, 0, 0]], 2 / 3, 2 / 3, [0, 2]),
]


@pytest.mark.parametrize("cm, want_uar, want_war, want_absent", HAND_CASES)
def test_uar_war_match_hand_computations(cm, want_uar, want_war, want_absent):
    y_true, y_pred = clips_from_cm(cm)
    got = M.confusion_matrix(y_true, y_pred, len(cm))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, cm)
    assert M.uar(got) == pytest.approx(want_uar, abs=1e-12)
    assert M.war(got) == pytest.approx(want_war, abs=1e-12)
    assert M.absent_classes(got) == want_absent
    ref_uar, ref_war = loop_uar_war(y_true, y_pred, len(cm))
    assert M.uar(got) == pytest.approx(ref_uar, abs=1e-12)
    assert M.war(got) == pytest.approx(ref_war, abs=1e-12)


def test_confusion_matrix_rows_are_true_class():
    cm = M.confusion_matrix([0, 0, 1], [1, 1, 1], 2)
    np.testing.assert_array_equal(cm, [[0, 2], [0, 1]])


def test_uar_war_agree_with_loop_reference_on_random_folds():
    rng = np.random.default_rng(0)
    for trial in range(30):
        C = int(rng.integers(2, 9))
        n = int(rng.integers(1, 60))
        # draw from a subset of the classes so that some folds lack classes
        present = rng.choice(C, size=int(rng.integers(1, C + 1)), replace=False)
        y_true = rng.choice(present, n).tolist()
        y_pred = rng.integers(0, C, n).tolist()
        cm = M.confusion_matrix(y_true, y_pred, C)
        ref_uar, ref_war = loop_uar_war(y_true, y_pred, C)
        assert M.uar(cm) == pytest.approx(ref_uar, abs=1e-12)
        assert M.war(cm) == pytest.approx(ref_war, abs=1e-12)
        assert set(M.absent_classes(cm)) == set(range(C)) - set(y_true)


def test_uar_is_invariant_to_class_frequency_but_war_is_not():
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 1, 2, 2, 0, 2]
    cm = M.confusion_matrix(y_true, y_pred, 3)
    # duplicate every clip of class 0 (recall 1/3, below the accuracy of 6/9)
    dup = [(t, p) for t, p in zip(y_true, y_pred) if t == 0]
    y_true2 = y_true + [t for t, _ in dup]
    y_pred2 = y_pred + [p for _, p in dup]
    cm2 = M.confusion_matrix(y_true2, y_pred2, 3)
    assert M.uar(cm2) == pytest.approx(M.uar(cm), abs=1e-12)
    np.testing.assert_allclose(M.per_class_recall(cm2), M.per_class_recall(cm))
    assert M.war(cm) == pytest.approx(6 / 9)
    assert M.war(cm2) == pytest.approx(7 / 12)


def test_absent_class_gives_nan_recall_without_warning_and_finite_uar():
    cm = np.array([[2, 0, 0], [0, 0, 0], [1, 0, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = M.per_class_recall(cm)
        u = M.uar(cm)
    assert np.isnan(r[1]) and r[0] == 1.0 and r[2] == 0.5
    assert u == pytest.approx(0.75)


def test_empty_confusion_matrix_gives_nan_not_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm = M.confusion_matrix([], [], 4)
        assert math.isnan(M.uar(cm)) and math.isnan(M.war(cm))
    assert cm.shape == (4, 4) and cm.sum() == 0


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"y_true: expected class indices in \[0, 3\), found \[-1\] in 1 of 3 clips"):
        M.confusion_matrix([0, -1, 2], [0, 1, 2], 3)
    with pytest.raises(ValueError, match=r"y_pred: expected class indices in \[0, 3\), found \[3, 7\]"):
        M.confusion_matrix([0, 1, 2], [3, 7, 2], 3)
    with pytest.raises(ValueError, match=r"differ in length: 2 vs 3"):
        M.confusion_matrix([0, 1], [0, 1, 2], 3)
    with pytest.raises(ValueError, match=r"expected integer class indices"):
        M.confusion_matrix([0.5, 1.0], [0, 1], 3)
    with pytest.raises(ValueError, match=r"expected a 1-D label vector"):
        M.confusion_matrix([[0, 1]], [[0, 1]], 3)


def test_torch_inputs_give_the_same_numbers_as_numpy():
    y_true = torch.tensor([0, 1, 2, 2, 1])
    y_pred = torch.tensor([0, 2, 2, 2, 1])
    np.testing.assert_array_equal(M.confusion_matrix(y_true, y_pred, 3),
                                  M.confusion_matrix(y_true.numpy(), y_pred.numpy(), 3))
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    probs = torch.softmax(logits, 1)
    a = M.summarise(probs, y_true, ["a", "b", "c"])
    b = M.summarise(probs.detach().numpy(), y_true.numpy(), ["a", "b", "c"])
    assert a == b
    # mixed-precision probabilities are accepted too
    assert M.summarise(probs.to(torch.bfloat16), y_true, 3)["war"] == b["war"]


# --------------------------------------------------------------------------- divergences

def test_kl_matches_scipy_entropy_including_zeros_in_the_target():
    rng = np.random.default_rng(1)
    t = random_dists(rng, 50, 7, zeros=True)
    p = random_dists(rng, 50, 7)
    got = M.kl_divergence(t, p)
    want = np.array([entropy(ti, pi) for ti, pi in zip(t, p)])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_kl_is_zero_iff_equal_and_floors_impossible_classes():
    rng = np.random.default_rng(2)
    t = random_dists(rng, 20, 5, zeros=True)
    assert np.all(M.kl_divergence(t, t) < 1e-12)
    other = random_dists(rng, 20, 5)
    assert np.all(M.kl_divergence(t, other) > 1e-6)
    # the model gives 0 to a class with half of the votes: cost 0.5 * (log 0.5 - log eps)
    got = M.kl_divergence([[0.5, 0.5, 0.0]], [[1.0, 0.0, 0.0]], eps=1e-8)
    assert got[0] == pytest.approx(0.5 * math.log(0.5) + 0.5 * (math.log(0.5) - math.log(1e-8)))


def test_js_is_symmetric_bounded_and_matches_scipy():
    rng = np.random.default_rng(3)
    t = random_dists(rng, 40, 7, zeros=True)
    p = random_dists(rng, 40, 7, zeros=True)
    js = M.js_divergence(t, p)
    np.testing.assert_allclose(js, M.js_divergence(p, t), rtol=0, atol=1e-15)
    assert np.all(js >= 0) and np.all(js <= math.log(2))
    want = np.array([jensenshannon(a, b) ** 2 for a, b in zip(t, p)])  # natural log by default
    np.testing.assert_allclose(js, want, rtol=1e-9, atol=1e-12)
    assert np.all(M.js_divergence(t, t) < 1e-12)
    # disjoint supports reach the bound ln 2
    np.testing.assert_allclose(M.js_divergence(np.eye(3), np.eye(3)[[1, 2, 0]]), math.log(2))


def test_divergences_reject_logits():
    with pytest.raises(ValueError, match=r"probs: expected rows that sum to 1, .*not logits"):
        M.kl_divergence([[0.5, 0.5]], [[2.0, 1.0]])
    with pytest.raises(ValueError, match=r"target and probs differ in shape"):
        M.js_divergence([[0.5, 0.5]], [[0.5, 0.5], [1.0, 0.0]])


# --------------------------------------------------------------------------- calibration

def test_ece_is_zero_for_a_calibrated_model():
    # in each confidence bin the fraction of correct clips equals the confidence
    probs, labels = [], []
    for conf, n, n_correct in ((0.7, 10, 7), (0.5, 4, 2), (1.0, 5, 5), (0.4, 5, 2)):
        rest = (1.0 - conf) / 2
        for i in range(n):
            probs.append([conf, rest, rest])
            labels.append(0 if i < n_correct else 1)
    probs = np.array(probs)
    assert M.expected_calibration_error(probs, labels, num_bins=10) == pytest.approx(0.0, abs=1e-12)
    assert M.expected_calibration_error(probs, labels, num_bins=15) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_an_overconfident_model_matches_hand_computation():
    # 10 clips at confidence 0.95 with 6 correct (gap 0.35), 5 at 0.75 with 3 correct (gap 0.15)
    probs = [[0.95, 0.05, 0.0]] * 10 + [[0.75, 0.25, 0.0]] * 5
    labels = [0] * 6 + [1] * 4 + [0] * 3 + [2] * 2
    want = 10 / 15 * 0.35 + 5 / 15 * 0.15
    assert M.expected_calibration_error(probs, labels, num_bins=10) == pytest.approx(want, abs=1e-12)
    curve = M.reliability_curve(probs, labels, num_bins=10)
    assert curve["counts"].tolist() == [0] * 7 + [5, 0, 10]
    assert curve["accuracy"][9] == pytest.approx(0.6) and curve["confidence"][9] == pytest.approx(0.95)
    assert np.isnan(curve["accuracy"][:7]).all()
    np.testing.assert_allclose(curve["edges"], np.linspace(0, 1, 11))
    # with a single bin the ECE is |accuracy - mean confidence| = |9/15 - 13.25/15|
    assert M.expected_calibration_error(probs, labels, num_bins=1) == pytest.approx(abs(9 - 13.25) / 15)


def test_ece_matches_loop_reference_on_random_predictions():
    rng = np.random.default_rng(4)
    probs = random_dists(rng, 200, 7)
    labels = rng.integers(0, 7, 200)
    for bins in (1, 7, 15):
        assert M.expected_calibration_error(probs, labels, bins) == pytest.approx(
            loop_ece(probs, labels, bins), abs=1e-12)


def test_top_class_gap_and_nll():
    probs = [[0.8, 0.2], [0.3, 0.7]]
    target = [[0.6, 0.4], [0.0, 1.0]]
    assert M.top_class_gap(probs, target) == pytest.approx((0.2 + 0.3) / 2)
    assert M.negative_log_likelihood(probs, [0, 0]) == pytest.approx(-(math.log(0.8) + math.log(0.3)) / 2)


# --------------------------------------------------------------------------- summary

def test_summarise_is_json_ready_and_consistent():
    rng = np.random.default_rng(5)
    classes = ["happy", "sad", "neutral", "angry"]
    probs = random_dists(rng, 12, 4)
    labels = np.array([0, 0, 1, 1, 1, 3, 3, 0, -1, 1, 3, -1])  # class 2 absent, two unlabelled
    soft = random_dists(rng, 12, 4, zeros=True)
    has_votes = np.array([1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 1], bool)
    s = M.summarise(probs, labels, classes, soft_labels=soft, has_votes=has_votes)
    json.dumps(s, allow_nan=False)  # plain Python, no NaN
    keep = labels >= 0
    cm = M.confusion_matrix(labels[keep], probs[keep].argmax(1), 4)
    assert s["confusion_matrix"] == cm.tolist()
    assert s["num_clips"] == 12 and s["num_unlabelled"] == 2
    assert s["absent_classes"] == ["neutral"]
    assert s["per_class_recall"]["neutral"] is None
    assert s["support"] == {"happy": 3, "sad": 4, "neutral": 0, "angry": 3}
    ref_uar, ref_war = loop_uar_war(labels[keep].tolist(), probs[keep].argmax(1).tolist(), 4)
    assert s["uar"] == pytest.approx(ref_uar) and s["war"] == pytest.approx(ref_war)
    assert s["num_with_votes"] == 9
    assert s["kl_to_votes"] == pytest.approx(np.mean([entropy(a, b) for a, b in zip(soft[has_votes], probs[has_votes])]))
    assert s["js_to_votes"] == pytest.approx(np.mean([jensenshannon(a, b) ** 2 for a, b in zip(soft[has_votes], probs[has_votes])]))
    assert s["ece"] == pytest.approx(M.expected_calibration_error(probs[keep], labels[keep]))
    assert s["nll"] == pytest.approx(M.negative_log_likelihood(probs[keep], labels[keep]))


def test_summarise_rejects_logits_and_bad_labels():
    with pytest.raises(ValueError, match=r"not logits"):
        M.summarise(np.array([[2.0, -1.0], [0.5, 0.1]]), [0, 1], 2)
    with pytest.raises(ValueError, match=r"labels: expected values in \[-1, 2\), found \[5\]"):
        M.summarise(np.array([[0.5, 0.5]]), [5], 2)
    with pytest.raises(ValueError, match=r"classes: expected 2 names"):
        M.summarise(np.array([[0.5, 0.5]]), [0], ["a", "b", "c"])


# --------------------------------------------------------------------------- ambiguity

def test_clear_mask_is_strictly_above_threshold_for_float32_votes():
    votes = np.array([[10, 0, 0], [9, 1, 0], [8, 1, 1], [5, 5, 0]], np.float32)
    soft = votes / votes.sum(axis=1, keepdims=True)
    assert M.clear_mask(soft).tolist() == [True, False, False, False]
    # 8 of 10 stored as float32 is 0.800000011920929, still not "more than 0.8"
    assert M.clear_mask(soft, threshold=0.8).tolist() == [True, True, False, False]


def test_coexistence_rows_sum_to_one_and_average_by_majority_class():
    soft = np.array([
        [0.8, 0.2, 0.0],
        [0.6, 0.0, 0.4],
        [0.1, 0.0, 0.9],
        [0.5, 0.5, 0.0],  # tie: no majority class, left out by default
    ])
    m = M.coexistence_matrix(soft, ["happy", "sad", "neutral"])
    np.testing.assert_allclose(m[0], [0.7, 0.1, 0.2])
    assert np.isnan(m[1]).all()  # never the majority
    np.testing.assert_allclose(m[2], [0.1, 0.0, 0.9])
    # with given majority labels the tie joins class 1
    m2 = M.coexistence_matrix(soft, 3, labels=[0, 0, 2, 1])
    np.testing.assert_allclose(m2[1], [0.5, 0.5, 0.0])
    rng = np.random.default_rng(7)
    big = M.coexistence_matrix(random_dists(rng, 300, 7, zeros=True), 7)
    rows = ~np.isnan(big).any(axis=1)
    assert rows.sum() == 7
    np.testing.assert_allclose(big[rows].sum(axis=1), 1.0)
    # each row's own class holds its largest share (it is the majority of every member)
    assert np.all(np.argmax(big, axis=1) == np.arange(7))


