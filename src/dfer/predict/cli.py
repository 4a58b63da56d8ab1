"""The command line of ``dfer predict``: its options, and the batch of inputs it runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from dfer.calibration import TTA
from dfer.config import MAX_BATCH, MAX_FRAMES, MAX_SIZE, MAX_THREADS, arg
from dfer.errors import ConfigError, DfeError
from dfer.io import regular_file
from dfer.predict.bundle import load_model
from dfer.predict.faces import make_detector
from dfer.predict.media import _media_kind
from dfer.predict.outputs import _output_names, claim_output_folder, summary_line, write_outputs
from dfer.predict.report import predict_file
from dfer.predict.settings import PredictConfig
from dfer.preprocess.face import add_face_options, face_options

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = PredictConfig()
    parser.description = (
        "Emotion distribution over time for any video or image. Without --run or --checkpoint it uses the "
        "face-expression model that ships with dfer: a ResNet-18 over one grey face trained on FER+ (neutral, "
        "happy, surprise, sad, angry, disgust, fear, contempt); the aligned face is cut to the framing it was "
        "trained on and turned grey for it, nothing is downloaded.")
    parser.add_argument("inputs", nargs="+", metavar="VIDEO_OR_IMAGE", help="videos and/or still images")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--run", metavar="RUN_DIR",
                     help="run directory written by dfer train (default: dfer's shipped FER+ model)")
    src.add_argument("--checkpoint", metavar="FILE", help="a checkpoint .safetensors of dfer train (with --model, --classes)")
    parser.add_argument("--which", choices=["last", "best"], help="checkpoint of --run (default: the run's selection rule)")
    parser.add_argument("--model", default="tsm_resnet18", help="model name for --checkpoint (default tsm_resnet18)")
    parser.add_argument("--classes", default="basic7", help="class set for --checkpoint (default basic7)")
    parser.add_argument("--size", type=arg(int, range="[8, inf)", limit=MAX_SIZE), help="model input side (default: the run's data.size; 224 with "
                                                  "--checkpoint; the shipped model's own)")
    parser.add_argument("--num-frames", type=arg(int, range="[1, inf)", limit=MAX_FRAMES),
                        help="frames per window fed to the model (default: the run's data.num_frames; 8 with "
                             "--checkpoint; the shipped model's own: a one-frame model sees each window's middle frame)")
    parser.add_argument("--window-seconds", type=float, default=d.window_seconds,
                        help=f"seconds of video per window, sampled TSN-style into num-frames frames (default {d.window_seconds})")
    parser.add_argument("--stride", type=int, default=None,
                        help="frames between window starts (default: the window length, i.e. no overlap)")
    parser.add_argument("--batch-size", type=arg(int, range="[1, inf)", limit=MAX_BATCH), default=d.batch_size, help=f"windows per forward pass (default {d.batch_size})")
    add_face_options(parser, d)
    parser.add_argument("--min-face", type=float, default=d.min_face,
                        help=f"windows with a smaller fraction of face frames get no prediction (default {d.min_face})")
    parser.add_argument("--aligned", action="store_true",
                        help="inputs are already aligned face crops (like DFEW frames): skip detection")
    parser.add_argument("--threads", type=arg(int, range="[0, inf)", limit=MAX_THREADS), default=d.threads,
                        help="threads for torch, the detector and OpenCV (default 0: their defaults)")
    parser.add_argument("--prior-correction", type=arg(float, range="[0, 2]"), metavar="TAU",
                        help="divide the class prior of the model's training data out of its answer with this "
                             "strength: 0 answers as trained, larger values favour the rare emotions (default: the "
                             "model file's own rule; needs a model file that records its prior)")
    parser.add_argument("--tta", choices=TTA, help="test-time augmentation: none, or flip (the mean of the logits of "
                                                   "each face and its mirror image; twice the model's time; default: "
                                                   "the model file's rule)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--out", default="predictions", help="output folder (default ./predictions)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the timeline PNG")


def run(args: argparse.Namespace) -> int:
    cfg = PredictConfig(**face_options(args), window_seconds=args.window_seconds, stride=args.stride,
                        batch_size=args.batch_size, min_face=args.min_face, aligned=args.aligned,
                        threads=args.threads, plot=not args.no_plot).validate()
    # every input is checked before the first (possibly long) one is processed; a bad one is
    # reported and left out, the others go on
    inputs = [Path(p) for p in args.inputs]
    good, bad = [], []
    for p, name in zip(inputs, _output_names(inputs)):
        try:
            _media_kind(p)
            regular_file(p, "file")
        except DfeError as e:
            bad.append(e)
            continue
        good.append((p, name))
    out_dir = claim_output_folder(Path(args.out), create=False)  # made when the first input is written
    if args.checkpoint is None and (args.model != "tsm_resnet18" or args.classes != "basic7"):
        raise ConfigError("--model and --classes go with --checkpoint; a run directory and the shipped model "
                          "name their own")
    if args.run is None and args.which is not None:
        raise ConfigError("--which chooses a checkpoint of --run; --checkpoint names its file directly and the "
                          "shipped model is one file")
    if args.threads:
        import cv2

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    for e in bad:  # after the options: a bad option stops the command in one line
        _report_failure(e)
    ok, failed = 0, len(bad)
    if good:
        bundle = load_model(run=args.run, which=args.which, checkpoint=args.checkpoint, model_name=args.model,
                            classes=args.classes, size=args.size, num_frames=args.num_frames, device=args.device,
                            prior_correction=args.prior_correction, tta=args.tta)
        detector = None if cfg.aligned else make_detector(cfg)
    for path, name in good:
        try:
            report = predict_file(path, bundle, cfg, detector)
        except DfeError as e:
            _report_failure(e)
            failed += 1
            continue
        if report["status"] != "ok":
            print(summary_line(report), flush=True)
            continue
        try:
            paths = write_outputs(report, out_dir, name, plot=cfg.plot)
        except DfeError as e:
            _report_failure(e)
            failed += 1
            continue
        print(summary_line(report, paths), flush=True)
        ok += 1
    if failed and len(inputs) > 1:
        print(f"dfer predict: {failed} of {len(inputs)} inputs failed (named above), {ok} predicted",
              file=sys.stderr, flush=True)
    # 2 when an input failed, or when nothing was predicted (a lone video without a face)
    return 2 if failed or not ok else 0


def _report_failure(e: DfeError) -> None:
    """One line on stderr for an input that failed; the batch goes on."""
    print(f"dfer predict: error: {e}", file=sys.stderr, flush=True)
