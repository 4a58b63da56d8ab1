"""What the temporal shift costs: a TSM-ResNet-18 training step against torchvision's ResNet-18.

Both networks see the same frames (B clips of T frames, flattened to B*T images) and end
the same way (per-frame pooled features averaged over T, one linear layer), so the only
difference is the shift in each block's residual branch. A third arm runs dfer's TSM with
the shift written as three ``torch.cat`` (the straightforward way, autograd's own
backward), to show what the hand-written shift saves. Steps (forward, cross-entropy,
backward, SGD) are interleaved, one of each arm per round, so a change in the machine's
load touches every arm alike; the figure is the ratio of median step times::

    .venv/bin/python benchmarks/shift_overhead.py [--size 112 224] [--batch 8] [--frames 8]
        [--rounds 12] [--warmup 2] [--threads N] [--channels-last]

Prints one JSON object: per size, each arm's median seconds per step and
``tsm_over_resnet`` (the target is <= 1.05) and ``cat_over_resnet``, and the shift alone
(forward + backward on the first stage's activation) in milliseconds for both shifts. Measure on an idle
machine: memory-bound work (the shift is all memory traffic) slows far more under load
than the convolutions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from unittest import mock

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import resnet18

from dfer.models import create_model
from dfer.models import tsm
from dfer.runtime import keep_freed_memory


def cat_shift(x: torch.Tensor, shift_div: int | None = 8) -> torch.Tensor:
    """The shift as three ``torch.cat`` (the same output as :func:`dfer.models.tsm.temporal_shift`)."""
    if not shift_div or x.shape[-3] // shift_div == 0:
        return x
    fold = x.shape[-3] // shift_div
    zero = x.new_zeros((*x.shape[:-4], 1, fold, *x.shape[-2:]))
    from_next = torch.cat((x[..., 1:, :fold, :, :], zero), dim=-4)
    from_prev = torch.cat((zero, x[..., :-1, fold:2 * fold, :, :]), dim=-4)
    return torch.cat((from_next, from_prev, x[..., 2 * fold:, :, :]), dim=-3)


class FrameResNet(nn.Module):
    """torchvision's ResNet-18 on every frame, features averaged over T, then one linear layer."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.net = resnet18(num_classes=num_classes)
        self.head, self.net.fc = self.net.fc, nn.Identity()

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, t = clip.shape[:2]
        return self.head(self.net(clip.flatten(0, 1)).unflatten(0, (b, t)).mean(1))


def step(model: nn.Module, opt: torch.optim.Optimizer, clip: torch.Tensor, label: torch.Tensor) -> None:
    loss = F.cross_entropy(model(clip), label)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def shift_op_ms(shape: tuple[int, ...], repeats: int = 15) -> dict:
    """Median milliseconds of the shift alone, forward + backward, on an activation of
    ``shape`` (B, T, C, H, W), for dfer's shift and the cat shift, interleaved."""
    x = torch.randn(*shape, requires_grad=True)
    grad = torch.randn(*shape)
    times: dict[str, list[float]] = {"tsm": [], "tsm_cat": []}
    for _ in range(repeats):
        for name, fn in (("tsm", tsm.temporal_shift), ("tsm_cat", cat_shift)):
            start = time.perf_counter()
            fn(x, 8).backward(grad)
            times[name].append(1000 * (time.perf_counter() - start))
            x.grad = None
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def measure(size: int, a: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    arms = {"resnet18": FrameResNet(7), "tsm": create_model("tsm_resnet18", 7), "tsm_cat": create_model("tsm_resnet18", 7)}
    opts = {}
    for name, model in arms.items():
        model.train().to(memory_format=fmt)
        opts[name] = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    clip = torch.randn(a.batch, a.frames, 3, size, size)
    if a.channels_last:  # the frames the trunk sees, (B*T, C, H, W), in channels_last
        clip = clip.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (a.batch, a.frames))
    label = torch.randint(0, 7, (a.batch,))
    times: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(a.warmup + a.rounds):
        for name, model in arms.items():
            with mock.patch.object(tsm, "temporal_shift", cat_shift) if name == "tsm_cat" else contextlib.nullcontext():
                start = time.perf_counter()
                step(model, opts[name], clip, label)
                elapsed = time.perf_counter() - start
            if r >= a.warmup:
                times[name].append(elapsed)
    median = {name: statistics.median(t) for name, t in times.items()}
    # the first stage's activation, where the shift moves the most bytes
    op = shift_op_ms((a.batch, a.frames, 64, size // 4, size // 4))
    return {"size": size, "median_s": median, "tsm_over_resnet": median["tsm"] / median["resnet18"],
            "cat_over_resnet": median["tsm_cat"] / median["resnet18"], "shift_op_ms_layer1": op}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs="+", default=[112, 224])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--channels-last", action="store_true")
    a = p.parse_args()
    kept = keep_freed_memory()  # as dfer's command line does (MALLOC_MMAP_MAX_=65536 measures without)
    if a.threads:
        torch.set_num_threads(a.threads)
    report = {"benchmark": "shift_overhead", "keep_freed_memory": kept, "batch": a.batch, "frames": a.frames, "rounds": a.rounds,
              "channels_last": a.channels_last, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "load_avg_1min": os.getloadavg()[0],
              "sizes": [measure(s, a) for s in a.size], "target_tsm_over_resnet": 1.05}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
