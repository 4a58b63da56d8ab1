"""What MIDAS costs per training step, next to the step itself.

Times :class:`dfer.mixing.BatchMixer` (draws on the CPU generator, transfer, gathers,
lerp of eq. (1)-(3)) on a batch of shape (B, T, 3, S, S), and one training step
(forward, backward, SGD update) of the MIDAS backbone on the same batch:
``dfer.models.create_model("tsm_resnet18", 7)`` when it can be built, else torchvision's
ResNet-18 over the B*T frames flattened (logits averaged over time), named in ``model``.
Prints JSON with the median times in milliseconds and ``fraction`` = midas / step::

    .venv/bin/python benchmarks/midas_overhead.py [--batch 8] [--frames 8] [--size 224] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from dfer.losses import soft_target_cross_entropy
from dfer.config import MixingConfig
from dfer.mixing import BatchMixer


class FramesResNet18(nn.Module):
    """torchvision ResNet-18 applied to every frame, logits averaged over T (fallback)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        import torchvision

        self.net = torchvision.models.resnet18(num_classes=num_classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, t = clip.shape[:2]
        return self.net(clip.flatten(0, 1)).view(b, t, -1).mean(1)


def build_model(num_classes: int) -> tuple[nn.Module, str]:
    try:
        from dfer.models import create_model

        return create_model("tsm_resnet18", num_classes), "dfer tsm_resnet18"
    except Exception as error:  # the model zoo may not exist yet, or fail to build
        print(f"# falling back to torchvision resnet18 over frames: {error!r}")
        return FramesResNet18(num_classes), "torchvision resnet18 over B*T frames"


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up: allocator, kernels, cudnn autotuning
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(args.batch, args.frames, 3, args.size, args.size, generator=g).to(device)
    soft_label = torch.softmax(torch.randn(args.batch, args.classes, generator=g), -1).to(device)

    mixer = BatchMixer("midas", MixingConfig(alpha=0.4), num_classes=args.classes, generator=0)
    midas_ms = median_ms(lambda: mixer(clip, soft_label), args.repeats, device)

    model, model_name = build_model(args.classes)
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    mixed = mixer(clip, soft_label)

    def step() -> None:
        logits = model(mixed.clip)
        loss = soft_target_cross_entropy(logits, mixed.target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_ms = median_ms(step, args.repeats, device)
    print(json.dumps({
        "midas_ms": round(midas_ms, 3),
        "train_step_ms": round(step_ms, 3),
        "fraction": round(midas_ms / step_ms, 5),
        "model": model_name,
        "shape": list(clip.shape),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
    }))


if __name__ == "__main__":
    main()
