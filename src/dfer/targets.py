"""Labels become training targets here, and only here: a distribution over the classes for
every clip, which :func:`dfer.losses.soft_target_cross_entropy` scores the model against.

- a **hard label** (a class index) becomes its one-hot row (:func:`one_hot`); a clip
  without one (-1, e.g. a tie in the votes) is refused where a hard target is needed;
- **annotator votes** become their distribution, votes / row sum, the soft label of the
  MIDAS paper (Kawamura et al., WACV 2024, section 3.1), computed in float64 so that counts
  whose float32 sum overflows still make the right distribution (:func:`vote_distribution`);
- a clip's **soft label** is its vote distribution, or the one-hot row of its label when
  it has no votes (:func:`soft_labels`);
- the **target of a batch** is the one-hot row of each clip's hard label under the label
  modes that train on hard labels (``hard``, ``midas-hard``, ``mixup``), else its soft
  label (:func:`batch_targets`); MIDAS then mixes those targets (:mod:`dfer.mixing`);
- **two targets blended** by a weight, ``(1 - w) a + w b`` row by row (:func:`blend`):
  RDFER's correction of a noisy video's target towards the model's consensus.

The functions take numpy arrays (a table's labels, when a dataset is made) or torch
tensors (a batch, on the training device); torch is imported only where a tensor is made,
so reading a table or a config does not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dfer.errors import DataError

if TYPE_CHECKING:
    import torch

__all__ = ["HARD_LABEL_MODES", "batch_targets", "blend", "hard_or_soft", "one_hot", "soft_labels",
           "vote_distribution"]

#: the label modes whose training targets are one-hot hard labels
HARD_LABEL_MODES = ("hard", "midas-hard", "mixup")


def one_hot(label: Any, num_classes: int) -> Any:
    """One-hot float32 rows from hard labels, refusing clips without one.

    Args:
        label: int (B,) class index per clip, a torch tensor or a numpy array; -1 marks a
            clip without a hard label (e.g. a tie in the votes).
        num_classes: K.

    Returns:
        float32 (B, K) of the label's kind: a tensor on the label's device, or an array.

    Raises:
        ValueError: label is not an integer (B,) tensor or array.
        DataError: a label is -1 or otherwise outside [0, K).
    """
    array = isinstance(label, np.ndarray)
    integer = np.issubdtype(label.dtype, np.integer) if array else \
        not (label.is_floating_point() or label.is_complex() or str(label.dtype) == "torch.bool")
    if label.ndim != 1 or not integer:
        raise ValueError(
            f"Expected an integer label of shape (B,), got shape {tuple(label.shape)} "
            f"and dtype {label.dtype}"
        )
    outside = (label < 0) | (label >= num_classes)
    bad = np.flatnonzero(outside) if array else outside.nonzero().flatten()
    if len(bad):
        positions = bad.tolist()
        raise DataError(
            f"hard labels required: batch position(s) {positions[:10]} have label(s) "
            f"{label[bad].tolist()[:10]}, expected a class index in [0, {num_classes}) "
            "(-1 means the clip has no hard label); use soft labels (mode 'midas') or "
            "leave such clips out of hard-label training"
        )
    if array:
        return np.eye(num_classes, dtype=np.float32)[label]
    import torch

    return torch.nn.functional.one_hot(label.long(), num_classes).to(torch.float32)


def vote_distribution(votes: np.ndarray) -> np.ndarray:
    """(N, C) float32 rows summing to 1: each row of vote counts over its sum.

    The division runs in float64: a float32 sum of large counts would overflow to inf and
    turn the row into zeros. Rows must have a positive sum (the table checks votes when it
    is read).
    """
    v = np.asarray(votes, dtype=np.float64)
    return (v / v.sum(axis=1, keepdims=True)).astype(np.float32)


def soft_labels(votes: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(N, C) float32 soft labels: the vote distribution of every clip with votes (a row
    without NaN), the one-hot row of its label for every other clip.

    Args:
        votes: float (N, C) counts, NaN rows where a clip has none.
        label: int (N,) class indices, >= 0 wherever a clip has no votes.

    Raises:
        ValueError: a clip has neither votes nor a label (the table names such clips first).
    """
    votes = np.asarray(votes)
    label = np.asarray(label, dtype=np.int64)
    out = np.zeros(votes.shape, np.float32)
    has = ~np.isnan(votes).any(axis=1)
    out[has] = vote_distribution(votes[has])
    rest = ~has
    if rest.any():
        out[rest] = one_hot(label[rest], votes.shape[1])
    return out


def hard_or_soft(label: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """(N, C): the one-hot row of every clip's hard label, its ``soft`` row where it has
    none (-1), in the dtype of ``soft``; ``soft`` is not modified."""
    has = label >= 0
    out = soft.clone()
    out[has] = one_hot(label[has], soft.shape[1]).to(soft.dtype)
    return out


def batch_targets(label_mode: str, soft_label: torch.Tensor | None, label: torch.Tensor | None, num_classes: int,
                  *, batch: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """The float32 (B, K) targets a batch trains on under ``label_mode``, on ``device``
    (default: the labels'): one-hot hard labels for the modes that train on them
    (:data:`HARD_LABEL_MODES`; a clip without a hard label is refused), else the soft labels.

    Args:
        label_mode: a run's label mode, or ``none`` (soft labels as they are).
        soft_label: float (B, K) rows summing to 1; needed by the soft modes.
        label: int64 (B,) hard labels, -1 = none; needed by the hard modes.
        num_classes: K.
        batch: B, when the caller knows it (the clip's), to check the labels against.

    Raises:
        ValueError: the labels the mode needs are missing or of another shape.
        DataError: a clip without a hard label under a hard-label mode.
    """
    import torch

    if label_mode in HARD_LABEL_MODES:
        if label is None:
            raise ValueError(f"mode {label_mode!r} needs the hard `label` of every clip")
        if batch is not None and tuple(label.shape) != (batch,):
            raise ValueError(f"Expected label of shape ({batch},), got {tuple(label.shape)}")
        return one_hot(label if device is None else label.to(device, non_blocking=True), num_classes)
    if soft_label is None:
        raise ValueError(f"mode {label_mode!r} needs `soft_label`")
    rows = soft_label.shape[0] if batch is None and soft_label.ndim == 2 else batch
    if tuple(soft_label.shape) != (rows, num_classes) or not soft_label.is_floating_point():
        raise ValueError(f"Expected a floating soft_label of shape ({rows}, {num_classes}), "
                         f"got shape {tuple(soft_label.shape)} and dtype {soft_label.dtype}")
    return soft_label.to(device=soft_label.device if device is None else device, dtype=torch.float32,
                         non_blocking=True)


def blend(target: torch.Tensor, other: torch.Tensor, weight: float) -> torch.Tensor:
    """``(1 - weight) * target + weight * other``, row by row: two distributions blended
    (rows still sum to 1 for ``weight`` in [0, 1]); neither input is modified."""
    return (1 - weight) * target + weight * other.to(target.dtype)
