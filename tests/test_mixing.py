"""Behaviour of dfer.mixing: MIDAS eq. (1)-(3), the λ and partner draws, the modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dfer.config import MixingConfig
from dfer.errors import ConfigError, DataError
from dfer.mixing import (
    BatchMixer,
    mix_clips,
    mix_targets,
    normalise_target,
    sample_lam,
    sample_partners,
)
from dfer.targets import one_hot


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_soft_labels(batch: int, classes: int, seed: int = 0) -> torch.Tensor:
    """Distinct vote distributions: S = 10 annotators' votes over `classes`."""
    g = gen(seed)
    votes = torch.stack([torch.bincount(torch.randint(0, classes, (10,), generator=g), minlength=classes)
                         for _ in range(batch)]).float()
    return votes / votes.sum(-1, keepdim=True)


def recover_pair(mixed_row: torch.Tensor, labels: torch.Tensor, i: int) -> tuple[int, float, float]:
    """Best j != i and λ with mixed_row ≈ λ y_i + (1-λ) y_j; returns (j, λ, residual)."""
    best = (-1, float("nan"), float("inf"))
    y_i = labels[i].double()
    for j in range(labels.shape[0]):
        if j == i:
            continue
        y_j = labels[j].double()
        d = y_i - y_j
        if float(d @ d) == 0:
            continue
        lam = float((mixed_row.double() - y_j) @ d / (d @ d))
        res = float((mixed_row.double() - (lam * y_i + (1 - lam) * y_j)).abs().max())
        if res < best[2]:
            best = (j, lam, res)
    return best


# --- λ ~ Beta(α, α) --------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.2, 0.4, 1.0, 2.0])
def test_lam_follows_beta(alpha):
    lam = sample_lam(alpha, 20000, gen(1), dtype=torch.float64).numpy()
    assert lam.min() >= 0 and lam.max() <= 1
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    assert lam.mean() == pytest.approx(0.5, abs=0.01)
    assert lam.var() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.05)


def test_lam_float32_is_the_float64_draw_rounded():
    lam64 = sample_lam(0.2, 1000, gen(3), dtype=torch.float64)
    lam32 = sample_lam(0.2, 1000, gen(3))
    assert lam32.dtype == torch.float32
    torch.testing.assert_close(lam32, lam64.float(), rtol=0, atol=0)
    assert not torch.isnan(lam32).any()


def test_lam_is_reproducible_from_the_seed():
    torch.testing.assert_close(sample_lam(0.4, 64, gen(5)), sample_lam(0.4, 64, gen(5)))
    assert not torch.equal(sample_lam(0.4, 64, gen(5)), sample_lam(0.4, 64, gen(6)))


@pytest.mark.parametrize("alpha", [0, -0.4, float("nan"), float("inf")])
def test_lam_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"Expected alpha > 0 \(finite\) for Beta\(alpha, alpha\)"):
        sample_lam(alpha, 4, gen())


# --- partners ----------------------------------------------------------------------------


def test_partners_are_never_self_and_uniform_over_the_others():
    batch, draws = 6, 6000
    g = gen(2)
    partners = torch.stack([sample_partners(batch, g) for _ in range(draws)])  # (draws, B)
    assert (partners != torch.arange(batch)).all()
    for i in range(batch):
        counts = torch.bincount(partners[:, i], minlength=batch).numpy()
        others = np.delete(counts, i)
        assert stats.chisquare(others).pvalue > 1e-3


def test_partners_need_two_clips():
    with pytest.raises(ValueError, match=r"Expected batch_size >= 2 to pair every clip .* got 1"):
        sample_partners(1, gen())


def test_a_seed_is_not_a_generator():
    with pytest.raises(TypeError, match="Expected a torch.Generator, got int"):
        sample_partners(4, 0)


# --- eq. (1)-(2): clips ------------------------------------------------------------------


def test_mix_clips_is_the_convex_combination_frame_by_frame_and_leaves_input_alone():
    clip = torch.randn(4, 3, 2, 5, 5, generator=gen(0))
    before = clip.clone()
    partner = torch.tensor([2, 0, 3, 1])
    lam = torch.tensor([0.1, 0.5, 0.9, 0.3])
    out = mix_clips(clip, partner, lam)
    assert out.data_ptr() != clip.data_ptr()
    torch.testing.assert_close(clip, before, rtol=0, atol=0)
    for i in range(4):
        for t in range(3):  # the same λ in every frame, eq. (2)
            expected = lam[i] * clip[i, t] + (1 - lam[i]) * clip[partner[i], t]
            torch.testing.assert_close(out[i, t], expected)


def test_mix_clips_works_on_images_and_with_one_lam_for_the_batch():
    images = torch.randn(3, 3, 4, 4, generator=gen(1))
    partner = torch.tensor([1, 2, 0])
    out = mix_clips(images, partner, torch.tensor(0.25))
    torch.testing.assert_close(out, 0.25 * images + 0.75 * images[partner])


def test_zeros_mixed_with_ones_give_lam_everywhere_and_conserve_the_pixel_sum():
    clip = torch.stack([torch.ones(4, 3, 8, 8), torch.zeros(4, 3, 8, 8)])
    mixer = BatchMixer("midas", num_classes=7, generator=0)
    result = mixer(clip, random_soft_labels(2, 7))
    assert result.partner.tolist() == [1, 0]  # with two clips the partner is forced
    torch.testing.assert_close(result.clip[0], torch.full_like(clip[0], float(result.lam[0])))
    torch.testing.assert_close(result.clip[1], torch.full_like(clip[1], 1 - float(result.lam[1])))
    # A swap with one shared λ moves mass between the two clips and loses none.
    symmetric = mix_clips(clip, result.partner, result.lam[0])
    assert float(symmetric.sum()) == pytest.approx(float(clip.sum()), rel=1e-6)


@pytest.mark.parametrize("shape", [(8, 3, 224), (2, 3, 4, 5, 6, 7)])
def test_mix_clips_rejects_a_clip_of_the_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"Expected a batched floating clip of shape \(B, T, C, H, W\)"
                                         r" or images \(B, C, H, W\), got shape"):
        mix_clips(torch.zeros(shape), torch.zeros(shape[0], dtype=torch.long), torch.ones(shape[0]))


def test_mix_clips_rejects_mismatched_partner_and_lam():
    clip = torch.zeros(4, 2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"Expected partner_index of shape \(4,\) and dtype torch.int64"):
        mix_clips(clip, torch.zeros(4, dtype=torch.int32), torch.ones(4))
    with pytest.raises(ValueError, match=r"Expected a floating lam of shape \(4,\) or \(\)"):
        mix_clips(clip, torch.zeros(4, dtype=torch.long), torch.ones(3))


def test_mixing_runs_in_the_clip_dtype_under_autocast():
    clip = torch.randn(4, 2, 3, 6, 6, generator=gen(4))
    mixer = BatchMixer("midas", num_classes=7, generator=0)
    labels = random_soft_labels(4, 7)
    reference = mixer(clip, labels)
    mixer = BatchMixer("midas", num_classes=7, generator=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = mixer(clip.bfloat16(), labels)
    assert half.clip.dtype == torch.bfloat16 and half.target.dtype == torch.float32
    torch.testing.assert_close(half.clip.float(), reference.clip, atol=0.05, rtol=0.02)
    torch.testing.assert_close(half.target, reference.target)


# --- eq. (3): targets ------------------------------------------------------------------------


@pytest.mark.parametrize("normalise", ["none", "softmax", "renormalise"])
def test_every_mixed_soft_target_is_a_distribution(normalise):
    mixer = BatchMixer("midas", MixingConfig(normalise=normalise), num_classes=7, generator=1)
    result = mixer(torch.zeros(16, 2, 3, 4, 4), random_soft_labels(16, 7))
    assert result.target.dtype == torch.float32
    assert (result.target >= 0).all()
    torch.testing.assert_close(result.target.sum(-1), torch.ones(16))


def test_each_mixed_target_recovers_as_a_mix_of_two_distinct_clips():
    labels = random_soft_labels(12, 7, seed=3)
    mixer = BatchMixer("midas", MixingConfig(alpha=1.0), num_classes=7, generator=2)
    result = mixer(torch.zeros(12, 1, 1, 2, 2), labels)
    for i in range(12):
        j, lam, residual = recover_pair(result.target[i], labels, i)
        assert residual < 1e-5
        assert j != i and j == int(result.partner[i])
        assert lam == pytest.approx(float(result.lam[i]), abs=1e-5)


def test_midas_hard_on_distinct_one_hot_labels_has_two_nonzero_entries_at_most():
    label = torch.arange(7)
    mixer = BatchMixer("midas-hard", num_classes=7, generator=4)
    for _ in range(20):
        result = mixer(torch.zeros(7, 1, 1, 2, 2), None, label)
        assert ((result.target > 0).sum(-1) <= 2).all()
        lam, j = result.lam, result.partner
        expected = lam[:, None] * one_hot(label, 7) + (1 - lam[:, None]) * one_hot(label[j], 7)
        torch.testing.assert_close(result.target, expected)
        assert (j != torch.arange(7)).all()


@given(batch=st.integers(2, 9), classes=st.integers(2, 11), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_mix_targets_keeps_rows_summing_to_one(batch, classes, seed):
    g = gen(seed)
    target = torch.softmax(torch.randn(batch, classes, generator=g) * 3, -1)
    mixed = mix_targets(target, sample_partners(batch, g), sample_lam(0.4, batch, g))
    torch.testing.assert_close(mixed.sum(-1), torch.ones(batch))
    assert (mixed >= 0).all()


# --- the softmax after eq. (3) ----------------------------------------------------------------


def test_softmax_at_temperature_one_over_s_equals_softmax_over_vote_counts():
    votes = torch.tensor([[10, 0, 0, 0, 0, 0, 0], [5, 3, 1, 1, 0, 0, 0], [2, 2, 2, 1, 1, 1, 1]]).float()
    probs = votes / 10
    torch.testing.assert_close(normalise_target(probs, "softmax", temperature=1 / 10),
                               torch.softmax(votes, -1))


@pytest.mark.parametrize("classes", [7, 8, 11])
def test_literal_softmax_on_probabilities_flattens_the_target(classes):
    target = torch.cat([torch.eye(classes), random_soft_labels(20, classes)])
    out = normalise_target(target, "softmax", temperature=1.0)
    bound = math.e / (math.e + classes - 1)
    assert float(out.max()) <= bound + 1e-6
    assert float(out[0].max()) == pytest.approx(bound, rel=1e-5)  # one-hot reaches it


def test_renormalise_is_identity_on_distributions_and_divides_other_rows():
    probs = random_soft_labels(5, 7)
    torch.testing.assert_close(normalise_target(probs, "renormalise"), probs)
    votes = probs * 10
    torch.testing.assert_close(normalise_target(votes, "renormalise"), probs)
    with pytest.raises(ValueError, match=r"positive sum to renormalise, rows \[1\] do not"):
        normalise_target(torch.stack([probs[0], torch.zeros(7)]), "renormalise")


def test_normalise_none_returns_the_mix_as_is_and_unknown_modes_fail():
    probs = random_soft_labels(3, 7)
    assert normalise_target(probs, "none") is probs
    with pytest.raises(ValueError, match=r"Expected normalise mode in .* got 'softmx'"):
        normalise_target(probs, "softmx")


# --- modes, config, state -----------------------------------------------------------------------


def test_mixup_draws_one_lam_per_batch_over_a_permutation_that_may_pair_a_clip_with_itself():
    mixer = BatchMixer("mixup", MixingConfig(alpha=1.0), num_classes=7, generator=0)
    label = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0])
    self_pairs = 0
    for _ in range(50):
        result = mixer(torch.zeros(8, 1, 1, 2, 2), None, label)
        assert (result.lam == result.lam[0]).all()
        assert sorted(result.partner.tolist()) == list(range(8))
        self_pairs += int((result.partner == torch.arange(8)).sum())
        expected = result.lam[0] * one_hot(label, 7) + (1 - result.lam[0]) * one_hot(label[result.partner], 7)
        torch.testing.assert_close(result.target, expected)
    assert self_pairs > 0


def test_midas_with_lam_per_batch_shares_lam_but_keeps_distinct_partners():
    mixer = BatchMixer("midas", MixingConfig(lam_per="batch"), num_classes=7, generator=0)
    result = mixer(torch.zeros(6, 1, 1, 2, 2), random_soft_labels(6, 7))
    assert (result.lam == result.lam[0]).all()
    assert (result.partner != torch.arange(6)).all()


@pytest.mark.parametrize("mode", ["midas-hard", "mixup"])
def test_hard_modes_reject_clips_without_a_hard_label(mode):
    mixer = BatchMixer(mode, num_classes=7, generator=0)
    with pytest.raises(DataError, match=r"hard labels required: batch position\(s\) \[2\] have "
                                        r"label\(s\) \[-1\], expected a class index in \[0, 7\)"):
        mixer(torch.zeros(4, 1, 1, 2, 2), None, torch.tensor([0, 1, -1, 3]))
    with pytest.raises(ValueError, match=f"mode '{mode}' needs the hard `label` of every clip"):
        mixer(torch.zeros(4, 1, 1, 2, 2), random_soft_labels(4, 7))


def test_mode_none_passes_clip_and_target_through_without_drawing():
    mixer = BatchMixer("none", num_classes=7, generator=0)
    state = mixer.state_dict()["rng_state"].clone()
    clip, labels = torch.randn(3, 2, 3, 4, 4), random_soft_labels(3, 7).double()
    result = mixer(clip, labels)
    torch.testing.assert_close(result.clip, clip, rtol=0, atol=0)
    torch.testing.assert_close(result.target, labels.float(), rtol=0, atol=0)
    assert result.target.dtype == torch.float32
    assert result.lam.tolist() == [1.0, 1.0, 1.0] and result.partner.tolist() == [0, 1, 2]
    assert torch.equal(mixer.state_dict()["rng_state"], state)


def test_a_batch_of_one_clip_passes_through_midas_unmixed():
    mixer = BatchMixer("midas", MixingConfig(normalise="softmax"), num_classes=7, generator=0)
    clip, labels = torch.randn(1, 2, 3, 4, 4), random_soft_labels(1, 7)
    result = mixer(clip, labels)
    torch.testing.assert_close(result.clip, clip)
    torch.testing.assert_close(result.target, torch.softmax(labels, -1))
    assert result.lam.tolist() == [1.0] and result.partner.tolist() == [0]


def test_same_seed_same_batches_and_state_dict_resumes_exactly():
    clip, labels = torch.randn(5, 2, 3, 4, 4, generator=gen(9)), random_soft_labels(5, 7)
    a = BatchMixer("midas", num_classes=7, generator=11)
    b = BatchMixer("midas", num_classes=7, generator=11)
    for _ in range(3):
        ra, rb = a(clip, labels), b(clip, labels)
        torch.testing.assert_close(ra.clip, rb.clip, rtol=0, atol=0)
        assert torch.equal(ra.partner, rb.partner) and torch.equal(ra.lam, rb.lam)
    saved = a.state_dict()
    first = [a(clip, labels) for _ in range(3)]
    resumed = BatchMixer("midas", num_classes=7, generator=999)
    resumed.load_state_dict(saved)
    for expected in first:
        got = resumed(clip, labels)
        assert torch.equal(got.lam, expected.lam) and torch.equal(got.partner, expected.partner)


@pytest.mark.parametrize(
    ("mode", "kwargs", "message"),
    [
        ("midsa", {}, r"mixing mode must be none, midas, midas-hard, mixup, got 'midsa'"),
        ("midas", {"alpha": 0}, r"mixing\.alpha must be > 0, got 0"),
        ("midas", {"alpha": -0.4}, r"mixing\.alpha must be > 0, got -0.4"),
        ("midas", {"alpha": "x"}, r"mixing\.alpha must be > 0, got 'x'"),
        ("midas", {"temperature": 0.0}, r"mixing\.temperature must be > 0, got 0.0"),
        ("midas", {"normalise": "l1"}, r"mixing\.normalise must be none, softmax or renormalise, got 'l1'"),
        ("midas", {"lam_per": "clip"}, r"mixing\.lam_per must be sample or batch or null, got 'clip'"),
        ("mixup", {"normalise": "softmax"}, r"label mode 'mixup' is defined without normalisation"),
        ("mixup", {"lam_per": "sample"}, r"label mode 'mixup' draws one lam per batch"),
    ],
)
def test_config_rejects_bad_fields(mode, kwargs, message):
    """The mixer checks its settings as a run's config is checked when it is read."""
    with pytest.raises(ConfigError, match=message):
        BatchMixer(mode, MixingConfig(**kwargs), num_classes=7)


def test_config_resolves_lam_per_from_the_mode():
    assert MixingConfig().lam_per_of("midas") == "sample"
    assert MixingConfig().lam_per_of("mixup") == "batch"
    assert MixingConfig(lam_per="batch").lam_per_of("midas") == "batch"


def test_soft_label_of_the_wrong_width_is_rejected():
    mixer = BatchMixer("midas", num_classes=7, generator=0)
    with pytest.raises(ValueError, match=r"Expected a floating soft_label of shape \(4, 7\), got shape \(4, 8\)"):
        mixer(torch.zeros(4, 1, 1, 2, 2), random_soft_labels(4, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_everything_stays_on_the_device_and_matches_cpu():
    clip, labels = torch.randn(6, 4, 3, 8, 8, generator=gen(0)), random_soft_labels(6, 7)
    cpu = BatchMixer("midas", num_classes=7, generator=3)(clip, labels)
    cuda = BatchMixer("midas", num_classes=7, generator=3)(clip.cuda(), labels.cuda())
    for field in cuda:
        assert field.device.type == "cuda"
    torch.testing.assert_close(cuda.clip.cpu(), cpu.clip)
    torch.testing.assert_close(cuda.target.cpu(), cpu.target)
    assert torch.equal(cuda.partner.cpu(), cpu.partner)


def test_a_uint8_batch_is_refused_with_the_conversion_to_use():
    """dfer's loaders give uint8 clips; mixing them as integers would wrap around, so the
    mixer says which function makes them float."""
    mixer = BatchMixer("midas", MixingConfig(alpha=0.4), num_classes=3, generator=0)
    clip = torch.zeros(4, 2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"dtype torch\.uint8; dfer's loaders give uint8 clips: mix "
                                         r"to_model_input\(batch\['clip'\], device\)"):
        mixer(clip, torch.full((4, 3), 1 / 3))
    from dfer.data.transforms import to_model_input

    assert mixer(to_model_input(clip, "cpu"), torch.full((4, 3), 1 / 3)).clip.dtype == torch.float32
