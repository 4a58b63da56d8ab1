"""Frame samplers: segment coverage, uniformity, determinism, short clips, multi-clip, dense."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from dfer.data.sampling import MultiClipSampler, SegmentSampler, segment_bounds
from dfer.errors import ConfigError, DataError


@pytest.mark.parametrize("n", [8, 9, 15, 16, 17, 31, 100, 257])
@pytest.mark.parametrize("mode", ["train", "test"])
def test_one_index_inside_each_segment(n, mode):
    s = SegmentSampler(8, mode)
    starts, ends = segment_bounds(n, 8)
    # segments tile [0, n) exactly
    assert starts[0] == 0 and ends[-1] == n and np.array_equal(starts[1:], ends[:-1]) and (ends > starts).all()
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = s.sample(n, rng)
        assert idx.dtype == np.int64 and idx.shape == (8,)
        assert ((idx >= starts) & (idx < ends)).all(), idx


def test_train_draws_are_uniform_within_a_segment():
    # 80 frames, 8 segments of 10 frames: offsets within segment 3 must be uniform on 0..9
    s = SegmentSampler(8, "train")
    rng = np.random.default_rng(1234)
    draws = np.stack([s.sample(80, rng) for _ in range(4000)])
    for k in (0, 3, 7):
        counts = np.bincount(draws[:, k] - 10 * k, minlength=10)
        assert counts.sum() == 4000 and len(counts) == 10
        assert chisquare(counts).pvalue > 1e-3
    # segments are drawn independently: the offset in segment 0 does not predict segment 1's
    r = np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]
    assert abs(r) < 0.06


def test_train_is_reproducible_from_generator_and_accepts_torch():
    s = SegmentSampler(8, "train")
    a = [s.sample(300, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    t = [s.sample(300, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert np.array_equal(t[0], t[1])
    assert not np.array_equal(s.sample(300, np.random.default_rng(8)), a[0])


def test_train_needs_a_generator():
    with pytest.raises(ValueError, match="explicit generator"):
        SegmentSampler(8, "train").sample(100)


@pytest.mark.parametrize("n,expected", [(16, [1, 3, 5, 7, 9, 11, 13, 15]), (8, list(range(8))),
                                        (80, [5, 15, 25, 35, 45, 55, 65, 75])])
def test_test_mode_is_deterministic_and_centred(n, expected):
    s = SegmentSampler(8, "test")
    assert s.sample(n).tolist() == expected
    assert np.array_equal(s.sample(n, np.random.default_rng(0)), s.sample(n, np.random.default_rng(99)))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("mode", ["train", "test"])
def test_short_clip_repeats_frames_evenly(n, mode):
    idx = SegmentSampler(8, mode).sample(n, np.random.default_rng(0))
    assert len(idx) == 8
    assert (np.diff(idx) >= 0).all()
    assert set(idx.tolist()) == set(range(n))  # every frame used
    counts = np.bincount(idx, minlength=n)
    assert counts.max() - counts.min() <= 1  # evenly


def test_errors():
    with pytest.raises(DataError, match=r"^expected at least 1 frame, found 0$"):
        SegmentSampler(8, "test").sample(0)
    with pytest.raises(ConfigError, match="num_frames must be >= 1, got 0"):
        SegmentSampler(0)
    with pytest.raises(ConfigError, match="mode must be 'train' or 'test'"):
        SegmentSampler(8, "val")
    with pytest.raises(DataError, match="found -3"):
        SegmentSampler(4).sample(-3, np.random.default_rng(0))


def test_multi_clip_offsets_distinct_and_inside_segments():
    s = MultiClipSampler(8, 3)
    idx = s.sample(96)  # segments of 12 frames
    assert idx.shape == (3, 8) and idx.dtype == np.int64
    starts, ends = segment_bounds(96, 8)
    assert ((idx >= starts) & (idx < ends)).all()
    assert len({tuple(r) for r in idx.tolist()}) == 3
    assert (np.diff(idx, axis=0) > 0).all()  # clips interleave in the same order in every segment
    assert idx[:, 0].tolist() == [2, 6, 10]  # fractions 1/6, 3/6, 5/6 of a 12-frame segment
    # one clip = the centre frame (test-mode segment sampling)
    assert np.array_equal(MultiClipSampler(8, 1).sample(50)[0], SegmentSampler(8, "test").sample(50))
    assert MultiClipSampler(8, 2).sample(3).shape == (2, 8)
