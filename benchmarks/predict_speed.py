"""Speed of ``dfer predict``: decode, detect, align and classify a video.

Target: a 640x360 video at >= 2x its real-time frame rate on 2 CPU cores with a TSM-R18.
This script runs the real code path of ``dfer predict --checkpoint`` (:func:`dfer.predict.load_model`,
then :func:`dfer.predict.predict_file`) on ``single_face.mp4`` (640x360, 30 fps, 72 frames)
with a randomly initialised TSM-R18 checkpoint (weights do not change the speed) at each
``--sizes`` input side and ``--num-frames`` frames per window, and prints JSON: per size the
wall time, the real-time factor (video duration / processing time) and the milliseconds
per video frame spent in decode (decoding, and the RGB conversion of the frames that need
it), detect, align (warp to 256x256), transform (resize, centre crop, normalise) and
classify (forward passes), plus "other" (track building, container opening).

``--against TREE`` measures another checkout of dfer (e.g. ``git worktree add /tmp/old
<commit>``) in the same run: the two trees alternate, one process each, for ``--rounds``
rounds, and the JSON gives each tree's best real-time factor and their ratio per size
("speedup": this tree over TREE). Only the public API both trees share is used.

Usage::

    .venv/bin/python benchmarks/predict_speed.py [--video PATH] [--cores 2] [--repeats 5] \\
        [--sizes 112 224] [--num-frames 8] [--window-seconds 2] [--stride FRAMES] \\
        [--detect-every 3] [--max-side 320] [--against TREE --rounds 3]

The process is pinned to ``--cores`` CPUs when the OS allows it, and torch, onnxruntime
and OpenCV get that many threads (the decoder one). One warm-up run, then the best of
``--repeats`` (the least disturbed by other work on the machine), the median beside it.
Model loading is not timed (it happens once per ``dfer predict`` call, not per video).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--video", default=str(ROOT / "tests" / "data" / "videos" / "single_face.mp4"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    parser.add_argument("--stride", type=int, default=None, help="frames between windows (default: window length)")
    parser.add_argument("--detect-every", type=int, default=3)
    parser.add_argument("--max-side", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--against", type=Path, default=None, help="another dfer checkout to time in the same run")
    parser.add_argument("--rounds", type=int, default=3, help="with --against: alternations of the two trees")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help=argparse.SUPPRESS)  # the tree a worker times
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # measure only, never compare
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.repeats < 1:
        parser.error(f"--rounds and --repeats must be >= 1, got {args.rounds} and {args.repeats}")
    return args


def measure(args: argparse.Namespace) -> dict:
    """Time ``dfer predict`` of the dfer under ``args.src`` in this process."""
    sys.path.insert(0, str(args.src))
    pinned = None
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: args.cores]
        os.sched_setaffinity(0, cpus)
        pinned = cpus
    import cv2
    import torch

    import dfer
    from dfer.checkpoint import save_checkpoint
    from dfer.emotions import BASIC7
    from dfer.models import create_model
    from dfer.predict import PredictConfig, load_model, predict_file
    from dfer.preprocess.detect import DetectorConfig, RetinaFaceDetector

    torch.set_num_threads(args.cores)
    cv2.setNumThreads(args.cores)
    # as that tree's dfer command line does at start (a tree from before it had none)
    runtime = importlib.util.find_spec("dfer.runtime")
    kept = importlib.import_module("dfer.runtime").keep_freed_memory() if runtime else None
    cfg = PredictConfig(window_seconds=args.window_seconds, stride=args.stride, batch_size=args.batch_size,
                        detect_every=args.detect_every, max_side=args.max_side, threads=args.cores)
    detector = RetinaFaceDetector(DetectorConfig(max_side=args.max_side, num_threads=args.cores))
    results, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        net = create_model("tsm_resnet18", num_classes=len(BASIC7))
        weights = Path(tmp) / "random.safetensors"
        save_checkpoint(weights, net, torch.optim.SGD(net.parameters(), lr=0.1), None, None, {})
        for size in args.sizes:
            bundle = load_model(checkpoint=str(weights), model_name="tsm_resnet18", classes="basic7", size=size,
                                num_frames=args.num_frames, device="cpu")
            predict_file(args.video, bundle, cfg, detector)  # warm-up: allocator, onnxruntime and oneDNN caches
            reports = [predict_file(args.video, bundle, cfg, detector) for _ in range(args.repeats)]
            times = [r["summary"]["processing_s"] for r in reports]
            best = reports[times.index(min(times))]
            first = first or best
            n, s = best["frames"], best["summary"]
            ms = {k: round(v, 2) for k, v in s["ms_per_frame"].items()}
            ms["other"] = round(1000 * s["processing_s"] / n - sum(s["ms_per_frame"].values()), 2)
            results.append({
                "size": size, "num_frames": args.num_frames, "windows": s["windows"],
                "window_frames": best["window_frames"], "stride_frames": best["stride_frames"],
                "frames_classified": s["windows"] * args.num_frames,
                "seconds": round(min(times), 4), "seconds_median": round(statistics.median(times), 4),
                "ms_per_frame": round(1000 * min(times) / n, 2),
                "realtime_factor": round(best["duration_s"] / min(times), 2),
                "realtime_factor_median": round(best["duration_s"] / statistics.median(times), 2),
                "breakdown_ms_per_frame": ms,
                "classify_ms_per_window": round(s["ms_per_frame"]["classify"] * n / s["windows"], 1),
            })
    return {
        "video": Path(args.video).name, "width": first["width"], "height": first["height"], "fps": first["fps"],
        "frames": first["frames"], "duration_s": round(first["duration_s"], 3), "cores": args.cores,
        "keep_freed_memory": kept,
        "pinned_cpus": pinned, "model": "tsm_resnet18 (random init), 7 classes", "dfer": str(Path(dfer.__file__).parent),
        "settings": {"window_seconds": args.window_seconds, "stride": args.stride or "window length",
                     "detect_every": args.detect_every, "max_side": args.max_side, "batch_size": args.batch_size,
                     "align_size": 256},
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "results": results,
    }


def _worker(args: argparse.Namespace, src: Path) -> dict:
    """One measurement of the tree ``src`` in a fresh process (two dfers cannot share one)."""
    argv = ["--worker", "--src", str(src), "--video", str(args.video), "--cores", str(args.cores),
            "--repeats", str(args.repeats), "--sizes", *map(str, args.sizes), "--num-frames", str(args.num_frames),
            "--window-seconds", str(args.window_seconds), "--detect-every", str(args.detect_every),
            "--max-side", str(args.max_side), "--batch-size", str(args.batch_size)]
    if args.stride is not None:
        argv += ["--stride", str(args.stride)]
    out = subprocess.run([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(src)})  # stderr passes through
    if out.returncode:
        raise SystemExit(f"measuring {src} failed (exit {out.returncode}; its error is above)")
    result = json.loads(out.stdout)
    if Path(result["dfer"]).resolve() != (src / "dfer").resolve():
        raise SystemExit(f"measuring {src} imported the dfer in {result['dfer']}")
    return result


def compare(args: argparse.Namespace) -> dict:
    """This tree against ``args.against``, alternating (the order swapped every round), one
    process per measurement."""
    trees = {"this": ROOT / "src", "against": args.against.resolve() / "src"}
    predict = trees["against"] / "dfer" / "predict"
    if not (predict.with_suffix(".py").is_file() or (predict / "__init__.py").is_file()):
        raise SystemExit(f"{args.against}: not a dfer checkout (no src/dfer/predict)")
    runs: dict[str, list[dict]] = {"this": [], "against": []}
    for r in range(args.rounds):
        for tree in (("this", "against") if r % 2 == 0 else ("against", "this")):
            runs[tree].append(_worker(args, trees[tree]))
    best = {tree: {r["size"]: max((m for run in rs for m in run["results"] if m["size"] == r["size"]),
                                  key=lambda m: m["realtime_factor"]) for r in rs[0]["results"]}
            for tree, rs in runs.items()}
    return {
        "benchmark": "predict_speed", "this": runs["this"][0]["dfer"], "against": runs["against"][0]["dfer"],
        "rounds": args.rounds, "repeats_per_round": args.repeats, "video": runs["this"][0]["video"],
        "cores": args.cores, "load_avg_1m": round(os.getloadavg()[0], 2),
        "results": [{"size": size, "realtime_factor": this["realtime_factor"],
                     "realtime_factor_against": best["against"][size]["realtime_factor"],
                     "speedup": round(this["realtime_factor"] / best["against"][size]["realtime_factor"], 3),
                     "breakdown_ms_per_frame": this["breakdown_ms_per_frame"],
                     "breakdown_ms_per_frame_against": best["against"][size]["breakdown_ms_per_frame"]}
                    for size, this in best["this"].items()],
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(json.dumps(compare(args) if args.against and not args.worker else measure(args), indent=1))


if __name__ == "__main__":
    main()
