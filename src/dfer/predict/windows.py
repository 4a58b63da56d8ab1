"""Where ``dfer predict``'s windows lie in a clip and which frames each feeds the model
(pure functions; the placement rule is in :mod:`dfer.predict`'s docstring, step 2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfer.data.sampling import SegmentSampler

__all__ = ["WindowPlan", "window_length", "plan_windows", "no_face_spans"]


@dataclass(frozen=True)
class WindowPlan:
    """Sliding windows over a clip of ``num_video_frames`` frames.

    Attributes:
        starts: (W,) int64 first frame of each window, non-decreasing.
        ends: (W,) int64 one past the last frame of each window.
        indices: (W, num_frames) int64 frames each window feeds the model (non-decreasing
            within a row, inside ``[start, end)``; the first column is non-decreasing over rows).
    """

    starts: np.ndarray
    ends: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def sampled(self) -> np.ndarray:
        """(N,) bool: the frames of the clip some window feeds the model."""
        mask = np.zeros(int(self.ends.max()), bool)
        mask[self.indices.ravel()] = True
        return mask

    def on_faces(self, found: np.ndarray) -> "WindowPlan":
        """The same windows, each sampled frame without a face (``found`` False: a black
        lead-in, the face turned away or out of the picture) replaced by the nearest frame
        of its window that has one (the earlier on ties); a window without any face frame
        keeps its frames (it gets no distribution, see ``min_face``)."""
        found = np.asarray(found, bool)
        indices = self.indices.copy()
        for w, (s, e) in enumerate(zip(self.starts, self.ends)):
            have = np.flatnonzero(found[s:e]) + s
            if len(have) == 0 or found[indices[w]].all():
                continue
            pos = np.clip(np.searchsorted(have, indices[w]), 0, len(have) - 1)
            before = have[np.maximum(pos - 1, 0)]
            after = have[pos]
            nearest = np.where(np.abs(indices[w] - before) <= np.abs(after - indices[w]), before, after)
            indices[w] = np.where(found[indices[w]], indices[w], nearest)
        return WindowPlan(self.starts, self.ends, indices)


def window_length(window_seconds: float, fps: float) -> int:
    """Frames in a window of ``window_seconds`` at ``fps`` (at least 1)."""
    return max(1, int(round(window_seconds * fps)))


def plan_windows(num_video_frames: int, window: int, stride: int, num_frames: int) -> WindowPlan:
    """Window placement and TSN sampling inside each window (see the module docstring).

    Args:
        num_video_frames: N >= 1 frames in the clip.
        window: L >= 1 frames per window.
        stride: frames between consecutive starts (>= 1).
        num_frames: T frames the model takes per window.

    Returns:
        :class:`WindowPlan`. Starts are ``0, stride, 2*stride, ...`` while a full window
        fits; if frames remain after the last of them, a final window ``[N - L, N)`` is
        added. ``N < L`` gives one window ``[0, N)``. Each window's frames are the segment
        centres of :class:`dfer.data.sampling.SegmentSampler` (test mode) over its span.
    """
    n, L, s = int(num_video_frames), int(window), int(stride)
    if n < 1 or L < 1 or s < 1:
        raise ValueError(f"expected num_video_frames, window and stride >= 1, got {n}, {L}, {s}")
    if n <= L:
        starts = np.zeros(1, np.int64)
    else:
        starts = np.arange(0, n - L + 1, s, dtype=np.int64)
        if starts[-1] + L < n:
            starts = np.append(starts, n - L)
    ends = np.minimum(starts + L, n)
    sampler = SegmentSampler(num_frames, mode="test")
    offsets = {int(length): sampler.sample(int(length)) for length in np.unique(ends - starts)}
    indices = np.stack([start + offsets[int(end - start)] for start, end in zip(starts, ends)]).astype(np.int64)
    return WindowPlan(starts, ends, indices)


def no_face_spans(found: np.ndarray, fps: float) -> list[tuple[float, float]]:
    """Runs of frames without a face as ``(start_s, end_s)`` (frame ``t`` spans
    ``[t / fps, (t + 1) / fps)``)."""
    missing = ~np.asarray(found, bool)
    if not missing.any():
        return []
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(float(a / fps), float(b / fps)) for a, b in zip(starts, ends)]
