"""The opt-in training augmentation for small faces (data.erase, data.rotate,
data.scale_jitter, data.jitter): one draw per clip for every frame, off at 0, the
distributions it claims, seeded, and never at test time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dfer.data.augment import (ERASE_RATIO, ERASE_SCALE, brightness_contrast, brightness_contrast_factors,
                               erase_box, rotate_scale)
from dfer.data.transforms import (IMAGENET_MEAN, RandomBrightnessContrast, RandomErase,
                                  RandomRotateScale, build_transforms, to_model_input)
from dfer.errors import ConfigError

STRONG = dict(erase=0.5, rotate=10.0, scale_jitter=0.1, jitter=0.2)  # configs/ferplus/still_face_strong_aug.yaml
MEAN_UINT8 = [round(255 * m) for m in IMAGENET_MEAN]


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clip_of(t=4, h=48, w=48, seed=0, identical=False) -> torch.Tensor:
    """uint8 (T, 3, H, W) of random texture; ``identical``: T copies of one frame."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (1 if identical else t, 3, h, w), dtype=np.uint8)
    return torch.from_numpy(np.repeat(frames, t, axis=0) if identical else frames)


# ---------------------------------------------------------------- one draw per clip, every frame
@pytest.mark.parametrize("uint8", [True, False])
def test_a_clip_of_identical_frames_stays_identical_frames(uint8):
    train = build_transforms(True, size=64, crop="pad", uint8=uint8, **{**STRONG, "erase": 1.0})
    x = clip_of(t=5, identical=True)
    outs = []
    for seed in range(20):
        out = train(x, g(seed))
        assert all(torch.equal(out[0], out[k]) for k in range(1, 5)), seed
        outs.append(out[0])
    assert len({o.numpy().tobytes() for o in outs}) == 20  # while clips get draws of their own


def test_each_frame_gets_what_the_clip_drew():
    """Distinct frames: every output frame is the frame alone under the same draw."""
    x = clip_of(t=3)
    for t in (RandomRotateScale(15, 0.2), RandomErase(1.0, MEAN_UINT8)):
        for seed in range(10):
            out = t(x, g(seed))
            assert all(torch.equal(out[k], t(x[k:k + 1], g(seed))[0]) for k in range(3)), (t, seed)


def test_brightness_contrast_is_one_map_of_intensities_for_the_whole_clip():
    """A reference in float64: y = b (c (x - m) + m), m the mean of all frames and channels."""
    x = clip_of(t=3)
    x[1] //= 3  # frames of different brightness share the clip's pivot
    for seed in range(20):
        b, c = brightness_contrast_factors(0.4, g(seed))
        out = RandomBrightnessContrast(0.4)(x, g(seed))
        ref = x.double()
        ref = (b * (c * (ref - ref.mean()) + ref.mean())).round().clamp(0, 255)
        assert out.dtype == torch.uint8 and (out.double() - ref).abs().max() <= 1, seed
        assert (out.double() != ref).float().mean() < 1e-3  # off by one only at float32's .5 ties
    # contrast alone keeps the mean; brightness alone scales it
    flat = clip_of(t=2, seed=3).float() / 255
    assert brightness_contrast(flat, 1.0, 0.5).mean() == pytest.approx(flat.mean().item(), abs=1e-6)
    assert brightness_contrast(flat * 0.5, 1.5, 1.0).mean() == pytest.approx(0.75 * flat.mean().item(), abs=1e-6)


def test_jitter_keeps_grey_frames_grey():
    grey = clip_of(t=2)[:, :1].expand(2, 3, 48, 48)
    for seed in range(30):
        out = RandomBrightnessContrast(0.9)(grey, g(seed))
        assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2]), seed
    # and through the whole training pipeline, erasing off (its mean colour is not grey)
    train = build_transforms(True, size=64, crop="pad", uint8=True, rotate=10, scale_jitter=0.1, jitter=0.5)
    for seed in range(10):
        out = train(grey, g(seed))
        assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2]), seed


# ---------------------------------------------------------------- off at 0: the identity
def test_at_zero_each_is_the_identity_and_the_pipeline_is_the_one_before():
    x = clip_of(t=3)
    for seed in range(5):
        for t in (RandomRotateScale(0, 0), RandomErase(0.0, MEAN_UINT8), RandomBrightnessContrast(0)):
            assert torch.equal(t(x, g(seed)), x), (t, seed)
    for crop in ("scale", "pad"):
        plain = build_transforms(True, size=32, crop=crop, uint8=True)
        zero = build_transforms(True, size=32, crop=crop, uint8=True, erase=0, rotate=0, scale_jitter=0, jitter=0)
        assert [type(t) for t in zero.transforms] == [type(t) for t in plain.transforms]  # no extra draws
        assert torch.equal(zero(x, g(1)), plain(x, g(1)))


# ---------------------------------------------------------------- rotation and scale
def _orientation(frame: torch.Tensor) -> tuple[float, float]:
    """(angle in degrees of the major axis, clockwise as seen on screen; its standard
    deviation in pixels) of an intensity image, from its second moments."""
    img = frame.double()
    ys, xs = torch.meshgrid(torch.arange(img.shape[0], dtype=torch.float64),
                            torch.arange(img.shape[1], dtype=torch.float64), indexing="ij")
    total = img.sum()
    cy, cx = (img * ys).sum() / total, (img * xs).sum() / total
    myy, mxx = (img * (ys - cy) ** 2).sum() / total, (img * (xs - cx) ** 2).sum() / total
    mxy = (img * (xs - cx) * (ys - cy)).sum() / total
    angle = 0.5 * math.degrees(math.atan2(2 * mxy, mxx - myy))  # y points down: clockwise
    major = 0.5 * (mxx + myy) + math.sqrt(0.25 * (mxx - myy) ** 2 + mxy ** 2)
    return angle, math.sqrt(major)


def _bar(size=64) -> torch.Tensor:
    """An elongated Gaussian along x at the centre of the frame, uint8 (1, 3, size, size)."""
    c = (size - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    img = 255 * torch.exp(-0.5 * (((xs - c) / 7) ** 2 + ((ys - c) / 2.5) ** 2))
    return img.round().to(torch.uint8).expand(1, 3, size, size).contiguous()


def test_the_warp_rotates_and_scales_by_the_drawn_amounts():
    bar = _bar()
    angle0, sd0 = _orientation(bar[0, 0])
    assert abs(angle0) < 1e-6
    for seed in range(20):
        angle, scale = rotate_scale(20, 0.15, g(seed))
        measured, sd = _orientation(RandomRotateScale(20, 0.15)(bar, g(seed))[0, 0])
        assert measured == pytest.approx(angle, abs=0.5), seed
        assert sd / sd0 == pytest.approx(scale, rel=0.02), seed


def test_the_measured_rotation_is_uniform_over_plus_minus_rotate():
    bar, rotate = _bar(), 12.0
    angles = np.array([_orientation(RandomRotateScale(rotate)(bar, g(seed))[0, 0])[0] for seed in range(300)])
    assert angles.min() >= -rotate - 0.5 and angles.max() <= rotate + 0.5
    assert stats.kstest(angles, stats.uniform(-rotate, 2 * rotate).cdf).pvalue > 0.01
    assert (angles < 0).mean() == pytest.approx(0.5, abs=0.1)  # both directions


def test_the_warp_fills_what_it_uncovers_with_zeros():
    white = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    out = RandomRotateScale(45)(white, g(0))
    angle, _ = rotate_scale(45, 0, g(0))
    assert abs(angle) > 5
    assert out[:, :, 0, 0].eq(0).all() and out[:, :, -1, -1].eq(0).all()  # corners rotated out
    assert out[:, :, 16, 16].eq(255).all()  # the centre stays
    for seed in range(10):
        _, scale = rotate_scale(0, 0.5, g(seed))
        side = (RandomRotateScale(0, 0.5)(white, g(seed))[0, 0, 16] > 127).sum().item()
        assert side == (pytest.approx(32 * scale, abs=1.5) if scale < 1 else 32), seed  # shrunk: a zero border


# ---------------------------------------------------------------- random erasing
def _rectangle(out: torch.Tensor, x: torch.Tensor, fill) -> tuple[int, int, int, int] | None:
    """The one axis-aligned rectangle, the same in every frame, where ``out`` is ``fill`` and
    outside which it is ``x``; None if nothing was erased."""
    filled = (out == torch.tensor(fill, dtype=out.dtype).view(-1, 1, 1)).all(dim=-3)  # (T, H, W)
    changed = (out != x).any(dim=-3)
    if not changed.any():
        return None
    assert all(torch.equal(filled[0], filled[k]) for k in range(len(filled)))
    rows, cols = torch.nonzero(filled[0].any(1)).flatten(), torch.nonzero(filled[0].any(0)).flatten()
    top, left, h, w = int(rows[0]), int(cols[0]), int(rows[-1]) - int(rows[0]) + 1, int(cols[-1]) - int(cols[0]) + 1
    box = torch.zeros_like(filled[0])
    box[top:top + h, left:left + w] = True
    assert torch.equal(filled[0], box)  # a full rectangle
    assert not (changed & ~box).any()  # and nothing outside it changed
    return top, left, h, w


def test_erase_changes_exactly_one_rectangle_per_clip_of_the_area_drawn():
    x = clip_of(t=3, h=64, w=64)
    areas = []
    for seed in range(200):
        box = _rectangle(RandomErase(1.0, MEAN_UINT8)(x, g(seed)), x, MEAN_UINT8)
        assert box is not None, seed
        drawn = g(seed)
        torch.rand(1, generator=drawn)  # the erase-or-not draw, then the box
        assert box == erase_box(64, 64, drawn), seed
        top, left, h, w = box
        assert 0 <= top <= 64 - h and 0 <= left <= 64 - w
        # w = round(area / h): a whole-pixel box is off its drawn area by at most h / 2 pixels
        assert 0.02 * 64 ** 2 - h / 2 <= h * w <= 0.25 * 64 ** 2 + h / 2, (seed, h, w)
        areas.append(h * w / 64 ** 2)
    areas = np.array(areas)
    assert areas.mean() == pytest.approx(0.135, abs=0.015)  # uniform over [0.02, 0.25]
    erased = sum(_rectangle(RandomErase(0.5, MEAN_UINT8)(x, g(s)), x, MEAN_UINT8) is not None for s in range(400))
    assert 160 <= erased <= 240  # p = 0.5


def test_the_erase_box_draws_area_and_aspect_as_stated():
    n, side = 2000, 1000  # a large frame: rounding to whole pixels is negligible
    boxes = [erase_box(side, side, g(s), (0.05, 0.3), ERASE_RATIO) for s in range(n)]
    area = np.array([h * w / side ** 2 for _, _, h, w in boxes])
    log_aspect = np.array([math.log(h / w) for _, _, h, w in boxes])
    assert stats.kstest(area, stats.uniform(0.05, 0.25).cdf).pvalue > 0.01
    lo, hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    assert stats.kstest(log_aspect, stats.uniform(lo, hi - lo).cdf).pvalue > 0.01
    # position: uniform over where the box fits, so the centre's mean is the frame's centre
    centres = np.array([top + h / 2 for top, _, h, _ in boxes]) / side
    assert centres.mean() == pytest.approx(0.5, abs=0.02)
    # an area too large for the aspects: narrowed to those that fit, never outside the frame
    for s in range(200):
        top, left, h, w = erase_box(48, 48, g(s), (0.9, 1.0))
        assert 0 <= top and top + h <= 48 and 0 <= left and left + w <= 48 and h * w >= 0.88 * 48 ** 2


def test_the_erased_rectangle_is_zero_as_the_model_sees_it():
    """The rectangle holds the mean colour in uint8, which the normalisation on the device
    maps to zero (to within uint8 rounding); the float pipeline gives the same numbers."""
    x = clip_of(t=2, h=48, w=48)
    for seed in range(5):
        erased = build_transforms(True, size=64, crop="pad", uint8=True, erase=1.0)(x, g(seed))
        before = build_transforms(True, size=64, crop="pad", uint8=True)(x, g(seed))  # erasing draws last
        top, left, h, w = _rectangle(erased, before, MEAN_UINT8)
        model_input = to_model_input(erased[None], "cpu")[0]
        assert model_input[..., top:top + h, left:left + w].abs().max() < 0.01
        assert model_input.abs().max() > 1  # elsewhere, the face


# ---------------------------------------------------------------- seeded, pipelines agree, training only
def test_the_same_seed_gives_the_same_clip_and_both_pipelines_agree_bit_for_bit():
    x = clip_of(t=4, h=40, w=52)
    for crop in ("scale", "pad"):
        as_uint8 = build_transforms(True, size=32, crop=crop, uint8=True, **STRONG)
        as_float = build_transforms(True, size=32, crop=crop, **STRONG)
        a = torch.stack([as_uint8(x, g(s)) for s in range(6)])
        assert torch.equal(a, torch.stack([as_uint8(x, g(s)) for s in range(6)]))
        assert len({c.numpy().tobytes() for c in a}) == 6
        assert torch.equal(to_model_input(a, "cpu"), torch.stack([as_float(x, g(s)) for s in range(6)])), crop


def test_nothing_of_it_runs_at_test_time():
    x = clip_of(t=2, h=40, w=52)
    strong = build_transforms(False, size=32, uint8=True, erase=1.0, rotate=30, scale_jitter=0.5, jitter=0.9)
    assert torch.equal(strong(x, g(0)), build_transforms(False, size=32, uint8=True)(x))
    assert [type(t).__name__ for t in strong.transforms] == ["Resize", "CenterCrop", "AsUint8Clip"]


def test_a_run_augments_its_training_clips_only_and_draws_by_seed_epoch_and_index(synthetic_dfew):
    from dfer.config import load_config
    from dfer.data.splits import build_splits, make_dataset

    cfg = load_config(None, [f"data.source.root={synthetic_dfew}", "data.num_frames=2", "data.size=32",
                             "data.erase=1", "data.rotate=10", "data.scale_jitter=0.1", "data.jitter=0.2"])
    splits = build_splits(cfg, None)
    train, test = make_dataset(splits.train, cfg, train=True), make_dataset(splits.test, cfg, train=False)
    names = [type(t).__name__ for t in train.transform.transforms]
    assert {"RandomErase", "RandomRotateScale", "RandomBrightnessContrast"} <= set(names)
    assert not {"RandomErase", "RandomRotateScale", "RandomBrightnessContrast"} & {
        type(t).__name__ for t in test.transform.transforms}
    first = train[(0, 0)]["clip"]
    assert torch.equal(first, train[(0, 0)]["clip"])  # (seed, epoch, index): as after a resume
    assert not torch.equal(first, train[(1, 0)]["clip"])


def test_bad_arguments_are_refused_by_the_transforms():
    with pytest.raises(ConfigError, match=r"erase must be a probability in \[0, 1\], got 1.5"):
        RandomErase(1.5, MEAN_UINT8)
    with pytest.raises(ConfigError, match=r"erase_scale must be two fractions"):
        RandomErase(0.5, MEAN_UINT8, scale=(0.3, 0.1))
    with pytest.raises(ConfigError, match=r"rotate must be degrees in \[0, 180\], got -1"):
        RandomRotateScale(-1)
    with pytest.raises(ConfigError, match=r"scale_jitter must be in \[0, 1\), got 1"):
        RandomRotateScale(0, 1)
    with pytest.raises(ConfigError, match=r"jitter must be in \[0, 1\], got 1.5"):
        RandomBrightnessContrast(1.5)


def test_the_sampled_factors_are_uniform():
    draws = np.array([rotate_scale(10, 0.1, g(s)) + brightness_contrast_factors(0.2, g(s)) for s in range(1000)])
    for column, (lo, hi) in enumerate([(-10, 10), (0.9, 1.1), (0.8, 1.2), (0.8, 1.2)]):
        assert stats.kstest(draws[:, column], stats.uniform(lo, hi - lo).cdf).pvalue > 0.01, column
    assert abs(np.corrcoef(draws[:, 2], draws[:, 3])[0, 1]) < 0.1  # brightness and contrast drawn apart


def test_the_configs_default_erase_scale_is_the_transforms():
    from dfer.config import DataConfig

    assert DataConfig().erase_scale == list(ERASE_SCALE)


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(["erase", "rotate", "scale_jitter", "jitter", "erase_scale"]),
       values=st.lists(st.floats(min_value=-2, max_value=400, allow_nan=False), min_size=1, max_size=2))
def test_what_the_config_accepts_is_what_the_transforms_accept(key, values):
    """A value read from a config builds a training transform; one the config refuses (one
    line naming the setting), the transforms refuse too: the two checks cannot drift apart."""
    from dfer.config import load_config
    from dfer.data.splits import data_transform

    value = values if key == "erase_scale" else values[0]
    text = f"[{', '.join(map(repr, values))}]" if key == "erase_scale" else repr(value)
    erase = {"erase": 1.0} if key == "erase_scale" else {}  # erase_scale counts only where erasing is on
    try:
        cfg = load_config(None, [f"data.{key}={text}", *(f"data.{k}={v}" for k, v in erase.items())])
    except ConfigError as e:
        assert str(e).startswith(f"data.{key} must be") and "\n" not in str(e)
        with pytest.raises(ConfigError):
            build_transforms(True, size=32, crop="pad", **{key: value, **erase})
    else:
        data_transform(cfg.data, train=True)(clip_of(t=1, h=32, w=32), g(0))
