"""Training throughput of ResNet-18 on still faces: input side, fp32 vs bf16 autocast vs
``torch.compile``.

Times forward + backward + SGD of torchvision's ``resnet18(num_classes=8)`` on random
batches of 128 faces at each ``--sizes`` side, after two warm-up steps, in each of
``--variants``: ``fp32``; ``fp32+channels_last``; ``bf16+channels_last`` (CPU bf16
autocast); ``compile`` (``torch.compile`` of the model, inductor, fp32; the seconds its
first two steps took, the compilation, are reported apart). It decides the still-face
recipe's input side, precision and compilation on the machine at hand (see
docs/still-faces.md). Time it on an idle machine::

    .venv/bin/python benchmarks/still_face_step.py --threads 2 [--sizes 48 64 --steps 4 --variants fp32 compile]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torchvision


VARIANTS = ("fp32", "fp32+channels_last", "bf16+channels_last", "compile")


def images_per_second(size: int, variant: str, steps: int, batch: int = 128) -> tuple[float, float]:
    """(images a second over ``steps`` timed steps, seconds of the two warm-up steps)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 8, (batch,))
    bf16 = variant.startswith("bf16")
    if variant.endswith("channels_last"):
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if variant == "compile" else model
    start = time.perf_counter()
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
            warm = t0 - start
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(forward(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0), warm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[48, 64])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=["fp32", "bf16+channels_last"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for s in args.sizes:
        for v in args.variants:
            ips, warm = images_per_second(s, v, args.steps)
            rows.append({"size": s, "variant": v, "images_per_s": round(ips, 1), "warmup_s": round(warm, 1)})
    print(json.dumps({"benchmark": "still_face_step", "threads": args.threads, "batch": 128, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
