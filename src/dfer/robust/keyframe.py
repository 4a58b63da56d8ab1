"""Key-expression re-sampling: score the frames of a video, draw the clip around the key ones.

RDFER (Liu, Wang, Shen, arXiv:2502.16129, abstract): "The key expression re-sampling
framework is designed to identify the key expression, thereby mitigating the potential
confusion caused by non-target expressions." The design here (docs/rdfer.md, part 2):

* scorer (trained alongside, no extra parameters): during an agreement pass the model's
  per-frame (or per-snippet) class probabilities ``p_t`` on the K clips are collected; the
  key score of frame t is ``s_t = p_t[c]``, the evidence of frame t for the video's
  principal class c (its label, or the consensus class where the label was judged noisy).
  Frames no clip visited are linearly interpolated; scores are averaged over passes.
* sampler: frame distribution ``q = (1 - ρ) softmax(s / τ) + ρ / n`` and T frames (or
  T / L snippets of L consecutive frames) drawn by stratified inverse-CDF sampling, so
  the draws stay in temporal order, fall where q has mass, and still see some context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dfer.data.sampling import SegmentSampler, uniform
from dfer.errors import ConfigError

__all__ = ["grid_positions", "frame_scores", "key_distribution", "stratified_draw", "KeyExpressionSampler",
           "ClipSetSampler"]


def grid_positions(n_frames: int, max_frames: int) -> np.ndarray:
    """Frame positions (float64, (min(n, G),)) at which a video's key scores are stored:
    every frame when ``n <= G``, else G evenly spaced positions over ``[0, n - 1]``."""
    g = min(int(n_frames), int(max_frames))
    return np.linspace(0.0, n_frames - 1.0, g) if g > 1 else np.zeros(1)


def frame_scores(frame_index: np.ndarray, frame_evidence: np.ndarray, n_frames: int, max_frames: int) -> np.ndarray:
    """Key scores on the storage grid from the frames the clips visited.

    Args:
        frame_index: int (M,) frame indices seen (repeats allowed, e.g. K clips x T frames).
        frame_evidence: float (M,) the principal class's probability at each of them.
        n_frames: frames of the video.
        max_frames: G, see :func:`grid_positions`.

    Returns:
        float32 (min(n_frames, G),): the mean evidence per visited frame, linearly
        interpolated in between (held constant beyond the first / last visited frame).
    """
    frame_index = np.asarray(frame_index, np.int64).reshape(-1)
    frame_evidence = np.asarray(frame_evidence, np.float64).reshape(-1)
    uniq, inv = np.unique(frame_index, return_inverse=True)
    mean = np.bincount(inv, weights=frame_evidence) / np.bincount(inv)
    return np.interp(grid_positions(n_frames, max_frames), uniq, mean).astype(np.float32)


def key_distribution(scores: np.ndarray, n_frames: int, temperature: float = 0.1, uniform_share: float = 0.3
                     ) -> np.ndarray:
    """Distribution over the ``n_frames`` frames: ``(1 - ρ) softmax(s / τ) + ρ / n``.

    Args:
        scores: float (G,) key scores on :func:`grid_positions` (interpolated to every frame).

    Returns:
        float64 (n_frames,) summing to 1.
    """
    s = np.asarray(scores, np.float64)
    s = np.interp(np.arange(n_frames), grid_positions(n_frames, len(s)), s) if len(s) != n_frames else s
    z = np.exp((s - s.max()) / temperature)
    q = (1 - uniform_share) * z / z.sum() + uniform_share / n_frames
    return q / q.sum()


def stratified_draw(q: np.ndarray, num_draws: int, rng) -> np.ndarray:
    """``num_draws`` frames from distribution ``q`` by stratified inverse-CDF sampling:
    draw k lies at quantile ``(k + U_k) / num_draws``, so the result is non-decreasing.

    Args:
        q: float (n,) summing to 1.
        rng: numpy or torch generator.

    Returns:
        int64 (num_draws,) in ``[0, n)``.
    """
    cdf = np.cumsum(q)
    u = (np.arange(num_draws) + uniform(rng, num_draws)) / num_draws
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(q) - 1).astype(np.int64)


@dataclass
class KeyExpressionSampler:
    """Training sampler drawing the clip's frames around each video's key expression.

    Picklable and model-free: it holds the key scores as CPU tensors in shared memory, which
    :class:`dfer.robust.learner.RobustLearner` updates in place between epochs (DataLoader
    workers, persistent or not, see the new values).

    Args:
        num_frames: T, frames returned.
        scores: float32 (N, G) key scores per video on :func:`grid_positions`.
        valid: bool (N,) whether a video has been scored yet (else TSN segment sampling).
        snippet: L; T // L centres are drawn and each expanded to L consecutive frames
            (for the short-term stream of ``rdfer_resnet18``); 1 = single frames.
        temperature, uniform_share: see :func:`key_distribution`.

    ``sample(n_available, rng, index=None)`` needs the video's row ``index`` (the dataset
    passes it to samplers whose ``uses_index`` is true); without it, or before the video was
    scored, it falls back to TSN segment sampling.
    """

    num_frames: int
    scores: torch.Tensor
    valid: torch.Tensor
    snippet: int = 1
    temperature: float = 0.1
    uniform_share: float = 0.3
    uses_index: bool = True

    def __post_init__(self):
        if self.snippet < 1 or self.num_frames < 1:
            raise ConfigError(f"key sampler: num_frames ({self.num_frames}) and snippet ({self.snippet}) must be >= 1")
        self._fallback = SegmentSampler(self.num_frames, mode="train")

    def sample(self, n_available: int, rng=None, index: int | None = None) -> np.ndarray:
        """int64 (num_frames,) non-decreasing frame indices in ``[0, n_available)``."""
        n = int(n_available)
        if index is None or n < 2 or not bool(self.valid[index]):
            return self._fallback.sample(n, rng)
        g = min(n, self.scores.shape[1])
        q = key_distribution(self.scores[index, :g].numpy(), n, self.temperature, self.uniform_share)
        L = min(self.snippet, self.num_frames)
        centres = stratified_draw(q, -(-self.num_frames // L), rng)
        offsets = np.arange(L) - (L - 1) // 2
        frames = np.clip(centres[:, None] + offsets[None, :], 0, n - 1).reshape(-1)[: self.num_frames]
        return np.sort(frames)


@dataclass(frozen=True)
class ClipSetSampler:
    """K independently drawn TSN clips of T frames: int64 (K, T); the agreement pass's clips."""

    num_frames: int
    num_clips: int

    def sample(self, n_available: int, rng=None) -> np.ndarray:
        s = SegmentSampler(self.num_frames, mode="train")
        return np.stack([s.sample(n_available, rng) for _ in range(self.num_clips)])
