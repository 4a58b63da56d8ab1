"""Training throughput of a dfer model: clips per second for forward + backward + SGD step.

The MIDAS setting (section 4.3) is batch 8, 8 frames, 224x224, SGD with momentum 0.9. After
``--warmup`` untimed steps (allocator, kernel selection), ``--iters`` steps are timed one by
one; the median step time gives ``clips_per_s = batch / median``. Prints one JSON object::

    .venv/bin/python benchmarks/train_step.py [--model tsm_resnet18] [--size 224 112 64]
        [--batch 8] [--frames 8] [--iters 5] [--warmup 2] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
from torch.nn import functional as F

from dfer.models import create_model, list_models
from dfer.runtime import keep_freed_memory


def time_steps(model: torch.nn.Module, clip: torch.Tensor, label: torch.Tensor, warmup: int, iters: int) -> list[float]:
    """Seconds per training step (forward, cross-entropy, backward, SGD update), one per timed step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    sync = torch.cuda.synchronize if clip.device.type == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + iters):
        sync()
        start = time.perf_counter()
        loss = F.cross_entropy(model(clip), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tsm_resnet18", choices=list_models())
    parser.add_argument("--size", type=int, nargs="+", default=[224], help="frame side(s) in pixels")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    kept = keep_freed_memory()  # as dfer's command line does (MALLOC_MMAP_MAX_=65536 measures without)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model(args.model, args.classes).to(device).train()
    results = []
    for size in args.size:
        clip = torch.randn(args.batch, args.frames, 3, size, size, device=device)
        label = torch.randint(0, args.classes, (args.batch,), device=device)
        times = time_steps(model, clip, label, args.warmup, args.iters)
        median = statistics.median(times)
        results.append(
            {
                "size": size,
                "step_ms_median": round(1000 * median, 1),
                "step_ms_min": round(1000 * min(times), 1),
                "clips_per_s": round(args.batch / median, 2),
                "frames_per_s": round(args.batch * args.frames / median, 1),
            }
        )
    print(
        json.dumps(
            {
                "benchmark": "train_step",
                "keep_freed_memory": kept,
                "model": args.model,
                "batch": args.batch,
                "frames": args.frames,
                "warmup": args.warmup,
                "iters": args.iters,
                "device": str(device) if device.type != "cpu" else f"cpu ({platform.processor() or platform.machine()})",
                "threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
                "torch": torch.__version__,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
