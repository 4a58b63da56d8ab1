"""MIDAS: mixing whole clips and their soft labels, on the device, in training only.
Kept as one module: the sampling of λ and partners, the mixing of clips and targets and
the batch mixer that ties them are one method, read together against the paper.

Implements section 3.1 of Kawamura et al., *MIDAS: Mixing Ambiguous Data with Soft Labels
for Dynamic Facial Expression Recognition* (WACV 2024). For two distinct clips i and
j = j(i) of the batch and a ratio λ ~ Beta(α, α):

    eq. (1), (2)   x̃⁽ᵗ⁾ = λ x_i⁽ᵗ⁾ + (1 − λ) x_j⁽ᵗ⁾     for every frame t,
    eq. (3)        ỹ    = λ y_i   + (1 − λ) y_j,

where y is the soft label (vote distribution, rows summing to 1). "MIDAS does not allow
the same video to be selected": :func:`sample_partners` never pairs a clip with itself.

The softmax after mixing. The paper then says ỹ "is normalized by using a softmax
operation" but not on what. On probabilities (our ``soft_label``) softmax flattens the
target almost to uniform -- its largest entry is at most e / (e + C − 1), 0.31 for C = 7 --
and in a measured run on synthetic clips it cost 15 points of accuracy, with the training
loss stuck near ln C. On vote counts it sharpens the target instead. On FER+'s real votes
both readings lost 7 points of accuracy or more to no normalisation (docs/results.md, "Label
modes on real votes"), which is why ``"none"`` is the default. The normalisation is a named
choice, written into the run's config:

* ``"none"``: ỹ as mixed; a convex mix of two distributions already sums to 1.
* ``"softmax"``: softmax(ỹ / τ). τ = 1 is the paper-literal reading on probabilities;
  τ = 1/S with S annotators equals the softmax over vote counts, the other reading.
* ``"renormalise"``: ỹ / Σ ỹ; the identity on proper distributions, but defined for rows
  that do not sum to 1 (e.g. unnormalised votes).

The paper-literal variant is label mode ``midas`` with
``MixingConfig(normalise="softmax", temperature=1.0)``.

The mixing settings are :class:`dfer.config.MixingConfig` (a run's ``mixing:`` section);
the mode is the run's label mode, or one of:

* ``"midas"``: soft labels mixed, partner j(i) ≠ i, λ drawn per sample (by default).
* ``"midas-hard"``: the same procedure on one-hot hard labels ("MIDAS w/ hard label",
  Table 3 of the paper).
* ``"mixup"``: plain mixup (Zhang et al., ICLR 2018): one λ per batch, partner = a random
  permutation of the batch (self-pairs allowed), one-hot hard labels, no normalisation.
* ``"none"``: clip and target pass through; the trainer chooses hard or soft targets.

Randomness enters only through an explicit ``torch.Generator`` that lives on the CPU;
λ and the partner indices (B numbers each) are drawn there and moved with
``.to(device, non_blocking=True)``, so the mixing itself is two gathers and a ``lerp`` on
the device, with no host round trip except the checks of hard labels and of row sums
(``"renormalise"``), which must read values. Mixing runs in the clip's dtype, so it works
unchanged inside ``torch.autocast``. Nothing here modifies a caller's tensor.

Drop it into your own training loop::

    from dfer.data.transforms import to_model_input
    from dfer.config import MixingConfig
    from dfer.mixing import BatchMixer
    from dfer.losses import soft_target_cross_entropy
    mixer = BatchMixer("midas", MixingConfig(alpha=0.4), num_classes=7, generator=0)
    for batch in loader:  # clip (B, T, C, H, W) uint8 from dfer's datasets, soft_label (B, K)
        mixed = mixer(to_model_input(batch["clip"], "cuda"), batch["soft_label"].cuda())
        loss = soft_target_cross_entropy(model(mixed.clip), mixed.target)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch

from dfer.config import MIXING_LABEL_MODES, NORMALISE_MODES, MixingConfig, check_settings
from dfer.errors import ConfigError
from dfer.targets import batch_targets

__all__ = [
    "MODES",
    "NORMALISE_MODES",
    "BatchMixer",
    "MixingConfig",
    "MixResult",
    "mix_clips",
    "mix_targets",
    "normalise_target",
    "sample_lam",
    "sample_partners",
]

#: what :class:`BatchMixer` does: the label modes that mix, or nothing
MODES: tuple[str, ...] = ("none",) + MIXING_LABEL_MODES


# ---------------------------------------------------------------------------------------
# Random draws: pure functions of an explicit CPU generator.
# ---------------------------------------------------------------------------------------


def _check_cpu_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"Expected a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        # The draws are a handful of numbers; a CPU generator makes them identical on
        # every machine and keeps the state a plain byte tensor for checkpoints.
        raise ValueError(f"Expected a CPU torch.Generator, got one on {generator.device}")


def _log_standard_gamma(alpha: float, size: int, generator: torch.Generator) -> torch.Tensor:
    """log of ``size`` draws of Gamma(alpha, 1), float64, Marsaglia & Tsang (2000).

    torch's public Gamma/Beta distributions draw from the global RNG and take no
    generator, hence this sampler built on generator-driven normals and uniforms. For
    alpha < 1 it uses the boost Gamma(a) = Gamma(a + 1) · U^(1/a), kept in log space: at
    alpha = 0.2 the factor U^5 leaves float32's range often enough to turn λ into 0/0.
    """
    a = alpha + 1.0 if alpha < 1.0 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(size, dtype=torch.float64)
    pending = torch.arange(size)
    while pending.numel():  # acceptance rate >= 0.95, so this loops once or twice
        n = pending.numel()
        x = torch.randn(n, generator=generator, dtype=torch.float64)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        positive = v > 0
        log_v = torch.log(torch.where(positive, v, torch.ones_like(v)))
        accept = positive & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        out[pending[accept]] = math.log(d) + log_v[accept]
        pending = pending[~accept]
    if alpha < 1.0:
        # 1 - rand lies in (0, 1], so the log is finite.
        u = 1.0 - torch.rand(size, generator=generator, dtype=torch.float64)
        out += torch.log(u) / alpha
    return out


def sample_lam(
    alpha: float,
    size: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw mixing ratios λ ~ Beta(alpha, alpha), eq. (1)-(3).

    λ = G₁ / (G₁ + G₂) with G₁, G₂ ~ Gamma(alpha, 1) independent, evaluated as
    sigmoid(log G₁ − log G₂) in float64 so that small alpha (mass near 0 and 1) never
    yields 0/0. The same generator state gives the same λ on every device.

    alpha <= 0 is rejected rather than read as "no mixing" (mixup's convention): Beta(0, 0)
    is not a distribution, and switching mixing off is ``BatchMixer("none")``.

    Args:
        alpha: Concentration α of the symmetric Beta, > 0 and finite. The paper uses 0.4.
        size: Number of draws, >= 1.
        generator: CPU ``torch.Generator`` supplying all randomness.
        device: Where the result goes (moved with ``non_blocking=True``).
        dtype: Floating dtype of the result. The draw is float64 either way; float32
            rounds the ~2% of Beta(0.2, 0.2) draws that lie within 6e-8 of 1 to exactly 1,
            which is harmless for mixing but shows in a goodness-of-fit test.

    Returns:
        Tensor (size,) of ``dtype`` (float32 by default) with values in [0, 1].

    Raises:
        ValueError: alpha is not a positive finite number or size < 1.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (
        math.isfinite(alpha) and alpha > 0
    ):
        raise ValueError(f"Expected alpha > 0 (finite) for Beta(alpha, alpha), got {alpha!r}")
    if size < 1:
        raise ValueError(f"Expected size >= 1, got {size}")
    _check_cpu_generator(generator)
    log_g1 = _log_standard_gamma(float(alpha), size, generator)
    log_g2 = _log_standard_gamma(float(alpha), size, generator)
    lam = torch.sigmoid(log_g1 - log_g2).to(dtype)
    return lam.to(device, non_blocking=True) if device is not None else lam


def sample_partners(
    batch_size: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw a partner j(i) ≠ i for every clip i, uniform over the other B − 1 clips.

    MIDAS "does not allow the same video to be selected": r ~ U{0, …, B − 2} is shifted
    past i, a bijection onto {0, …, B − 1} \\ {i}. Partners are drawn independently, so
    two clips may share a partner (as when sampling pairs from the data set).

    Args:
        batch_size: B, >= 2.
        generator: CPU ``torch.Generator``.
        device: Where the result goes (moved with ``non_blocking=True``).

    Returns:
        int64 tensor (B,) with ``partner[i] != i``.

    Raises:
        ValueError: B < 2 (a single clip has no partner).
    """
    if batch_size < 2:
        raise ValueError(
            f"Expected batch_size >= 2 to pair every clip with a different one, got {batch_size}"
        )
    _check_cpu_generator(generator)
    r = torch.randint(0, batch_size - 1, (batch_size,), generator=generator)
    partner = r + (r >= torch.arange(batch_size)).to(r.dtype)
    return partner.to(device, non_blocking=True) if device is not None else partner


# ---------------------------------------------------------------------------------------
# The mixing itself: pure functions, no randomness, no in-place writes.
# ---------------------------------------------------------------------------------------


def _check_pairing(batch: int, partner_index: torch.Tensor, lam: torch.Tensor) -> None:
    if partner_index.dtype != torch.int64 or tuple(partner_index.shape) != (batch,):
        raise ValueError(
            f"Expected partner_index of shape ({batch},) and dtype torch.int64, "
            f"got shape {tuple(partner_index.shape)} and dtype {partner_index.dtype}"
        )
    if not lam.is_floating_point() or tuple(lam.shape) not in ((batch,), ()):
        raise ValueError(
            f"Expected a floating lam of shape ({batch},) or (), "
            f"got shape {tuple(lam.shape)} and dtype {lam.dtype}"
        )


def _weight(lam: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # λ of shape (B,) becomes (B, 1, ..., 1): one ratio per clip, the same for all frames.
    lam = lam.to(device=like.device, dtype=like.dtype)
    return lam.reshape(lam.shape + (1,) * (like.ndim - lam.ndim))


def mix_clips(clip: torch.Tensor, partner_index: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Mix every clip with its partner frame by frame, eq. (1)-(2).

    x̃_i = λ_i x_i + (1 − λ_i) x_{j(i)}, computed as ``lerp(x_j, x_i, λ)`` in the clip's
    dtype. Only the leading batch dimension is indexed, so images work as well.

    Args:
        clip: Floating tensor (B, T, C, H, W), or images (B, C, H, W).
        partner_index: int64 (B,), partner j(i) of clip i, on the clip's device.
        lam: Floating (B,) per clip, or () for the whole batch; cast to the clip's dtype.

    Returns:
        A new tensor with the clip's shape, dtype and device; ``clip`` is not modified.

    Raises:
        ValueError: Shapes or dtypes do not match the above.
    """
    if clip.ndim not in (4, 5) or not clip.is_floating_point():
        raise ValueError(
            "Expected a batched floating clip of shape (B, T, C, H, W) or images (B, C, H, W), "
            f"got shape {tuple(clip.shape)} and dtype {clip.dtype}"
        )
    _check_pairing(clip.shape[0], partner_index, lam)
    return torch.lerp(clip.index_select(0, partner_index), clip, _weight(lam, clip))


def mix_targets(
    target: torch.Tensor, partner_index: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    """Mix every target with its partner's, eq. (3): ỹ_i = λ_i y_i + (1 − λ_i) y_{j(i)}.

    Args:
        target: Floating (B, K) soft labels or one-hot rows.
        partner_index: int64 (B,), on the target's device.
        lam: Floating (B,) or (); the arithmetic runs in the target's dtype.

    Returns:
        A new (B, K) tensor of the target's dtype; ``target`` is not modified.

    Raises:
        ValueError: Shapes or dtypes do not match the above.
    """
    if target.ndim != 2 or not target.is_floating_point():
        raise ValueError(
            "Expected a floating target of shape (B, K), "
            f"got shape {tuple(target.shape)} and dtype {target.dtype}"
        )
    _check_pairing(target.shape[0], partner_index, lam)
    return torch.lerp(target.index_select(0, partner_index), target, _weight(lam, target))


def normalise_target(
    target: torch.Tensor, mode: str = "none", temperature: float = 1.0
) -> torch.Tensor:
    """Normalise mixed targets row by row (the softmax after eq. (3); see module docstring).

    Args:
        target: Floating (B, K).
        mode: ``"none"`` (returned as is), ``"softmax"`` (softmax(target / temperature))
            or ``"renormalise"`` (target / row sum; rows must have a positive sum).
        temperature: τ > 0 of the softmax; τ = 1 is the paper-literal reading on
            probabilities, τ = 1/S equals the softmax over the votes of S annotators.

    Returns:
        (B, K) rows summing to 1 for ``"softmax"`` / ``"renormalise"``; for ``"none"``
        the input itself.

    Raises:
        ValueError: Unknown mode, temperature <= 0, bad shape, or a row with sum <= 0
            under ``"renormalise"``.
    """
    if target.ndim != 2 or not target.is_floating_point():
        raise ValueError(
            "Expected a floating target of shape (B, K), "
            f"got shape {tuple(target.shape)} and dtype {target.dtype}"
        )
    if mode == "none":
        return target
    if mode == "softmax":
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"Expected temperature > 0 (finite), got {temperature!r}")
        return torch.softmax(target / temperature, dim=-1)
    if mode == "renormalise":
        total = target.sum(dim=-1, keepdim=True)
        bad = (total <= 0).squeeze(-1).nonzero().flatten()
        if bad.numel():
            raise ValueError(
                "Expected every target row to have a positive sum to renormalise, "
                f"rows {bad.tolist()[:10]} do not"
            )
        return target / total
    raise ValueError(f"Expected normalise mode in {NORMALISE_MODES}, got {mode!r}")


# ---------------------------------------------------------------------------------------
# The thin stateful wrapper.
# ---------------------------------------------------------------------------------------


class MixResult(NamedTuple):
    """What :class:`BatchMixer` returns, whatever the mode.

    Attributes:
        clip: Mixed clip, same shape and dtype as the input (B, T, C, H, W).
        target: float32 (B, K) training target on the clip's device.
        lam: float32 (B,) ratio of each clip's own content (1 where nothing was mixed).
        partner: int64 (B,) index of the clip mixed in (i itself where nothing was mixed).
    """

    clip: torch.Tensor
    target: torch.Tensor
    lam: torch.Tensor
    partner: torch.Tensor


class BatchMixer:
    """Mixes training batches on their device, as label mode ``mode`` and :class:`MixingConfig` say.

    Owns the CPU ``torch.Generator`` from which every λ and partner is drawn; save
    :meth:`state_dict` with the checkpoint and a resumed run draws exactly the same
    numbers. Call it in training only; evaluation sees the clips as they are.

    A batch of one clip (a last, incomplete batch) is passed through unmixed in the MIDAS
    modes, since there is no other clip to pair with; its target is still normalised as
    configured. Use ``drop_last=True`` in the loader to avoid such batches.

    Args:
        mode: ``"none"``, ``"midas"``, ``"midas-hard"`` or ``"mixup"`` (module docstring).
        config: The mixing settings (default: :class:`MixingConfig`'s), checked here as
            when a run's config is read.
        num_classes: K, the width of every target.
        generator: A CPU ``torch.Generator`` (used and advanced in place), or an int seed.
    """

    def __init__(
        self,
        mode: str,
        config: MixingConfig | None = None,
        *,
        num_classes: int,
        generator: torch.Generator | int = 0,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mixing mode must be {', '.join(MODES)}, got {mode!r}")
        config = check_settings(config or MixingConfig(), "mixing.")
        config.check_mode(mode)
        if num_classes < 2:
            raise ConfigError(f"mixing: num_classes must be >= 2, got {num_classes}")
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        _check_cpu_generator(generator)
        self.mode = mode
        self.config = config
        self.num_classes = num_classes
        self.generator = generator

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator state, a uint8 CPU tensor under ``"rng_state"``."""
        return {"rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the generator state saved by :meth:`state_dict`."""
        self.generator.set_state(state["rng_state"].to(device="cpu", dtype=torch.uint8))

    def __call__(
        self,
        clip: torch.Tensor,
        soft_label: torch.Tensor | None = None,
        label: torch.Tensor | None = None,
    ) -> MixResult:
        """Mix a batch.

        Args:
            clip: Floating (B, T, C, H, W) on the training device (images (B, C, H, W)
                work too).
            soft_label: float (B, K) rows summing to 1; required by modes ``"none"`` and
                ``"midas"``.
            label: int64 (B,) hard labels, -1 = none; required by ``"midas-hard"`` and
                ``"mixup"``, where every clip must have one.

        Returns:
            :class:`MixResult` (clip, target, lam, partner), all on the clip's device.

        Raises:
            ValueError: Missing or malformed arguments (a bug in the caller).
            DataError: A hard mode got a clip without a valid hard label.
        """
        cfg, mode = self.config, self.mode
        if clip.ndim not in (4, 5) or not clip.is_floating_point():
            raise ValueError(
                "Expected a batched floating clip of shape (B, T, C, H, W) or images "
                f"(B, C, H, W), got shape {tuple(clip.shape)} and dtype {clip.dtype}"
                + ("; dfer's loaders give uint8 clips: mix to_model_input(batch['clip'], device) "
                   "(dfer.data.transforms)" if not clip.is_floating_point() else "")
            )
        batch, device = clip.shape[0], clip.device
        # hard modes train on one-hot rows of `label`, the others on `soft_label` as given
        target = batch_targets(mode, soft_label, label, self.num_classes, batch=batch, device=device)

        if mode == "none" or (batch < 2 and mode != "mixup"):
            lam = torch.ones(batch, dtype=torch.float32, device=device)
            partner = torch.arange(batch, device=device)
            if mode != "none":
                target = normalise_target(target, cfg.normalise, cfg.temperature)
            return MixResult(clip, target, lam, partner)

        if mode == "mixup":
            partner = torch.randperm(batch, generator=self.generator).to(device, non_blocking=True)
        else:
            partner = sample_partners(batch, self.generator, device)
        if cfg.lam_per_of(mode) == "batch":
            lam = sample_lam(cfg.alpha, 1, self.generator, device).repeat(batch)
        else:
            lam = sample_lam(cfg.alpha, batch, self.generator, device)

        mixed_clip = mix_clips(clip, partner, lam)
        mixed_target = mix_targets(target, partner, lam)
        mixed_target = normalise_target(mixed_target, cfg.normalise, cfg.temperature)
        return MixResult(mixed_clip, mixed_target, lam, partner)
