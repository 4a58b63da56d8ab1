"""benchmarks/shift_overhead.py: its arms compute what they claim, so the ratio it prints
compares like with like."""

from __future__ import annotations

import argparse
from unittest import mock

import pytest
import torch

from conftest import load_benchmark
from dfer.models import create_model, tsm


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("shift_overhead")


def test_the_cat_arm_shifts_exactly_as_dfer_does_and_patches_the_model(bench):
    x = torch.randn(2, 5, 16, 3, 3, requires_grad=True)
    assert torch.equal(bench.cat_shift(x, 8), tsm.temporal_shift(x, 8))
    g1, = torch.autograd.grad((bench.cat_shift(x, 4) ** 2).sum(), x)
    g2, = torch.autograd.grad((tsm.temporal_shift(x, 4) ** 2).sum(), x)
    assert torch.allclose(g1, g2)
    model = create_model("tsm_resnet18", 7).eval()
    clip = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        ref = model(clip)
        with mock.patch.object(tsm, "temporal_shift", bench.cat_shift):
            assert torch.allclose(model(clip), ref, atol=1e-5)
        with mock.patch.object(tsm, "temporal_shift", lambda x, shift_div=8: x):  # the patch reaches every block
            assert not torch.allclose(model(clip), ref, atol=1e-3)


def test_the_resnet_arm_is_the_tsm_without_its_shift(bench):
    """Same weights: torchvision's ResNet-18 per frame + temporal mean + linear == TSM with the shift off."""
    frame = bench.FrameResNet(7).eval()
    model = create_model("tsm_resnet18", 7, shift_div=0).eval()
    model.backbone.load_state_dict({k: v for k, v in frame.net.state_dict().items()}, strict=False)
    model.classifier.load_state_dict(frame.head.state_dict())
    clip = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(frame(clip), model(clip), atol=1e-5)


def test_a_measurement_reports_every_arm(bench):
    a = argparse.Namespace(batch=1, frames=2, rounds=1, warmup=0, channels_last=True)
    out = bench.measure(32, a)
    assert set(out["median_s"]) == {"resnet18", "tsm", "tsm_cat"} and all(v > 0 for v in out["median_s"].values())
    assert out["tsm_over_resnet"] == out["median_s"]["tsm"] / out["median_s"]["resnet18"]
