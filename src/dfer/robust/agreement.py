"""Clip agreement: tell clean, hard and noisy training videos apart (pure functions).

RDFER (Liu, Wang, Shen, arXiv:2502.16129, abstract) distinguishes hard from noisy samples
"by evaluating the prediction agreement of the model on different sampled clips of the
video". The formulas here are this project's design (docs/rdfer.md):

* consensus ``p̄_i = (1/K) Σ_k p_ik`` over the K clips' class probabilities;
* agreement ``a_i = (1/K) Σ_k [argmax p_ik = argmax p̄_i]`` in [1/K, 1], 1 iff every clip
  votes for the consensus class (identical clips: 1, the maximum);
* split, with the label distribution ``y_i`` (one-hot for hard labels, the votes for soft):
  clean  = ``a_i >= τ_a`` and the consensus class is a top class of ``y_i``;
  noisy  = ``a_i >= τ_a``, the consensus class is not a top class of ``y_i``,
  ``max p̄_i >= τ_c`` and ``<p̄_i, y_i> <= τ_s`` (consistently, confidently against the label);
  hard   = everything else (clips disagree, or the model agrees with itself only weakly).
"""

from __future__ import annotations

import torch

from dfer.metrics import confusion_matrix, uar
from dfer.targets import blend, one_hot

CLEAN, HARD, NOISY = 0, 1, 2
SPLIT_NAMES = ("clean", "hard", "noisy")

__all__ = ["CLEAN", "HARD", "NOISY", "SPLIT_NAMES", "clip_agreement", "split_samples", "label_uar",
           "sample_weights", "corrected_targets"]


def clip_agreement(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Consensus and agreement of K clips per video.

    Args:
        probs: float (N, K, C) class probabilities of K clips of each of N videos.

    Returns:
        (consensus float (N, C): the mean over clips, agreement float (N,) in [1/K, 1]: the
        fraction of clips whose top class is the consensus's top class).
    """
    if probs.ndim != 3 or probs.shape[1] < 1:
        raise ValueError(f"Expected probabilities of shape (N, K, C), got {tuple(probs.shape)}")
    consensus = probs.mean(dim=1)
    top = consensus.argmax(dim=-1)
    agreement = (probs.argmax(dim=-1) == top[:, None]).to(probs.dtype).mean(dim=1)
    return consensus, agreement


def split_samples(consensus: torch.Tensor, agreement: torch.Tensor, target: torch.Tensor, *,
                  agree_threshold: float = 0.75, confidence_threshold: float = 0.0,
                  support_threshold: float = 0.15) -> torch.Tensor:
    """Three-way split of videos into clean / hard / noisy.

    Args:
        consensus: float (N, C) mean class probabilities over clips (rows sum to 1).
        agreement: float (N,) in [0, 1], see :func:`clip_agreement`.
        target: float (N, C) label distributions (one-hot or vote fractions).
        agree_threshold: τ_a, minimum agreement of a consistent video.
        confidence_threshold: τ_c, minimum consensus top probability of a noisy video.
        support_threshold: τ_s, maximum ``<p̄, y>`` of a noisy video.

    Returns:
        int64 (N,) codes :data:`CLEAN`, :data:`HARD`, :data:`NOISY`.
    """
    if consensus.shape != target.shape or agreement.shape != consensus.shape[:1]:
        raise ValueError(f"Expected consensus and target (N, C) and agreement (N,), got "
                         f"{tuple(consensus.shape)}, {tuple(target.shape)}, {tuple(agreement.shape)}")
    top = consensus.argmax(dim=-1)
    conf = consensus.gather(1, top[:, None]).squeeze(1)
    y_top = target.gather(1, top[:, None]).squeeze(1)
    agrees = y_top >= target.max(dim=-1).values - 1e-6
    support = (consensus * target).sum(dim=-1)
    consistent = agreement >= agree_threshold - 1e-6
    noisy = consistent & ~agrees & (conf >= confidence_threshold) & (support <= support_threshold)
    clean = consistent & agrees
    split = torch.full_like(top, HARD)
    split[clean] = CLEAN
    split[noisy] = NOISY
    return split


def label_uar(consensus: torch.Tensor, target: torch.Tensor) -> float:
    """Balanced accuracy of the consensus class against the label's top class: the mean, over
    the classes that are some video's label, of the fraction of their videos whose consensus
    is that class (1/C for a model that predicts one class for everything).

    Args:
        consensus: float (N, C); target: float (N, C) label distributions.
    """
    lab, pred = target.argmax(dim=-1).numpy(), consensus.argmax(dim=-1).numpy()
    return uar(confusion_matrix(lab, pred, consensus.shape[-1]))


def sample_weights(split: torch.Tensor, *, hard_weight: float = 1.5, noisy_weight: float = 0.1,
                   noisy_policy: str = "downweight") -> torch.Tensor:
    """Per-video loss weights: clean 1, hard ``hard_weight``, noisy ``noisy_weight`` under
    ``downweight`` or 1 under ``correct`` (its target is corrected instead).

    Args:
        split: int64 (N,) codes from :func:`split_samples`.

    Returns:
        float32 (N,).
    """
    w = torch.ones(split.shape, dtype=torch.float32, device=split.device)
    w[split == HARD] = float(hard_weight)
    if noisy_policy == "downweight":
        w[split == NOISY] = float(noisy_weight)
    elif noisy_policy != "correct":
        raise ValueError(f"noisy_policy must be 'downweight' or 'correct', got {noisy_policy!r}")
    return w


def corrected_targets(soft: torch.Tensor, label: torch.Tensor, consensus: torch.Tensor, split: torch.Tensor, *,
                      noisy_policy: str = "downweight", correct_mix: float = 1.0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets after the noisy policy: under ``correct``, noisy videos get
    ``(1 - β) y + β onehot(argmax p̄)`` and, when β >= 0.5, the hard label ``argmax p̄``.

    Args:
        soft: float (N, C) soft labels (rows sum to 1).
        label: int64 (N,) hard labels (-1 = none).
        consensus: float (N, C).
        split: int64 (N,).

    Returns:
        (soft float (N, C) rows still summing to 1, label int64 (N,)); copies.
    """
    soft, label = soft.clone(), label.clone()
    if noisy_policy != "correct":
        return soft, label
    noisy = split == NOISY
    top = consensus.argmax(dim=-1)
    soft[noisy] = blend(soft[noisy], one_hot(top[noisy], soft.shape[1]), correct_mix)
    if correct_mix >= 0.5:
        label[noisy] = top[noisy]
    return soft, label
