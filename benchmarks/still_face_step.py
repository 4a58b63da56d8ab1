"""Training throughput of ResNet-18 on still faces: input side, fp32 vs bf16 autocast.

Times forward + backward + SGD of torchvision's ``resnet18(num_classes=8)`` on random
batches of 128 faces at each ``--sizes`` side, in fp32 and under CPU bf16 autocast with
channels_last, after two warm-up steps. It decides the still-face recipe's input side and
precision on the machine at hand (see docs/still-faces.md). Time it on an idle machine::

    .venv/bin/python benchmarks/still_face_step.py --threads 2 [--sizes 48 64 --steps 4]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torchvision


def images_per_second(size: int, bf16: bool, steps: int, batch: int = 128) -> float:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 8, (batch,))
    if bf16:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[48, 64])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = [{"size": s, "precision": "bf16+channels_last" if bf16 else "fp32",
             "images_per_s": round(images_per_second(s, bf16, args.steps), 1)}
            for s in args.sizes for bf16 in (False, True)]
    print(json.dumps({"benchmark": "still_face_step", "threads": args.threads, "batch": 128, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
