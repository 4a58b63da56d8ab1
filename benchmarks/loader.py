"""Loader throughput against the JPEG-decode limit (MIDAS training input: 8 x 224 x 224).

Writes N clip folders of 256x256 JPEG frames (smooth noise, quality 90), then measures

- ``limit``: PIL decoding the 8 sampled frames of each clip, nothing else (clips/s): what a
  loader that decodes with PIL (dfer's before, torchvision's ImageFolder) cannot beat;
- ``turbo_limit``: libjpeg-turbo through simplejpeg, dfer's JPEG decoder, reading and
  decoding the same frames and nothing else, so ``loader / turbo_limit`` is the share of the
  loader's time that is decode (the rest is the per-clip geometry and the batch);
- ``loader_w{k}``: ClipDataset + DataLoader producing training clips as dfer's datasets do
  (segment sampling, random scale crop, flip, uint8 batches; the float conversion and
  normalisation then run on the training device, :func:`dfer.data.transforms.to_model_input`)
  with k workers (clips/s), and its ratio to the limit (per process: the limit is
  single-core, k workers can exceed it); beside it the CPU milliseconds per clip of the
  main process and the workers together (the untimed warm-up epoch and the workers' start
  included, so a slight overstatement), and the rate the cores would allow at that cost
  (``bound``: k busy cores, or one), which tells the loader's own work from a shortage of
  cores;
- ``loader_float_w{k}``: the same with the conversion and normalisation inside the loader
  (float32 batches), as any dataset that returns model-ready clips would;
- ``draft``: decode of a 1280x720 JPEG at full size vs at reduced size for a 224 target.

The limits and every loader are timed one epoch each per round, ``--rounds`` rounds, the
loaders kept alive between them: each figure is the median over the rounds and each ratio
the median of the rounds' ratios, so a slow spell of a shared machine hits both sides of a
ratio alike.

Usage: python benchmarks/loader.py [--clips 64] [--frames 32] [--rounds 7] [--root DIR] [--workers 0 2]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image

from dfer.data.dataset import ClipDataset, build_loader
from dfer.data.decode import clear_caches, list_frame_files, read_image
from dfer.data.sampling import SegmentSampler
from dfer.data.table import ClipTable
from dfer.data.transforms import build_transforms
from dfer.runtime import keep_freed_memory


def smooth_noise(rng: np.random.Generator, size: int, cells: int = 8) -> np.ndarray:
    """uint8 (size, size, 3): bicubic-upsampled coarse noise plus fine grain, face-photo-like entropy."""
    coarse = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.int16)
    img = img + rng.normal(0, 6, img.shape).astype(np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_corpus(root: Path, clips: int, frames: int, size: int = 256) -> ClipTable:
    rng = np.random.default_rng(0)
    sources = []
    for c in range(clips):
        folder = root / f"clip{c:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = smooth_noise(rng, size)
        for t in range(frames):
            # drift the content a little from frame to frame, as a talking face does
            frame = np.roll(base, shift=(t, 2 * t), axis=(0, 1))
            Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=90)
        sources.append(str(folder))
    return ClipTable.build(("happy", "sad"), [f"c{c}" for c in range(clips)], sources,
                           label=np.arange(clips) % 2, name="bench")


def _decode_pil(path: str) -> None:
    with Image.open(path) as img:
        np.asarray(img.convert("RGB"))


def _decode_turbo(path: str) -> None:
    with open(path, "rb") as f:
        simplejpeg.decode_jpeg(f.read(), "RGB")


def decode_limit(table: ClipTable, num_frames: int, repeats: int, decode=_decode_pil) -> float:
    """Clips/s of reading and decoding each clip's sampled frames with ``decode``, nothing else."""
    sampler = SegmentSampler(num_frames, "train")
    rng = np.random.default_rng(0)
    for s in table.source[:4]:  # warm the listing cache and the page cache
        list_frame_files(s)
    start = time.perf_counter()
    done = 0
    for _ in range(repeats):
        for s in table.source:
            files = list_frame_files(s)
            for i in sampler.sample(len(files), rng):
                decode(files[i])
            done += 1
    return done / (time.perf_counter() - start)


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


class LoaderArm:
    """One DataLoader configuration, kept alive (persistent workers) and timed an epoch at a
    time, so that its epochs interleave with the limits' and the other arms' in one run."""

    def __init__(self, table: ClipTable, num_frames: int, size: int, workers: int, uint8: bool):
        ds = ClipDataset(table, SegmentSampler(num_frames, "train"), build_transforms(True, size=size, uint8=uint8),
                         seed=0)
        self.workers = workers
        self.loader = build_loader(ds, 8, shuffle=True, num_workers=workers, seed=0, pin_memory=False)
        self.epoch, self.clips, self.main_cpu, self.rates = 0, 0, 0.0, []
        self.children0 = _cpu(resource.RUSAGE_CHILDREN)
        self.run_epoch(timed=False)  # the workers' start, the caches

    def run_epoch(self, timed: bool = True) -> None:
        cpu0, start, n = _cpu(resource.RUSAGE_SELF), time.perf_counter(), 0
        self.loader.sampler.set_epoch(self.epoch)
        self.epoch += 1
        for batch in self.loader:
            n += batch["clip"].shape[0]
        if timed:
            self.rates.append(n / (time.perf_counter() - start))
        self.main_cpu += _cpu(resource.RUSAGE_SELF) - cpu0
        self.clips += n

    def close(self) -> float:
        """CPU milliseconds per clip over the main process and the workers, every epoch (the
        untimed first one and the workers' start included: a slight overstatement)."""
        children0 = _cpu(resource.RUSAGE_CHILDREN)
        del self.loader  # the workers exit here, and their CPU time joins RUSAGE_CHILDREN
        gc.collect()
        workers = _cpu(resource.RUSAGE_CHILDREN) - children0
        return 1000 * (self.main_cpu + workers) / self.clips


def draft_gain(root: Path, size: int) -> dict:
    path = root / "hd.jpg"
    rng = np.random.default_rng(1)
    Image.fromarray(smooth_noise(rng, 720, cells=16)).resize((1280, 720)).save(path, quality=90)
    out = {}
    for name, hint in (("full_ms", None), ("draft_ms", int(np.ceil(size / 0.66)))):
        read_image(str(path), hint)
        start = time.perf_counter()
        for _ in range(30):
            shape = read_image(str(path), hint).shape
        out[name] = round((time.perf_counter() - start) / 30 * 1000, 2)
        out[name.replace("_ms", "_shape")] = list(shape)
    out["speedup"] = round(out["full_ms"] / out["draft_ms"], 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--rounds", type=int, default=7, help="timed epochs of each arm, interleaved with the limits")
    p.add_argument("--root", type=Path, default=None)
    args = p.parse_args()

    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    kept = keep_freed_memory()  # as dfer's command line does (MALLOC_MMAP_MAX_=65536 measures without)
    torch.set_num_threads(1)  # the main process is one loader core, like a worker
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        table = write_corpus(root, args.clips, args.frames)
        clear_caches()
        result = {
            "clips": args.clips, "frames_per_clip": args.frames, "num_frames": args.num_frames,
            "size": args.size, "cpus": cores, "rounds": args.rounds, "keep_freed_memory": kept, "torch": torch.__version__,
            "python": platform.python_version(),
        }
        arms = {f"{name}_w{w}": LoaderArm(table, args.num_frames, args.size, w, uint8)
                for w in args.workers for name, uint8 in (("loader", True), ("loader_float", False))}
        limits: dict[str, list[float]] = {"limit": [], "turbo_limit": []}
        for _ in range(args.rounds):  # every figure once a round: a slow spell of the machine hits all alike
            limits["limit"].append(decode_limit(table, args.num_frames, 1))
            limits["turbo_limit"].append(decode_limit(table, args.num_frames, 1, _decode_turbo))
            for arm in arms.values():
                arm.run_epoch()
        for name, rates in limits.items():
            result[f"{name}_clips_per_s"] = round(statistics.median(rates), 1)
            result[f"{name}_cpu_ms_per_clip"] = round(1000 / statistics.median(rates), 2)
        for key, arm in arms.items():
            result[f"{key}_clips_per_s"] = round(statistics.median(arm.rates), 1)
            # the ratio of each round's figures, then their median
            for suffix, ref in (("ratio", "limit"), ("ratio_turbo", "turbo_limit")):
                result[f"{key}_{suffix}"] = round(statistics.median(
                    r / lim for r, lim in zip(arm.rates, limits[ref])), 3)
            cpu_ms = arm.close()
            result[f"{key}_cpu_ms_per_clip"] = round(cpu_ms, 2)
            # what the cores allow: all of them busy at this CPU cost per clip (the limit is one core's)
            result[f"{key}_bound_clips_per_s"] = round(1000 * min(max(arm.workers, 1), cores) / cpu_ms, 1)
        result["draft_1280x720"] = draft_gain(root, args.size)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
