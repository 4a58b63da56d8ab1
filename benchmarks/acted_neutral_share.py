"""How often the shipped face model calls a strong acted expression neutral, per clip and
per frame, under each answer rule (flip test-time augmentation, prior correction).

Over a ``dfer preprocess`` output of an acted corpus (aligned faces, the clips' labels in
its manifest): each clip answered exactly as ``dfer predict`` answers it
(:func:`dfer.evaluate.predict_clips`: its windows, framing and grey faces), and every
aligned frame of every clip answered alone. Reported for each rule: clip accuracy and UAR
over the corpus's classes, and the share of non-neutral clips, and of their frames, whose
answer is neutral. A prior correction needs a model file that records its training prior
(``--weights``; the file that ships before dfer recorded one does not).

    python benchmarks/acted_neutral_share.py --frames runs/jv_pre --weights FILE \\
        --rules none flip flip:0.2 flip:0.5 0.5

Printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from dfer.data.corpora.registry import load_source
from dfer.data.decode import list_frame_files, read_frames
from dfer.data.table import ClipKind
from dfer.evaluate import class_index, predict_clips
from dfer.predict import PredictConfig, input_transform, load_model
from dfer.preprocess.pipeline import recorded_preprocessing


def parse_rule(text: str) -> tuple[str, float]:
    """``none``, ``flip``, ``TAU`` or ``flip:TAU`` -> (tta, prior correction)."""
    tta, _, tau = text.partition(":") if text.startswith(("flip", "none")) else ("none", "", text)
    return tta, float(tau or 0.0)


def frame_answers(bundle, table, index: list[int], batch: int = 256) -> list[np.ndarray]:
    """Per clip, the (n_frames,) answers (indices into ``index``) of its aligned frames, each
    frame alone, cut to the bundle's framing from the face fraction it was aligned with."""
    from dfer.evaluate import _reframed

    out = []
    for source in table.source:
        _, face_fraction = recorded_preprocessing(source)
        transform = input_transform(_reframed(bundle, face_fraction, source))
        files = list_frame_files(source)
        answers = []
        for start in range(0, len(files), batch):
            frames = read_frames(source, ClipKind.FRAMES, list(range(start, min(start + batch, len(files)))))
            with torch.inference_mode():
                logits = bundle.model(transform(frames)[:, None].to(bundle.device))[:, index]
            answers.append(logits.argmax(1).cpu().numpy())
        out.append(np.concatenate(answers))
    return out


def scores(labels: np.ndarray, clip_pred: np.ndarray, frame_pred: list[np.ndarray], classes: list[str]) -> dict:
    neutral = classes.index("neutral")
    present = [c for c in range(len(classes)) if (labels == c).any()]
    recall = {classes[c]: float((clip_pred[labels == c] == c).mean()) for c in present}
    emotional = labels != neutral
    frames = np.concatenate([f for f, e in zip(frame_pred, emotional) if e])
    return {"clip_accuracy": float((clip_pred == labels).mean()), "clip_uar": float(np.mean(list(recall.values()))),
            "recall": recall,
            "clips_called_neutral": [int((clip_pred[emotional] == neutral).sum()), int(emotional.sum())],
            "frames_called_neutral": [int((frames == neutral).sum()), int(frames.size)],
            "frame_accuracy": float(np.mean(np.concatenate(
                [f == y for f, y in zip(frame_pred, labels)])))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", required=True, help="a dfer preprocess output folder of an acted corpus")
    ap.add_argument("--weights", help="a shipped-format model file (default: the one that ships)")
    ap.add_argument("--rules", nargs="+", default=["none", "flip"],
                    help="answer rules: none, flip, TAU (a prior correction) or flip:TAU")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.weights:
        os.environ["DFER_PRETRAINED"] = args.weights
    table = load_source("manifest", os.path.join(args.frames, "manifest.csv"))
    labels = table.hard_labels()
    classes = list(table.classes)
    result = {"frames": args.frames, "clips": len(table), "rules": {}}
    for text in args.rules:
        tta, tau = parse_rule(text)
        t0 = time.perf_counter()
        bundle = load_model(pretrained=True, device="cpu", prior_correction=tau, tta=tta)
        index = class_index(bundle.classes, table.classes)
        probs, unanswered = predict_clips(table, bundle, PredictConfig(threads=args.threads), index)
        clip_pred = np.where(np.isnan(probs).any(1), -1, np.nan_to_num(probs).argmax(1))
        frame_pred = frame_answers(bundle, table, index)
        result["rules"][text] = {**scores(labels, clip_pred, frame_pred, classes), "unanswered": unanswered,
                                 "seconds": round(time.perf_counter() - t0, 1)}
        print(text, json.dumps(result["rules"][text]), file=sys.stderr, flush=True)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
