"""Frame samplers: which frames of a clip the model sees.

MIDAS (Kawamura et al., section 4.3) follows TSN/TSM: "we divided each video into eight
segments and sampled one frame from each segment". :class:`SegmentSampler` is that rule
(a uniformly random frame per segment at training, the centre frame at test);
:class:`MultiClipSampler` spreads K test clips over each segment.

Samplers are small pure objects: ``sample(n_available, rng)`` maps a frame count and an
explicit random generator to int64 frame indices, so the same (generator seed, clip)
always gives the same frames whichever worker process draws them. Segments are computed
in integer arithmetic (segment ``k`` is ``[k*n // T, (k+1)*n // T)``) so every index
provably lies inside its segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import numpy as np
import torch

from dfer.errors import ConfigError, DataError

Generator = Union[np.random.Generator, torch.Generator]
Mode = Literal["train", "test"]

__all__ = ["SegmentSampler", "MultiClipSampler", "segment_bounds", "uniform"]


def uniform(rng: Generator, size: int) -> np.ndarray:
    """(size,) float64 draws from U[0, 1) taken from a numpy or a torch generator."""
    if isinstance(rng, np.random.Generator):
        return rng.random(size)
    if isinstance(rng, torch.Generator):
        return torch.rand(size, generator=rng, dtype=torch.float64).numpy()
    raise TypeError(f"expected a numpy.random.Generator or torch.Generator, got {type(rng).__name__}")


def segment_bounds(n_available: int, num_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) frame of each of ``num_segments`` equal segments.

    Returns:
        (starts, ends): int64 arrays of shape (num_segments,). When ``n_available >=
        num_segments`` every segment holds at least one frame and the segments tile
        ``[0, n_available)`` without gaps or overlap.
    """
    k = np.arange(num_segments + 1, dtype=np.int64)
    edges = (k * n_available) // num_segments
    return edges[:-1], edges[1:]


def _check_count(n_available: int) -> int:
    n = int(n_available)
    if n < 1:
        raise DataError(f"expected at least 1 frame, found {n}")
    return n


def _spread(n_available: int, num_frames: int) -> np.ndarray:
    """Indices for a clip shorter than ``num_frames``: each frame repeated evenly, in order."""
    k = np.arange(num_frames, dtype=np.int64)
    return ((2 * k + 1) * n_available) // (2 * num_frames)


def _check_positive(name: str, value: int) -> int:
    if int(value) < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class SegmentSampler:
    """TSN segment sampling: one frame from each of ``num_frames`` equal segments.

    Args:
        num_frames: T, the number of segments and of frames returned (MIDAS: 8).
        mode: ``"train"`` draws a uniformly random frame inside each segment;
            ``"test"`` takes each segment's centre frame (no randomness).

    Clips with fewer than ``num_frames`` frames repeat their frames evenly (indices are
    non-decreasing and every frame appears), in both modes.
    """

    num_frames: int = 8
    mode: Mode = "train"

    def __post_init__(self):
        _check_positive("num_frames", self.num_frames)
        if self.mode not in ("train", "test"):
            raise ConfigError(f"sampler mode must be 'train' or 'test', got {self.mode!r}")

    def sample(self, n_available: int, rng: Generator | None = None) -> np.ndarray:
        """Frame indices, int64 of shape (num_frames,), non-decreasing, in ``[0, n_available)``.

        Raises:
            DataError: ``n_available < 1``.
            ValueError: train mode without a generator.
        """
        n = _check_count(n_available)
        if n < self.num_frames:
            return _spread(n, self.num_frames)
        starts, ends = segment_bounds(n, self.num_frames)
        if self.mode == "test":
            return starts + (ends - starts) // 2
        if rng is None:
            raise ValueError("train-mode sampling needs an explicit generator (rng)")
        offsets = np.floor(uniform(rng, self.num_frames) * (ends - starts)).astype(np.int64)
        # float rounding must never push a draw onto the next segment's first frame
        return starts + np.minimum(offsets, ends - starts - 1)


@dataclass(frozen=True)
class MultiClipSampler:
    """K deterministic test clips of T frames: clip j takes, in every segment, the frame at
    fraction (j + 1/2) / K of the segment, so the clips interleave and together cover each
    segment evenly (K = 1 is :class:`SegmentSampler` in test mode).

    ``sample`` returns int64 of shape (num_clips, num_frames); rows are distinct whenever
    the segments hold at least ``num_clips`` frames.
    """

    num_frames: int = 8
    num_clips: int = 2

    def __post_init__(self):
        _check_positive("num_frames", self.num_frames)
        _check_positive("num_clips", self.num_clips)

    def sample(self, n_available: int, rng: Generator | None = None) -> np.ndarray:
        n = _check_count(n_available)
        if n < self.num_frames:
            return np.broadcast_to(_spread(n, self.num_frames), (self.num_clips, self.num_frames)).copy()
        starts, ends = segment_bounds(n, self.num_frames)
        frac = (2 * np.arange(self.num_clips, dtype=np.int64) + 1)[:, None]
        # integer form of floor((j + 1/2) / K * length), exact for any clip length
        return starts[None, :] + (frac * (ends - starts)[None, :]) // (2 * self.num_clips)
