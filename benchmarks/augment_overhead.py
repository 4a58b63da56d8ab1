"""What the stronger augmentation costs the loader: the FER+ training transform of a batch,
with and without it, against a ResNet-18 training step on that batch.

The transforms are the ones a run builds (:func:`dfer.data.splits.data_transform`) from
``configs/ferplus/still_face.yaml`` (pad crop + flip) and from it with each of the new
settings of ``configs/ferplus/still_face_strong_aug.yaml`` alone and all together. A batch
is 128 grey 48x48 faces (one frame each, uint8, as the decoder gives them) sent one by one
through the transform with their own seeded generator, in one thread (a loader worker's),
to uint8 (1, 3, 64, 64). Arms alternate round by round so a change of load touches each
alike; the figures are medians. The step is ``still_face_step.images_per_second`` (fp32,
torchvision's ResNet-18, 64 px, batch 128, ``--threads``)::

    .venv/bin/python benchmarks/augment_overhead.py [--rounds 7] [--threads 2] [--steps 3]

Prints one JSON object: seconds per batch of each arm, the seconds the strong augmentation
adds, and that and the strong arm's whole transform as fractions of a training step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dfer.config import load_config
from dfer.data.splits import data_transform

sys.path.insert(0, str(Path(__file__).resolve().parent))
from still_face_step import images_per_second  # noqa: E402  (the benchmarks folder is not a package)

ROOT = Path(__file__).resolve().parents[1]
BATCH, FACE = 128, 48


def arms() -> dict:
    """Arm name -> the training transform of the still-face recipe with those settings."""
    plain = load_config(ROOT / "configs" / "ferplus" / "still_face.yaml").data
    strong = load_config(ROOT / "configs" / "ferplus" / "still_face_strong_aug.yaml").data
    alone = {"erase": ["erase"], "rotate_scale": ["rotate", "scale_jitter"], "jitter": ["jitter"],
             "strong": ["erase", "rotate", "scale_jitter", "jitter"]}
    out = {"plain": data_transform(plain, train=True)}
    for name, keys in alone.items():
        out[name] = data_transform(dataclasses.replace(plain, **{k: getattr(strong, k) for k in keys}), train=True)
    return out


def batch_seconds(transform, faces: list[np.ndarray], round_: int) -> float:
    t0 = time.perf_counter()
    for i, face in enumerate(faces):
        transform(face, torch.Generator().manual_seed(round_ * BATCH + i))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="threads of the training step")
    p.add_argument("--steps", type=int, default=3, help="timed training steps")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (BATCH, 1, FACE, FACE, 1), dtype=np.uint8)
    faces = list(np.repeat(grey, 3, axis=-1))  # (1, 48, 48, 3) each: FER+'s faces, three equal channels
    transforms = arms()
    torch.set_num_threads(1)  # a loader worker's (dfer.data.dataset._worker_init)
    for t in transforms.values():
        batch_seconds(t, faces[:16], 0)  # warm-up
    times = {name: [] for name in transforms}
    for r in range(args.rounds):
        for name, t in transforms.items():
            times[name].append(batch_seconds(t, faces, r))
    seconds = {name: statistics.median(v) for name, v in times.items()}
    torch.set_num_threads(args.threads)
    step = BATCH / images_per_second(64, bf16=False, steps=args.steps)
    added = seconds["strong"] - seconds["plain"]
    print(json.dumps({
        "benchmark": "augment_overhead", "batch": BATCH, "face": FACE, "size": 64, "rounds": args.rounds,
        "transform_threads": 1, "step_threads": args.threads,
        "transform_s_per_batch": {k: round(v, 4) for k, v in seconds.items()},
        "strong_over_plain": round(seconds["strong"] / seconds["plain"], 2),
        "added_s_per_batch": round(added, 4),
        "step_s": round(step, 3),
        "added_over_step": round(added / step, 3),
        "strong_transform_over_step": round(seconds["strong"] / step, 3),
    }, indent=1))


if __name__ == "__main__":
    main()
