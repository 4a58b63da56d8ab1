"""Clip transforms: one set of random parameters per clip, applied to every frame.

MIDAS (section 4.3) applies "random scaling before inputting the video clip into the model
at training time" and resizes every frame to 224x224. :class:`RandomScaleCrop` is the TSN
multi-scale crop that TSM-based work means by random scaling: crop height and width are
each drawn from ``scales`` x the short side (at most ``max_distort`` scale steps apart),
placed at a random or a fixed grid position, and resized to ``size``. Flip, resize, centre
crop and normalisation complete the pipeline; :func:`build_transforms` assembles it.
Stronger, opt-in training augmentation for small faces (random erasing, rotation and
scale, brightness and contrast without colour) draws its parameters in
:mod:`dfer.data.augment`.

Every transform takes a clip as uint8 numpy (T, H, W, 3) (what :mod:`dfer.data.decode`
returns) or a tensor (T, C, H, W) (any leading dims, via torchvision's ``...`` handling)
and returns a tensor (T, C, H, W); randomness comes only from the ``generator`` argument.
Geometry runs on uint8 (torchvision's fast uint8 antialiased resize on a channels-last
view) and the conversion to float happens once, at :class:`ToClipTensor`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from dfer.data.augment import (ERASE_RATIO, ERASE_SCALE, brightness_contrast, brightness_contrast_factors,
                               erase_box, randint, rotate_scale)
from dfer.errors import ConfigError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "as_clip_tensor", "RandomScaleCrop", "RandomHorizontalFlip",
           "RandomPadCrop", "RandomRotateScale", "RandomBrightnessContrast", "RandomErase", "Resize", "CenterCrop",
           "CentreFraction", "Grey", "ToClipTensor", "Normalize", "Compose", "build_transforms", "AsUint8Clip",
           "to_model_input"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)


def as_clip_tensor(clip) -> torch.Tensor:
    """uint8 numpy (T, H, W, 3) -> tensor (T, 3, H, W) sharing memory; tensors pass through."""
    if isinstance(clip, np.ndarray):
        if clip.ndim != 4 or clip.shape[-1] != 3:
            raise ValueError(f"Expected a numpy clip of shape (T, H, W, 3), got {clip.shape}")
        return torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2)
    if isinstance(clip, torch.Tensor):
        if clip.ndim < 3:
            raise ValueError(f"Expected a clip tensor of shape (T, C, H, W), got {tuple(clip.shape)}")
        return clip
    raise TypeError(f"Expected a numpy array or torch.Tensor clip, got {type(clip).__name__}")


class RandomScaleCrop:
    """TSN multi-scale crop + resize to ``size`` x ``size``, the same for every frame.

    Args:
        size: output side (MIDAS: 224).
        scales: crop side as fractions of the short side; height and width are drawn
            independently from these, at most ``max_distort`` positions apart.
        max_distort: 0 keeps crops square, 1 (TSN) allows one scale step of aspect change.
        fix_crop: place the crop at one of 13 grid positions (corners, centre, edge
            midpoints, quarter points) as TSN does; False places it uniformly at random.
    """

    def __init__(self, size: int, scales: Sequence[float] = TSN_SCALES, max_distort: int = 1,
                 fix_crop: bool = True):
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ConfigError(f"scales must be fractions in (0, 1], got {tuple(scales)}")
        self.size = int(size)
        self.scales = tuple(float(s) for s in scales)
        self.max_distort = int(max_distort)
        self.fix_crop = bool(fix_crop)
        self.pairs = [(i, j) for i in range(len(self.scales)) for j in range(len(self.scales))
                      if abs(i - j) <= self.max_distort]

    def params(self, height: int, width: int, generator: torch.Generator | None) -> tuple[int, int, int, int]:
        """(top, left, crop_h, crop_w) for a frame of ``height`` x ``width``."""
        base = min(height, width)
        i, j = self.pairs[randint(len(self.pairs), generator)]
        crop_h = max(1, int(base * self.scales[i]))
        crop_w = max(1, int(base * self.scales[j]))
        dh, dw = height - crop_h, width - crop_w
        if not self.fix_crop:
            return randint(dh + 1, generator), randint(dw + 1, generator), crop_h, crop_w
        q_h, q_w = dh // 4, dw // 4
        grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2),  # corners and centre
                (0, 2), (4, 2), (2, 0), (2, 4),  # edge midpoints
                (1, 1), (1, 3), (3, 1), (3, 3)]  # quarter points
        gy, gx = grid[randint(len(grid), generator)]
        return gy * q_h, gx * q_w, crop_h, crop_w

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = as_clip_tensor(clip)
        top, left, h, w = self.params(clip.shape[-2], clip.shape[-1], generator)
        return F.resized_crop(clip, top, left, h, w, [self.size, self.size], antialias=True)

    def __repr__(self) -> str:
        return f"RandomScaleCrop(size={self.size}, scales={self.scales}, max_distort={self.max_distort})"


class RandomPadCrop:
    """Pad every frame by ``pad`` pixels of zeros, take a random crop of the frame's own size
    at the same place in every frame, and resize it to ``size`` x ``size``.

    On a square frame, a translation of up to ``pad`` pixels that keeps the scale and the
    aspect (a non-square frame is also resized to a square, unlike the test path's short-side
    resize and centre crop; use it on square faces). The classic
    augmentation of small still images (CIFAR, FER2013), where the TSN multi-scale crop of
    :class:`RandomScaleCrop` zooms a 48-px face by up to 1.5x and distorts it.
    """

    def __init__(self, size: int, pad: int = 4):
        if int(pad) < 0:
            raise ConfigError(f"pad must be >= 0, got {pad}")
        self.size, self.pad = int(size), int(pad)

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = as_clip_tensor(clip)
        h, w = clip.shape[-2:]
        top, left = randint(2 * self.pad + 1, generator), randint(2 * self.pad + 1, generator)
        # the frame's own size cut from the zero-padded frame at (top, left): out[y, x] =
        # frame[y + dy, x + dx], zero outside; one copy of the overlap, no padded frame
        dy, dx = top - self.pad, left - self.pad
        if dy or dx:
            moved = torch.zeros_like(clip)
            if abs(dy) < h and abs(dx) < w:
                moved[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)] = \
                    clip[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
            clip = moved
        if (h, w) != (self.size, self.size):
            clip = F.resize(clip, [self.size, self.size], antialias=True)
        return clip

    def __repr__(self) -> str:
        return f"RandomPadCrop(size={self.size}, pad={self.pad})"


class RandomHorizontalFlip:
    """Mirror every frame of the clip with probability ``p`` (one draw per clip)."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = as_clip_tensor(clip)
        if torch.rand(1, generator=generator).item() < self.p:
            return F.horizontal_flip(clip)
        return clip

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomRotateScale:
    """Rotate every frame by one angle ~ U(-``rotate``, ``rotate``) degrees (clockwise on
    screen when positive, as torchvision's ``affine``) and scale it by one factor
    ~ U(1 - ``scale_jitter``, 1 + ``scale_jitter``) about its centre: one bilinear affine
    warp per frame, zeros where the warp uncovers the frame (as the pad crop's border).
    Draws (:func:`dfer.data.augment.rotate_scale`) once per clip."""

    def __init__(self, rotate: float = 0.0, scale_jitter: float = 0.0):
        if not 0 <= rotate <= 180:
            raise ConfigError(f"rotate must be degrees in [0, 180], got {rotate}")
        if not 0 <= scale_jitter < 1:
            raise ConfigError(f"scale_jitter must be in [0, 1), got {scale_jitter}")
        self.rotate, self.scale_jitter = float(rotate), float(scale_jitter)

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = as_clip_tensor(clip)
        angle, scale = rotate_scale(self.rotate, self.scale_jitter, generator)
        if angle == 0 and scale == 1:
            return clip
        # fill=None: grid_sample's zero padding, blended bilinearly at the border
        return F.affine(clip, angle=angle, translate=[0.0, 0.0], scale=scale, shear=[0.0, 0.0],
                        interpolation=F.InterpolationMode.BILINEAR, fill=None)

    def __repr__(self) -> str:
        return f"RandomRotateScale(rotate={self.rotate}, scale_jitter={self.scale_jitter})"


class RandomBrightnessContrast:
    """Brightness and contrast factors ~ U(1 - ``jitter``, 1 + ``jitter``), drawn once per
    clip and applied alike to every frame and channel
    (:func:`dfer.data.augment.brightness_contrast`): photometric jitter that adds no colour,
    for grey faces."""

    def __init__(self, jitter: float = 0.0):
        if not 0 <= jitter <= 1:
            raise ConfigError(f"jitter must be in [0, 1], got {jitter}")
        self.jitter = float(jitter)

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = as_clip_tensor(clip)
        return brightness_contrast(clip, *brightness_contrast_factors(self.jitter, generator))

    def __repr__(self) -> str:
        return f"RandomBrightnessContrast(jitter={self.jitter})"


class RandomErase:
    """With probability ``p`` (one draw per clip), fill one rectangle
    (:func:`dfer.data.augment.erase_box`: area fraction in ``scale``, aspect in ``ratio``)
    at the same place in every frame with ``value``, one number per channel in the clip's
    own units. :func:`build_transforms` gives the normalisation's mean colour in uint8, so
    after normalisation the rectangle is zero to within uint8 rounding."""

    def __init__(self, p: float, value: Sequence[float], scale: Sequence[float] = ERASE_SCALE,
                 ratio: Sequence[float] = ERASE_RATIO):
        if not 0 <= p <= 1:
            raise ConfigError(f"erase must be a probability in [0, 1], got {p}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"erase_scale must be two fractions 0 < low <= high <= 1, got {list(scale)}")
        self.p, self.value = float(p), tuple(float(v) for v in value)
        self.scale, self.ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = as_clip_tensor(clip)
        if torch.rand(1, generator=generator).item() >= self.p:
            return clip
        top, left, h, w = erase_box(clip.shape[-2], clip.shape[-1], generator, self.scale, self.ratio)
        value = torch.tensor(self.value, dtype=clip.dtype).view(-1, 1, 1)
        return F.erase(clip, top, left, h, w, value)

    def __repr__(self) -> str:
        return f"RandomErase(p={self.p}, value={self.value}, scale={self.scale}, ratio={self.ratio})"


class Resize:
    """Resize the short side to ``size`` (int) or every frame to (H, W) (pair), antialiased."""

    def __init__(self, size: int | Sequence[int]):
        self.size = [int(size)] if isinstance(size, int) else [int(s) for s in size]

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        return F.resize(as_clip_tensor(clip), self.size, antialias=True)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class CenterCrop:
    """Crop the central ``size`` x ``size`` (or (H, W)) region of every frame."""

    def __init__(self, size: int | Sequence[int]):
        self.size = [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        return F.center_crop(as_clip_tensor(clip), self.size)

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class Grey:
    """RGB -> grey as PIL's ``convert("L")`` (ITU-R 601-2 luma, integer arithmetic), stacked
    back into three equal channels: uint8 (T, H, W, 3) or (T, 3, H, W) -> uint8 (T, 3, H, W)."""

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = as_clip_tensor(clip)
        if clip.dtype != torch.uint8 or clip.shape[-3] != 3:
            raise TypeError(f"Grey expects uint8 RGB frames (T, 3, H, W), got {clip.dtype} {tuple(clip.shape)}")
        rgb = clip.to(torch.int32)
        # PIL's fixed point: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (weights 0.299, 0.587, 0.114)
        y = (rgb[..., 0, :, :] * 19595 + rgb[..., 1, :, :] * 38470 + rgb[..., 2, :, :] * 7471 + 32768) >> 16
        return y.to(torch.uint8).unsqueeze(-3).expand(clip.shape).contiguous()

    def __repr__(self) -> str:
        return "Grey()"


class CentreFraction:
    """Keep the centred ``fraction`` of every frame's height and width (each rounded to whole
    pixels, the margin split with the extra pixel at the bottom/right)."""

    def __init__(self, fraction: float):
        if not 0 < fraction <= 1:
            raise ConfigError(f"face crop must be a fraction in (0, 1], got {fraction}")
        self.fraction = float(fraction)

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = as_clip_tensor(clip)
        h, w = clip.shape[-2:]
        ch, cw = max(1, round(self.fraction * h)), max(1, round(self.fraction * w))
        top, left = (h - ch) // 2, (w - cw) // 2
        return clip[..., top:top + ch, left:left + cw]

    def __repr__(self) -> str:
        return f"CentreFraction({self.fraction})"


class ToClipTensor:
    """uint8 (T, H, W, 3) numpy or (T, C, H, W) tensor -> contiguous float32 (T, C, H, W)
    in [0, 1]."""

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = as_clip_tensor(clip)
        if clip.dtype != torch.uint8:
            raise TypeError(f"ToClipTensor expects uint8 frames, got {clip.dtype}")
        return clip.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)

    def __repr__(self) -> str:
        return "ToClipTensor()"


class Normalize:
    """(x - mean) / std per channel on a float clip (..., C, H, W); ImageNet statistics by
    default, as the ImageNet-pretrained ResNet-18 of MIDAS expects."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 inplace: bool = False):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"normalisation std must be positive, got {self.std}")
        self.inplace = bool(inplace)
        # (x - mean) / std as x * (1 / std) + (-mean / std): two in-place passes, no division
        self._scale = torch.tensor([1.0 / s for s in self.std]).view(-1, 1, 1)
        self._shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)]).view(-1, 1, 1)

    def __call__(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Args: clip float (..., C, H, W). ``inplace=True`` overwrites it, for pipelines
        that own the tensor (:func:`build_transforms` right after :class:`ToClipTensor`)."""
        if not clip.is_floating_point():
            raise TypeError(f"Normalize expects a float clip (apply ToClipTensor first), got {clip.dtype}")
        if not self.inplace:
            return F.normalize(clip, self.mean, self.std)
        scale = self._scale.to(clip.device, clip.dtype)
        shift = self._shift.to(clip.device, clip.dtype)
        return clip.mul_(scale).add_(shift)

    def inverse(self, clip: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation (for plots and checks): x * std + mean."""
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=clip.dtype, device=clip.device).view(shape)
        std = torch.tensor(self.std, dtype=clip.dtype, device=clip.device).view(shape)
        return clip * std + mean

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std}, inplace={self.inplace})"


class Compose:
    """Apply transforms in order, handing each the same generator.

    ``size_hint`` is the smallest frame short side worth decoding for this pipeline (see
    :func:`dfer.data.decode.read_frames`); None means full resolution.
    """

    def __init__(self, transforms: Sequence, size_hint: int | None = None):
        self.transforms = list(transforms)
        self.size_hint = size_hint

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            clip = t(clip, generator)
        return clip

    def __repr__(self) -> str:
        body = ",\n    ".join(repr(t) for t in self.transforms)
        return f"Compose([\n    {body}\n], size_hint={self.size_hint})"


def build_transforms(train: bool, size: int = 224, scales: Sequence[float] = TSN_SCALES, flip: bool = True,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                     crop: str = "scale", pad: int = 4, uint8: bool = False, face_crop: float = 1.0,
                     grey: bool = False, erase: float = 0.0, erase_scale: Sequence[float] = ERASE_SCALE,
                     rotate: float = 0.0, scale_jitter: float = 0.0, jitter: float = 0.0) -> Compose:
    """The MIDAS input pipeline, uint8 (T, H, W, 3) -> normalised float32 (T, 3, size, size).

    With ``uint8`` it stops after the geometry and returns uint8 (T, 3, size, size): dfer's
    datasets do, so a quarter of the bytes goes through the loader, the pinned copy and the
    host-to-device transfer, and :func:`to_model_input` makes the batch float and
    normalises it on the training device (ImageNet statistics; ``mean``/``std`` then unused).

    Train: random scale crop (``crop="scale"``: ``scales`` of the short side) or random
    translation (``crop="pad"``: :class:`RandomPadCrop` by ``pad`` pixels, for still faces)
    -> ``size`` x ``size``, random horizontal flip (``flip``), to [0, 1], normalise.
    Stronger augmentation, training only, each off at 0: ``jitter`` (brightness and
    contrast, :class:`RandomBrightnessContrast`) on the framed face before the crop, so the
    crop's zero border stays zero; ``rotate`` / ``scale_jitter`` (:class:`RandomRotateScale`)
    after the crop; ``erase`` (:class:`RandomErase`, area fractions ``erase_scale``) last,
    with the colour the normalisation maps to zero (``mean`` in uint8; ImageNet's with
    ``uint8``). All of it runs on uint8 before the float conversion, so the two pipelines
    stay bit-identical.
    Test: short side to ``size``, centre
    crop ``size`` x ``size`` (the whole face, as the scale-1 training crop), to [0, 1],
    normalise.

    Before any of it, in training and test alike: the centred ``face_crop`` of each frame
    (:class:`CentreFraction`; 1.0 keeps it whole) and, with ``grey``, the grey conversion
    (:class:`Grey`): the framing of a face model such as the shipped FER+ one, which
    ``dfer predict`` applies through this same function.
    """
    if int(size) < 1:
        raise ConfigError(f"size must be >= 1, got {size}")
    if crop not in ("scale", "pad"):
        raise ConfigError(f"crop must be 'scale' or 'pad', got {crop!r}")
    if train:
        if crop == "pad":
            ops, hint = [RandomPadCrop(size, pad)], int(size)
        else:
            # the smallest crop (min scale x short side) is resized up to `size`; decoding
            # below size / min_scale would throw away pixels the crop needs
            ops, hint = [RandomScaleCrop(size, scales)], math.ceil(size / min(scales))
        # off at 0: not in the pipeline, so a run without them draws exactly as before
        ops = (([RandomBrightnessContrast(jitter)] if jitter else []) + ops
               + ([RandomRotateScale(rotate, scale_jitter)] if rotate or scale_jitter else [])
               + ([RandomHorizontalFlip()] if flip else []))
        if erase:
            fill = [round(255 * m) for m in (IMAGENET_MEAN if uint8 else mean)]
            ops.append(RandomErase(erase, fill, erase_scale))
    else:
        ops = [Resize(size), CenterCrop(size)]
        hint = int(size)
    framing = ([CentreFraction(face_crop)] if face_crop < 1 else []) + ([Grey()] if grey else [])
    if face_crop < 1:
        hint = math.ceil(hint / face_crop)  # the crop is taken from a frame decoded this much larger
    if uint8:
        return Compose(framing + ops + [AsUint8Clip()], size_hint=hint)
    # ToClipTensor returns a fresh tensor, so normalising it in place mutates nobody's data
    return Compose(framing + ops + [ToClipTensor(), Normalize(mean, std, inplace=True)], size_hint=hint)


class AsUint8Clip:
    """uint8 (T, H, W, 3) numpy or (T, C, H, W) tensor -> a uint8 tensor (T, C, H, W), as it
    is: no copy here. The geometry's output may be a strided view (torchvision resizes
    uint8 through a channels-last buffer); the collate's stack into the batch is the one
    copy every clip needs anyway and makes the batch contiguous, and nothing writes to the
    items (:func:`to_model_input` makes a new float tensor)."""

    def __call__(self, clip, generator: torch.Generator | None = None) -> torch.Tensor:
        clip = as_clip_tensor(clip)
        if clip.dtype != torch.uint8:
            raise TypeError(f"AsUint8Clip expects uint8 frames, got {clip.dtype}")
        return clip

    def __repr__(self) -> str:
        return "AsUint8Clip()"


_IMAGENET = Normalize(IMAGENET_MEAN, IMAGENET_STD, inplace=True)


def to_model_input(clip: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A batch of clips as the loader gives it -> the model's float32 input on ``device``.

    uint8 clips (dfer's datasets, ``build_transforms(uint8=True)``) travel as uint8 and are
    converted there: x / 255, then the ImageNet normalisation, the very float32 operations
    :class:`ToClipTensor` and :class:`Normalize` apply on the CPU, so results do not depend
    on where it happens. A float clip (a model's own input pipeline, already normalised) is
    only moved. The copy is ``non_blocking``: from pinned memory it overlaps the step.
    """
    clip = clip.to(device, non_blocking=True)
    if clip.is_floating_point():
        return clip
    return _IMAGENET(clip.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0))
