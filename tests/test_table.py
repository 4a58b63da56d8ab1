"""ClipTable.resolve_labels: every hard label decided, ties by a stated rule (data.ties)."""

from __future__ import annotations

import numpy as np
import pytest

from dfer.data.table import ClipTable
from dfer.errors import DataError

CLASSES = ("happy", "sad", "neutral", "angry")


def table(rows, labels=None) -> ClipTable:
    """One clip per row of votes (None = no votes), ids c0, c1, ..."""
    votes = np.array([[np.nan] * len(CLASSES) if r is None else r for r in rows], np.float32)
    ids = [f"c{i}" for i in range(len(rows))]
    return ClipTable.build(CLASSES, ids, [f"/x/{i}.png" for i in ids], votes=votes, label=labels, name="toy")


ROWS = [
    [5, 3, 2, 0],  # c0: happy
    [4, 4, 2, 0],  # c1: tie happy / sad
    [0, 3, 3, 3],  # c2: tie sad / neutral / angry
    [1, 0, 2, 7],  # c3: angry
    [0, 5, 0, 5],  # c4: tie sad / angry
]


def test_drop_and_first():
    t = table(ROWS)
    first = t.resolve_labels("first")
    assert first.clip_id.tolist() == ["c0", "c1", "c2", "c3", "c4"]
    assert first.label.tolist() == [0, 0, 1, 3, 1]  # ties: the first tied class in class order
    drop = t.resolve_labels("drop")
    assert drop.clip_id.tolist() == ["c0", "c3"] and drop.label.tolist() == [0, 3]
    np.testing.assert_array_equal(drop.votes, t.votes[[0, 3]])  # rows stay whole
    assert (t.label == -1).all()  # the caller's table is left alone


def test_a_given_label_wins_over_votes_and_no_ties_needs_no_rule():
    t = table([[5, 5, 0, 0], [0, 0, 1, 0], None], labels=[2, -1, 3])
    for ties in (None, "drop", "first", "random"):
        out = t.resolve_labels(ties)
        assert out.clip_id.tolist() == ["c0", "c1", "c2"] and out.label.tolist() == [2, 2, 3], ties


def test_random_is_seeded_stable_per_clip_and_picks_only_tied_classes():
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(300):
        tied = rng.choice(4, size=int(rng.integers(2, 5)), replace=False)
        v = np.zeros(4)
        v[tied] = 3
        rows.append(v)
    t = table(rows)
    a = t.resolve_labels("random", seed=7)
    assert all(t.votes[i, lab] == 3 for i, lab in enumerate(a.label))  # never a class outside the tie
    assert np.array_equal(a.label, t.resolve_labels("random", seed=7).label)
    # the same clip gets the same class in any subset and any order of the table
    pick = np.arange(300)[::-1][rng.permutation(300)[:120]]
    sub = t.take(pick).resolve_labels("random", seed=7)
    assert dict(zip(sub.clip_id, sub.label)) == {c: a.label[int(c[1:])] for c in sub.clip_id}
    # another seed draws again: on two-way ties alone half the clips would differ
    b = t.resolve_labels("random", seed=8)
    assert (a.label != b.label).mean() > 0.3
    # every class of a tie can be drawn
    counts = np.bincount(table([[4, 4, 0, 0]] * 200).resolve_labels("random", seed=1).label, minlength=4)
    assert counts[2:].sum() == 0 and counts[:2].min() > 60  # about half each


def test_unset_with_ties_says_how_many_which_and_what_to_set():
    with pytest.raises(DataError, match=r"^corpus/fold1 \(training clips\): 3 clip\(s\) have a tie for the most votes "
                                        r"\(e\.g\. \['c1', 'c2', 'c4'\]\); set data\.ties=drop, first or random"):
        table(ROWS).resolve_labels(None, where="corpus/fold1 (training clips)")
    with pytest.raises(DataError, match=r"^toy: 3 clip\(s\) have a tie"):  # the table's name by default
        table(ROWS).resolve_labels(None)


def test_a_clip_with_neither_votes_nor_label_is_an_error_whatever_the_rule():
    t = table([[1, 0, 0, 0], None, None])
    for ties in (None, "drop", "first", "random"):
        with pytest.raises(DataError, match=r"toy: 2 clip\(s\) have neither a label nor votes \(e\.g\. \['c1', 'c2'\]"):
            t.resolve_labels(ties)


def test_an_unknown_rule_is_an_error():
    with pytest.raises(DataError, match=r"data\.ties must be drop, first or random, got 'majority'"):
        table(ROWS).resolve_labels("majority")
