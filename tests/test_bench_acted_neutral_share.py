"""benchmarks/acted_neutral_share.py: its rule syntax and its counts, on answers made up here."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_benchmark

bench = load_benchmark("acted_neutral_share")


@pytest.mark.parametrize("text, rule", [("none", ("none", 0.0)), ("flip", ("flip", 0.0)), ("0.5", ("none", 0.5)),
                                        ("flip:0.2", ("flip", 0.2)), ("none:1", ("none", 1.0))])
def test_rules_read_as_written(text, rule):
    assert bench.parse_rule(text) == rule


def test_the_counts_are_over_the_non_neutral_clips_and_their_frames():
    classes = ["happy", "sad", "neutral"]
    labels = np.array([0, 1, 2, 0])
    clip_pred = np.array([2, 1, 2, 0])  # the first happy clip called neutral
    frames = [np.array([2, 2, 0]), np.array([1, 2]), np.array([2, 2, 2, 2]), np.array([0])]
    s = bench.scores(labels, clip_pred, frames, classes)
    assert s["clips_called_neutral"] == [1, 3]
    assert s["frames_called_neutral"] == [3, 6]  # the neutral clip's frames do not count
    assert s["clip_accuracy"] == pytest.approx(3 / 4)
    assert s["clip_uar"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert s["frame_accuracy"] == pytest.approx((1 + 1 + 4 + 1) / 10)
