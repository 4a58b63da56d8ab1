"""Behaviour of dfer.losses.soft_target_cross_entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dfer.losses import soft_target_cross_entropy


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-Σ_k t_k log p_k, written out in float64."""
    z = logits.double()
    log_p = z - torch.logsumexp(z, dim=-1, keepdim=True)
    return -(target.double() * log_p).sum(-1)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_one_hot_targets_give_the_ordinary_cross_entropy(reduction):
    logits = torch.randn(9, 7, generator=gen(0)) * 4
    label = torch.randint(0, 7, (9,), generator=gen(1))
    ours = soft_target_cross_entropy(logits, F.one_hot(label, 7).float(), reduction=reduction)
    torch.testing.assert_close(ours, F.cross_entropy(logits, label, reduction=reduction))


def test_soft_targets_match_the_written_out_formula():
    logits = torch.randn(6, 8, generator=gen(2)) * 3
    target = torch.softmax(torch.randn(6, 8, generator=gen(3)), -1)
    per_sample = soft_target_cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(per_sample.double(), reference(logits, target))
    # Cross-entropy = entropy of the target + KL(target || prediction) >= entropy.
    entropy = -(target * target.log()).sum(-1)
    assert (per_sample >= entropy - 1e-6).all()
    torch.testing.assert_close(soft_target_cross_entropy(target.log(), target, reduction="none"), entropy)


def test_weighted_mean_is_sum_of_weighted_losses_over_sum_of_weights():
    logits = torch.randn(5, 7, generator=gen(4))
    target = torch.softmax(torch.randn(5, 7, generator=gen(5)), -1)
    weight = torch.tensor([0.5, 2.0, 0.0, 1.0, 3.0])
    per_sample = reference(logits, target)
    expected = (weight.double() * per_sample).sum() / weight.sum()
    torch.testing.assert_close(soft_target_cross_entropy(logits, target, weight).double(), expected)
    torch.testing.assert_close(
        soft_target_cross_entropy(logits, target, weight, reduction="sum").double(),
        (weight.double() * per_sample).sum(),
    )
    torch.testing.assert_close(
        soft_target_cross_entropy(logits, target, weight, reduction="none").double(),
        weight.double() * per_sample,
    )


def test_integer_weight_counts_a_sample_that_many_times():
    logits = torch.randn(3, 7, generator=gen(6))
    target = torch.softmax(torch.randn(3, 7, generator=gen(7)), -1)
    weighted = soft_target_cross_entropy(logits, target, torch.tensor([1.0, 2.0, 1.0]))
    repeated = soft_target_cross_entropy(logits[[0, 1, 1, 2]], target[[0, 1, 1, 2]])
    torch.testing.assert_close(weighted, repeated)
    unit = soft_target_cross_entropy(logits, target, torch.ones(3))
    torch.testing.assert_close(unit, soft_target_cross_entropy(logits, target))


def test_all_zero_weights_give_zero_loss_and_zero_gradient_not_nan():
    logits = torch.randn(4, 7, generator=gen(8), requires_grad=True)
    target = torch.softmax(torch.randn(4, 7, generator=gen(9)), -1)
    loss = soft_target_cross_entropy(logits, target, torch.zeros(4))
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_gradient_is_softmax_minus_target_and_passes_gradcheck():
    logits = torch.randn(4, 7, generator=gen(10), dtype=torch.float64, requires_grad=True)
    target = torch.softmax(torch.randn(4, 7, generator=gen(11), dtype=torch.float64), -1)
    weight = torch.tensor([1.0, 0.5, 2.0, 0.25], dtype=torch.float64)
    soft_target_cross_entropy(logits, target).backward()
    torch.testing.assert_close(logits.grad, (torch.softmax(logits.detach(), -1) - target) / 4)
    assert torch.autograd.gradcheck(lambda z: soft_target_cross_entropy(z, target, weight), (logits,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_handled_in_float32(dtype):
    logits = (torch.randn(8, 7, generator=gen(12)) * 20).to(dtype)
    logits[0, 0] = torch.finfo(dtype).max / 2  # one huge score: naive exp would overflow
    target = torch.softmax(torch.randn(8, 7, generator=gen(13)), -1).to(dtype)
    loss = soft_target_cross_entropy(logits, target, reduction="none")
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    torch.testing.assert_close(loss.double(), reference(logits.float(), target.float()), rtol=1e-5, atol=1e-3)


def test_bad_inputs_are_rejected_with_what_was_expected():
    logits = torch.zeros(4, 7)
    with pytest.raises(ValueError, match=r"Expected a floating target of shape \(4, 7\) like the logits, "
                                         r"got shape \(4,\) and dtype torch.int64"):
        soft_target_cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Expected floating logits of shape \(B, K\), got shape \(4, 7, 1\)"):
        soft_target_cross_entropy(logits[..., None], logits[..., None])
    with pytest.raises(ValueError, match=r"Expected a floating weight of shape \(4,\), got shape \(4, 1\)"):
        soft_target_cross_entropy(logits, logits, torch.ones(4, 1))
    with pytest.raises(ValueError, match=r"Expected reduction in .* got 'avg'"):
        soft_target_cross_entropy(logits, logits, reduction="avg")
