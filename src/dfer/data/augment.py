"""The random draws of the training transforms, and the maths of the photometric jitter.

Every draw takes the clip's ``torch.Generator`` (seeded by (seed, epoch, index) in
:class:`dfer.data.dataset.ClipDataset`) and makes a fixed number of draws from it, so a
clip's augmentation depends on nothing but that seed. The transforms of
:mod:`dfer.data.transforms` draw once per clip and apply the result to every frame.

- Random erasing (Zhong et al., *Random Erasing Data Augmentation*, AAAI 2020, Alg. 1):
  one rectangle of area ``S_e ~ U(s_l, s_h) * H * W`` and aspect ``r_e = h / w`` drawn
  log-uniformly from ``(r_1, r_2)``, at a uniform position inside the frame.
  :func:`erase_box` narrows the aspect interval to the aspects at which that area fits the
  frame instead of drawing again until one does, so the number of draws is fixed.
- Rotation and scale: angle ~ U(-r, r) degrees, scale ~ U(1 - s, 1 + s).
- Photometric jitter without colour: brightness b and contrast c ~ U(1 - j, 1 + j), the
  same affine map of intensities ``y = b (c (x - m) + m)`` for every channel and frame
  (:func:`brightness_contrast`), so a grey face stays grey.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["randint", "uniform", "erase_box", "rotate_scale", "brightness_contrast_factors", "brightness_contrast",
           "ERASE_SCALE", "ERASE_RATIO"]

#: area of the erased rectangle, as fractions of the frame (Zhong et al.'s s_l, s_h)
ERASE_SCALE = (0.02, 0.25)
#: aspect h / w of the erased rectangle, drawn log-uniformly (Zhong et al.'s r_1, 1 / r_1)
ERASE_RATIO = (0.3, 3.3)


def randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high)."""
    return int(torch.randint(high, (1,), generator=generator).item())


def uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    """Uniform number in [low, high) (float64)."""
    return low + (high - low) * float(torch.rand((), dtype=torch.float64, generator=generator))


def erase_box(height: int, width: int, generator: torch.Generator | None,
              scale: Sequence[float] = ERASE_SCALE, ratio: Sequence[float] = ERASE_RATIO) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the rectangle random erasing fills in a ``height`` x ``width`` frame.

    Area ``a ~ U(scale) * height * width``; aspect ``h / w`` log-uniform over ``ratio``
    narrowed to the aspects at which ``a`` fits (``a / width^2 <= h / w <= height^2 / a``),
    which leaves ``ratio`` whole for every area up to ``0.3`` of a square frame; sides
    rounded to whole pixels (at least one, at most the frame's). Four draws, always.
    """
    area = uniform(scale[0], scale[1], generator) * height * width
    lo = max(math.log(ratio[0]), math.log(area / width ** 2))
    hi = min(math.log(ratio[1]), math.log(height ** 2 / area))
    if lo > hi:  # no aspect of ``ratio`` fits (a frame far from square): the nearest that does
        lo = hi = min(max(math.log(ratio[0]), math.log(area / width ** 2)), math.log(height ** 2 / area))
    aspect = math.exp(uniform(lo, hi, generator))
    h = min(height, max(1, round(math.sqrt(area * aspect))))
    w = min(width, max(1, round(area / h)))
    return randint(height - h + 1, generator), randint(width - w + 1, generator), h, w


def rotate_scale(rotate: float, scale_jitter: float, generator: torch.Generator | None) -> tuple[float, float]:
    """(angle in degrees ~ U(-rotate, rotate), scale ~ U(1 - scale_jitter, 1 + scale_jitter)); two draws."""
    return uniform(-rotate, rotate, generator), uniform(1 - scale_jitter, 1 + scale_jitter, generator)


def brightness_contrast_factors(jitter: float, generator: torch.Generator | None) -> tuple[float, float]:
    """(brightness, contrast), each ~ U(1 - jitter, 1 + jitter); two draws."""
    return uniform(1 - jitter, 1 + jitter, generator), uniform(1 - jitter, 1 + jitter, generator)


def brightness_contrast(clip: torch.Tensor, brightness: float, contrast: float) -> torch.Tensor:
    """``y = brightness * (contrast * (x - m) + m)``, ``m`` the mean of the whole clip.

    One map of intensities for every frame, channel and pixel: frames that were equal stay
    equal, channels that were equal stay equal (no colour appears), and the contrast turns
    about the clip's own mean, so brightness and contrast stay apart (contrast alone keeps
    the mean). A new tensor; uint8 in, uint8 out (rounded, clamped to [0, 255]); a float
    clip is taken as [0, 1] and clamped to it.

    Args:
        clip: (..., C, H, W), e.g. (T, C, H, W), uint8 or float.
    """
    x = clip.to(torch.float32)
    m = x.mean()
    y = (x - m).mul_(contrast).add_(m).mul_(brightness)
    if clip.dtype == torch.uint8:
        return y.round_().clamp_(0, 255).to(torch.uint8)
    return y.clamp_(0, 1).to(clip.dtype)
