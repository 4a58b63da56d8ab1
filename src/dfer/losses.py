"""Losses on soft targets.

The MIDAS paper (Kawamura et al., WACV 2024, section 4.2) trains with "cross-entropy
loss" on the mixed soft labels ỹ of eq. (3): ℓ = −Σ_k ỹ_k log softmax(z)_k. Kept apart
from :mod:`dfer.mixing`, which makes the targets, so that the same loss serves hard
(one-hot), soft and mixed targets alike, and RDFER's per-sample weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["REDUCTIONS", "soft_target_cross_entropy"]

REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


def soft_target_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy against a target distribution, optionally weighted per sample.

    ℓ_i = −Σ_k target_ik · log_softmax(logits_i)_k. For one-hot targets this equals
    ``F.cross_entropy(logits, label)``. The log-softmax runs in float32 at least, so fp16
    and bf16 logits (e.g. under ``torch.autocast``) neither overflow nor lose the small
    probabilities; the loss comes back in that precision.

    Args:
        logits: Floating (B, K) unnormalised scores.
        target: Floating (B, K) per-sample distributions (rows normally sum to 1; the
            loss does not renormalise them).
        weight: Optional floating (B,) non-negative per-sample weights. With
            ``reduction="mean"`` the result is Σ w_i ℓ_i / Σ w_i (0 when every weight is
            0, so an all-zero batch contributes no gradient instead of NaN).
        reduction: ``"mean"`` (default), ``"sum"`` (Σ w_i ℓ_i) or ``"none"`` (w_i ℓ_i,
            shape (B,)).

    Returns:
        Scalar tensor, or (B,) for ``reduction="none"``; float32 (float64 for float64
        logits).

    Raises:
        ValueError: Shapes, dtypes or reduction do not match the above.
    """
    if logits.ndim != 2 or not logits.is_floating_point():
        raise ValueError(
            "Expected floating logits of shape (B, K), "
            f"got shape {tuple(logits.shape)} and dtype {logits.dtype}"
        )
    if tuple(target.shape) != tuple(logits.shape) or not target.is_floating_point():
        raise ValueError(
            f"Expected a floating target of shape {tuple(logits.shape)} like the logits, "
            f"got shape {tuple(target.shape)} and dtype {target.dtype}"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"Expected reduction in {REDUCTIONS}, got {reduction!r}")
    if weight is not None and (
        tuple(weight.shape) != (logits.shape[0],) or not weight.is_floating_point()
    ):
        raise ValueError(
            f"Expected a floating weight of shape ({logits.shape[0]},), "
            f"got shape {tuple(weight.shape)} and dtype {weight.dtype}"
        )

    dtype = torch.promote_types(logits.dtype, torch.float32)
    # F.cross_entropy takes probability targets and fuses log_softmax with the product.
    loss = F.cross_entropy(logits.to(dtype), target.to(dtype), reduction="none")
    if weight is None:
        if reduction == "mean":
            return loss.mean()
        return loss.sum() if reduction == "sum" else loss
    weight = weight.to(dtype)
    weighted = weight * loss
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    # tiny keeps Σw = 0 at 0/tiny = 0 without a host sync to test for it.
    return weighted.sum() / weight.sum().clamp_min(torch.finfo(dtype).tiny)
