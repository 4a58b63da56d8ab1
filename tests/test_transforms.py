"""Clip transforms: one random draw per clip, applied identically to every frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchvision.transforms.v2 import functional as F

from dfer.data.transforms import (AsUint8Clip, CenterCrop, IMAGENET_MEAN, Normalize, RandomHorizontalFlip,
                                  RandomPadCrop, RandomScaleCrop, Resize, ToClipTensor, build_transforms,
                                  to_model_input)
from dfer.errors import ConfigError


def textured_clip(t=6, h=48, w=64, seed=0, identical=True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if identical:
        return np.repeat(frame[None], t, axis=0)
    return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_random_scale_crop_is_the_same_for_every_frame():
    clip = textured_clip()
    crop = RandomScaleCrop(32, fix_crop=False)
    outputs = []
    for seed in range(20):
        out = crop(clip, torch.Generator().manual_seed(seed))
        assert out.shape == (6, 3, 32, 32) and out.dtype == torch.uint8
        assert all(torch.equal(out[0], out[k]) for k in range(1, 6))  # identical frames stay identical
        outputs.append(out[0])
    assert len({o.numpy().tobytes() for o in outputs}) > 10  # but the draw differs between clips


def test_random_scale_crop_matches_a_reference_crop():
    # distinct frames: each output frame must equal the crop of its own input frame
    clip = textured_clip(identical=False)
    crop = RandomScaleCrop(24)
    g = torch.Generator().manual_seed(3)
    top, left, h, w = crop.params(48, 64, torch.Generator().manual_seed(3))
    out = crop(clip, g)
    tensor = torch.from_numpy(clip).permute(0, 3, 1, 2)
    for k in range(6):
        ref = torch.nn.functional.interpolate(tensor[k:k + 1, :, top:top + h, left:left + w].float(), size=(24, 24),
                                              mode="bilinear", antialias=True, align_corners=False)
        assert (out[k].float() - ref[0]).abs().max() <= 1.5


def test_random_scale_crop_sizes_follow_the_scales():
    crop = RandomScaleCrop(224, scales=(1.0, 0.875, 0.75, 0.66), max_distort=1)
    step_of = {int(256 * s): i for i, s in enumerate(crop.scales)}  # crop side -> scale step
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        top, left, h, w = crop.params(256, 320, g)
        assert h in step_of and w in step_of
        assert abs(step_of[h] - step_of[w]) <= 1
        assert 0 <= top <= 256 - h and 0 <= left <= 320 - w
        seen.add((h, w))
    assert len(seen) == 10  # 4 square + 6 one-step-distorted pairs all reachable
    with pytest.raises(ConfigError, match="scales must be fractions"):
        RandomScaleCrop(224, scales=(1.2,))


def test_flip_flips_every_frame_or_none():
    clip = textured_clip(identical=False)
    tensor = torch.from_numpy(clip).permute(0, 3, 1, 2)
    flips = 0
    for seed in range(40):
        out = RandomHorizontalFlip()(clip, torch.Generator().manual_seed(seed))
        flipped = [torch.equal(out[k], tensor[k].flip(-1)) for k in range(6)]
        kept = [torch.equal(out[k], tensor[k]) for k in range(6)]
        assert all(flipped) or all(kept)
        flips += all(flipped)
    assert 8 <= flips <= 32  # p = 0.5


def test_resize_center_crop_and_tensor_conversion():
    clip = np.zeros((2, 40, 80, 3), np.uint8)
    clip[:, :, 20:60] = 200  # central square bright, sides dark
    out = CenterCrop(40)(Resize(40)(clip))
    assert out.shape == (2, 3, 40, 40) and (out == 200).all()
    x = ToClipTensor()(clip)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 40, 80) and x.is_contiguous()
    assert torch.allclose(x[0, :, 0, 30], torch.full((3,), 200 / 255))
    assert x[0, :, 0, 0].eq(0).all()


def test_normalize_inverse_round_trips():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    norm = Normalize()
    y = norm(x)
    assert torch.allclose(y[:, 0], (x[:, 0] - IMAGENET_MEAN[0]) / 0.229, atol=1e-6)
    assert torch.allclose(norm.inverse(y), x, atol=1e-6)
    assert torch.allclose(norm.inverse(norm(x[None]))[0], x, atol=1e-6)  # leading batch dim
    assert torch.allclose(Normalize(inplace=True)(x.clone()), y, atol=1e-6)
    before = x.clone()
    norm(x)
    assert torch.equal(x, before)  # the default leaves the caller's tensor alone


def test_build_transforms_pipelines():
    clip = textured_clip(t=8, h=64, w=80)
    train = build_transforms(True, size=32)
    a = train(clip, torch.Generator().manual_seed(1))
    b = train(clip, torch.Generator().manual_seed(1))
    assert a.shape == (8, 3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    assert all(torch.equal(a[0], a[k]) for k in range(8))
    assert train.size_hint == 49  # ceil(32 / 0.66): the smallest crop still needs this short side
    test = build_transforms(False, size=32)
    c = test(clip)
    assert torch.equal(c, test(clip, torch.Generator().manual_seed(5)))  # no randomness at test time
    # normalised with ImageNet statistics: undoing it gives values in [0, 1]
    raw = Normalize().inverse(c)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert test.size_hint == 32


# ---------------------------------------------------------------------------- RandomPadCrop
def translate(frame: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Reference: ``frame`` (H, W, C) moved down by dy and right by dx, zeros where it left."""
    h, w = frame.shape[:2]
    out = np.zeros_like(frame)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = frame[max(-dy, 0):h - max(dy, 0),
                                                                      max(-dx, 0):w - max(dx, 0)]
    return out


def offset_of(out: torch.Tensor, clip: np.ndarray, pad: int) -> tuple[int, int]:
    """The one (dy, dx) in [-pad, pad]^2 whose translate of every frame of ``clip`` gives ``out``."""
    frames = out.permute(0, 2, 3, 1).numpy()
    found = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)
             if all(np.array_equal(frames[k], translate(clip[k], dy, dx)) for k in range(len(clip)))]
    assert len(found) == 1, found
    return found[0]


def test_pad_crop_without_pad_at_the_input_size_is_the_identity():
    clip = textured_clip(t=3, h=48, w=48, identical=False)
    for seed in range(5):
        out = RandomPadCrop(48, pad=0)(clip, torch.Generator().manual_seed(seed))
        assert out.dtype == torch.uint8 and torch.equal(out, torch.from_numpy(clip).permute(0, 3, 1, 2))


def test_pad_crop_translates_every_frame_by_one_offset_within_pad_with_zeros():
    clip = textured_clip(t=4, h=48, w=48, identical=False)  # distinct frames: each must move the same way
    crop = RandomPadCrop(48, pad=4)
    offsets = [offset_of(crop(clip, torch.Generator().manual_seed(seed)), clip, 4) for seed in range(150)]
    assert {dy for dy, _ in offsets} == set(range(-4, 5)) == {dx for _, dx in offsets}  # all 2 * pad + 1 occur
    pairs = {offset_of(RandomPadCrop(48, pad=1)(clip, torch.Generator().manual_seed(s)), clip, 1) for s in range(80)}
    assert len(pairs) == 9  # and every combination of the two


def test_pad_crop_is_reproducible_and_resizes_the_translate():
    clip = textured_clip(t=2, h=48, w=48, identical=False)
    crop = RandomPadCrop(64, pad=3)
    a = crop(clip, torch.Generator().manual_seed(11))
    assert torch.equal(a, crop(clip, torch.Generator().manual_seed(11)))
    assert len({crop(clip, torch.Generator().manual_seed(s)).numpy().tobytes() for s in range(20)}) > 10
    # at another size: the translate at the frame's own size, resized (no zoom, no aspect change)
    same = RandomPadCrop(48, pad=3)(clip, torch.Generator().manual_seed(11))
    dy, dx = offset_of(same, clip, 3)
    ref = torch.from_numpy(np.stack([translate(f, dy, dx) for f in clip])).permute(0, 3, 1, 2)
    assert a.shape == (2, 3, 64, 64) and torch.equal(a, F.resize(ref, [64, 64], antialias=True))
    with pytest.raises(ConfigError, match="pad must be >= 0, got -1"):
        RandomPadCrop(48, pad=-1)


@pytest.mark.parametrize("pad,size,hw", [(4, 64, (48, 48)), (3, 48, (40, 52)), (9, 16, (6, 7))])
def test_pad_crop_equals_cropping_the_zero_padded_frame_draw_for_draw(pad, size, hw):
    # the definition: pad every frame with zeros, cut the frame's own size at the drawn
    # (top, left), resize; the same two draws, so training pixels do not depend on how
    clip = textured_clip(t=3, h=hw[0], w=hw[1], identical=False)
    x = torch.from_numpy(clip).permute(0, 3, 1, 2)
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        top, left = (int(torch.randint(2 * pad + 1, (1,), generator=g)) for _ in range(2))
        ref = F.pad(x, [pad] * 4, fill=0)[..., top:top + hw[0], left:left + hw[1]]
        if hw != (size, size):
            ref = F.resize(ref, [size, size], antialias=True)
        assert torch.equal(RandomPadCrop(size, pad)(clip, torch.Generator().manual_seed(seed)), ref), seed


def test_build_transforms_pad_crop_trains_by_translation_and_tests_as_before():
    clip = textured_clip(t=2, h=48, w=48, identical=False)
    for size in (32, 48, 64):
        old, new = build_transforms(False, size=size), build_transforms(False, size=size, crop="pad", pad=4)
        assert torch.equal(old(clip), new(clip)) and old.size_hint == new.size_hint == size  # test time: unchanged
    train = build_transforms(True, size=48, crop="pad", pad=4, flip=False)
    assert train.size_hint == 48  # no multi-scale zoom to decode for
    assert [type(t).__name__ for t in train.transforms] == ["RandomPadCrop", "ToClipTensor", "Normalize"]
    assert type(build_transforms(True, size=48, crop="pad").transforms[1]).__name__ == "RandomHorizontalFlip"
    x = Normalize().inverse(train(clip, torch.Generator().manual_seed(2)))
    assert max(map(abs, offset_of((x * 255).round().to(torch.uint8), clip, 4))) <= 4  # a translate, normalised
    # without padding, training and test time see the same face
    still = build_transforms(True, size=48, crop="pad", pad=0, flip=False)
    assert torch.equal(still(clip), build_transforms(False, size=48)(clip))
    with pytest.raises(ConfigError, match="crop must be 'scale' or 'pad', got 'zoom'"):
        build_transforms(True, size=48, crop="zoom")


# ------------------------------------------------------------------ uint8 to the device
def test_uint8_pipeline_then_to_model_input_is_bit_identical_to_the_float_pipeline():
    """The geometry draws the same parameters in both pipelines; converting and normalising
    the uint8 batch on the device gives exactly the float pipeline's clips."""
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (4, 40, 52, 3), dtype=np.uint8) for _ in range(3)]
    for train, crop in ((True, "scale"), (True, "pad"), (False, "scale")):
        as_float = build_transforms(train, size=32, crop=crop)
        as_uint8 = build_transforms(train, size=32, crop=crop, uint8=True)
        ref = torch.stack([as_float(c, torch.Generator().manual_seed(i)) for i, c in enumerate(clips)])
        raw = torch.stack([as_uint8(c, torch.Generator().manual_seed(i)) for i, c in enumerate(clips)])
        assert raw.dtype == torch.uint8 and raw.shape == ref.shape
        assert torch.equal(to_model_input(raw, "cpu"), ref), (train, crop)
    float_batch = ref.clone()
    assert to_model_input(float_batch, "cpu") is float_batch  # a model's own float input is only moved


def test_a_uint8_batch_is_one_copy_of_its_clips():
    from dfer.data.dataset import collate

    frames = np.zeros((2, 8, 8, 3), np.uint8)
    view = AsUint8Clip()(torch.from_numpy(frames).permute(0, 3, 1, 2)[:, :, 2:6, 2:6])  # no copy in the transform
    assert not view.is_contiguous()
    item = {"clip": view, "soft_label": torch.ones(2) / 2, "label": torch.tensor(0), "index": torch.tensor(0)}
    batch = collate([item, item])["clip"]
    frames[:] = 7
    assert batch.dtype == torch.uint8 and batch.shape == (2, 2, 3, 4, 4) and int(batch.max()) == 0
    with pytest.raises(TypeError, match="expects uint8"):
        AsUint8Clip()(torch.zeros(2, 3, 4, 4))


def test_dfer_datasets_give_uint8_clips(synthetic_dfew):
    from dfer.config import load_config
    from dfer.data.splits import build_splits, make_dataset

    cfg = load_config(None, [f"data.source.root={synthetic_dfew}", "data.num_frames=2", "data.size=32"])
    splits = build_splits(cfg, None)
    for train in (True, False):
        item = make_dataset(splits.train, cfg, train=train)[0]
        assert item["clip"].dtype == torch.uint8 and item["clip"].shape == (2, 3, 32, 32)
