"""Configuration of robust learning (RDFER: clip agreement, sample weighting, key-expression sampling).

Liu, Wang, Shen, *Robust Dynamic Facial Expression Recognition* (arXiv:2502.16129) tell hard
from noisy samples by "the prediction agreement of the model on different sampled clips of
the video"; the numbers below are this project's choices (the paper's code is not public),
justified in docs/rdfer.md, section "Thresholds and defaults".
"""

from __future__ import annotations

from dataclasses import dataclass

from dfer.errors import ConfigError

NOISY_POLICIES = ("downweight", "correct")
SAMPLERS = ("segment", "key")


@dataclass
class RobustConfig:
    """``robust:`` section of a run config.

    Attributes:
        enabled: off by default (plain training).
        num_clips: K, differently sampled clips per training video in an agreement pass.
        warmup_epochs: epochs trained with weight 1 for every clip before the first pass
            (the model must first learn the easy, majority pattern).
        every: an agreement pass at the start of every ``every``-th epoch after warm-up.
        momentum: the per-video consensus and agreement are exponential moving averages
            over passes (0 = use only the latest pass).
        agree_threshold: τ_a; a video is *consistent* when its (averaged) agreement, the
            fraction of the K clips whose top class is the consensus class, is >= τ_a.
        confidence_threshold: τ_c; a consistent video is *noisy* only when the consensus
            gives its own top class at least τ_c (0 = no such condition; see docs/rdfer.md
            for the measurement behind the default and for soft labels) ...
        support_threshold: τ_s; ... and the label (hard: its class, soft: the vote
            distribution) at most τ_s, i.e. ``<p̄, y> <= τ_s``.
        min_label_uar: a pass changes nothing (weights, targets, key scores, averages) unless
            the consensus of that pass agrees with the training labels with a balanced
            accuracy (mean recall over the label classes) of at least this: a model that
            still predicts the class prior would call every minority-class video noisy, and
            down-weighting them would lock that in (measured, docs/rdfer.md).
        hard_weight: loss weight of hard videos (inconsistent, or consistent but not
            confidently against the label); > 1 learns them harder.
        noisy_policy: ``downweight`` (loss weight ``noisy_weight``, label kept) or
            ``correct`` (target moved toward the consensus by ``correct_mix``, weight 1).
        noisy_weight: loss weight of noisy videos under ``downweight`` (0 drops them).
        correct_mix: β; corrected target ``(1 - β) y + β onehot(ĉ)``; the hard label
            becomes ĉ when β >= 0.5.
        sampler: frame sampler of the training clips: ``segment`` (TSN) or ``key``
            (key-expression re-sampling, :mod:`dfer.robust.keyframe`).
        key_temperature: temperature of the softmax over per-frame key scores.
        key_uniform: share of the frame distribution kept uniform, so that context frames
            are still drawn.
        max_frames: key scores are kept for at most this many frame positions per video
            (longer videos are scored on an even grid and interpolated).
        truth: where the synthetic truth file lies, to score the detection in robust.csv:
            ``auto`` (the corpus root of the training table, when it has one), a path
            (corpus root or synthetic_truth.csv), or ``""`` (never).
    """

    enabled: bool = False
    num_clips: int = 4
    warmup_epochs: int = 2
    every: int = 1
    momentum: float = 0.5
    agree_threshold: float = 0.75
    confidence_threshold: float = 0.0
    support_threshold: float = 0.15
    min_label_uar: float = 0.3
    hard_weight: float = 1.5
    noisy_policy: str = "downweight"
    noisy_weight: float = 0.1
    correct_mix: float = 1.0
    sampler: str = "key"
    key_temperature: float = 0.1
    key_uniform: float = 0.3
    max_frames: int = 64
    truth: str = "auto"

    def validate(self) -> "RobustConfig":
        """Raise :class:`ConfigError` naming the first field out of range; return self."""
        checks = (
            ("num_clips", self.num_clips >= 2, ">= 2 (agreement needs several clips)"),
            ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"),
            ("every", self.every >= 1, ">= 1"),
            ("momentum", 0.0 <= self.momentum < 1.0, "in [0, 1)"),
            ("agree_threshold", 0.0 < self.agree_threshold <= 1.0, "in (0, 1]"),
            ("confidence_threshold", 0.0 <= self.confidence_threshold <= 1.0, "in [0, 1]"),
            ("support_threshold", 0.0 <= self.support_threshold <= 1.0, "in [0, 1]"),
            ("min_label_uar", 0.0 <= self.min_label_uar <= 1.0, "in [0, 1]"),
            ("hard_weight", self.hard_weight >= 0.0, ">= 0"),
            ("noisy_policy", self.noisy_policy in NOISY_POLICIES, f"one of {list(NOISY_POLICIES)}"),
            ("noisy_weight", self.noisy_weight >= 0.0, ">= 0"),
            ("correct_mix", 0.0 <= self.correct_mix <= 1.0, "in [0, 1]"),
            ("sampler", self.sampler in SAMPLERS, f"one of {list(SAMPLERS)}"),
            ("key_temperature", self.key_temperature > 0.0, "> 0"),
            ("key_uniform", 0.0 <= self.key_uniform <= 1.0, "in [0, 1]"),
            ("max_frames", self.max_frames >= 2, ">= 2"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"robust.{name} = {getattr(self, name)!r}, expected {expected}")
        return self
