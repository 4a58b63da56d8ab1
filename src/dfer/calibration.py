"""How a model's logits become its answer: a prior correction for the rare classes, a
temperature for calibrated probabilities, and flip test-time augmentation.

A classifier trained on FER+'s votes learns ``p(y | x)`` under FER+'s class frequencies,
where neutral and happy hold more than half of the votes and disgust, fear and contempt
under 4 % each. The post-hoc logit adjustment (Menon et al., "Long-tail learning via logit
adjustment", ICLR 2021) divides that prior out, by a chosen strength ``tau``::

    answer = softmax((z - tau * log(prior)) / temperature)

``tau = 0`` is the model as trained; ``tau = 1`` the Bayes-optimal rule for a balanced
class distribution (best for UAR, at a cost in accuracy on FER+'s own frequencies); values
between trade one for the other. The temperature rescales the corrected logits (it never
changes the answer, only how sure it is) and is fitted by :func:`fit_temperature`.

:class:`OutputRule` holds the three choices, :class:`Answering` applies them to a model's
forward pass so that every caller (``dfer predict``, ``dfer evaluate --pretrained``) gets
the same answer; the maths are the pure functions below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["TTA", "OutputRule", "Answering", "class_prior", "adjust_logits", "fit_temperature",
           "cross_entropy"]

#: test-time augmentations: none, or the mean of the logits of the input and its mirror image
TTA = ("none", "flip")


def class_prior(targets: np.ndarray) -> np.ndarray:
    """The class prior of a training set: the mean of its (N, C) target distributions
    (vote distributions, or one-hot rows for hard labels), as float64 summing to 1.

    Raises:
        ValueError: no rows, a row that is not a distribution, or a class no row targets
            (its log-prior would be minus infinity).
    """
    t = np.asarray(targets, np.float64)
    if t.ndim != 2 or len(t) == 0:
        raise ValueError(f"targets must be a non-empty (N, C) array, got shape {t.shape}")
    if not np.isfinite(t).all() or (t < 0).any() or not np.allclose(t.sum(1), 1.0, atol=1e-6):
        raise ValueError("targets must be rows of probabilities summing to 1")
    prior = t.mean(0)
    if (prior <= 0).any():
        raise ValueError(f"class(es) {np.flatnonzero(prior <= 0).tolist()} are never targeted; a prior "
                         f"correction needs every class in the training set")
    return prior / prior.sum()


def adjust_logits(logits: torch.Tensor, log_prior: torch.Tensor, tau: float) -> torch.Tensor:
    """``logits - tau * log_prior`` over the last axis (the post-hoc logit adjustment)."""
    return logits if tau == 0 else logits - tau * log_prior.to(device=logits.device, dtype=logits.dtype)


def cross_entropy(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of ``softmax(logits / temperature)`` against target distributions
    (votes or one-hot rows), in nats, computed in float64 with a stable log-softmax."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-(np.asarray(targets, np.float64) * log_p).sum(1).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0),
                    tol: float = 1e-4) -> float:
    """The temperature ``T`` minimising :func:`cross_entropy` of ``softmax(logits / T)``
    against ``targets`` (votes: calibration to how people vote; one-hot rows of the
    majority: calibration to the majority), by golden-section search over ``log T`` in
    ``bounds``. The cross-entropy is convex in ``1 / T`` (a log-sum-exp of a linear
    function minus a linear one), so it has one minimum on the interval."""
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5) - 1) / 2

    def f(log_t: float) -> float:
        return cross_entropy(logits, targets, math.exp(log_t))

    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = f(a), f(b)
    while hi - lo > tol:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = f(b)
    return math.exp((lo + hi) / 2)


@dataclass(frozen=True)
class OutputRule:
    """How logits become the answer (see the module docstring).

    Attributes:
        prior: the training class prior, one value per class (None: unknown, so no
            correction is possible).
        prior_correction: ``tau``, the strength of the correction (0: none).
        temperature: divides the corrected logits (1: none).
        tta: ``none`` or ``flip`` (the mean of the logits of the input and its mirror).
    """

    prior: tuple[float, ...] | None = None
    prior_correction: float = 0.0
    temperature: float = 1.0
    tta: str = "none"

    def __post_init__(self) -> None:
        if self.prior_correction and self.prior is None:
            raise ValueError("a prior correction needs the training class prior, which this model does not record")
        if not (math.isfinite(self.prior_correction) and 0 <= self.prior_correction <= 2):
            raise ValueError(f"prior_correction must be in [0, 2], got {self.prior_correction}")
        if not (math.isfinite(self.temperature) and 0 < self.temperature <= 100):
            raise ValueError(f"temperature must be in (0, 100], got {self.temperature}")
        if self.tta not in TTA:
            raise ValueError(f"tta must be one of {', '.join(TTA)}, got {self.tta!r}")
        if self.prior is not None:
            p = self.prior
            if len(p) < 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in p) \
                    or abs(sum(p) - 1) > 1e-3:
                raise ValueError("prior must be two or more positive numbers summing to 1")

    @property
    def is_identity(self) -> bool:
        return self.prior_correction == 0 and self.temperature == 1 and self.tta == "none"

    def describe(self) -> dict:
        """The rule as a report records it."""
        return {"prior_correction": self.prior_correction, "temperature": self.temperature, "tta": self.tta,
                "prior": list(self.prior) if self.prior is not None else None}


class Answering(nn.Module):
    """A model whose forward pass applies an :class:`OutputRule` to its logits: for a clip
    ``(B, T, C, H, W)``, flip test-time augmentation (mirroring the width axis), then the
    prior correction and the temperature. The wrapped model stays ``self.model``."""

    def __init__(self, model: nn.Module, rule: OutputRule):
        super().__init__()
        self.model, self.rule = model, rule
        prior = torch.tensor(rule.prior if rule.prior is not None else [1.0], dtype=torch.float32)
        self.register_buffer("log_prior", prior.log(), persistent=False)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        z = self.model(clip)
        if self.rule.tta == "flip":
            z = (z + self.model(clip.flip(-1))) / 2
        z = adjust_logits(z, self.log_prior, self.rule.prior_correction)
        return z / self.rule.temperature if self.rule.temperature != 1 else z


def answering(model: nn.Module, rule: OutputRule) -> nn.Module:
    """``model`` itself when ``rule`` changes nothing, else wrapped in :class:`Answering`."""
    return model if rule.is_identity else Answering(model, rule)


def as_prior(values: Sequence[float] | None) -> tuple[float, ...] | None:
    """A prior read from a file or a report, as the tuple :class:`OutputRule` holds."""
    return None if values is None else tuple(float(v) for v in values)
