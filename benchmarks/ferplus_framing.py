"""Which centred crop of dfer's aligned face matches FER2013's framing, for the shipped model.

``dfer predict`` detects every face (RetinaFace) and aligns it to the 256x256 template of
``dfer preprocess`` (:mod:`dfer.preprocess.align`, ``face_fraction`` 0.7: the whole face
with a margin). FER2013's 48-px faces, on which the shipped model was trained, are framed
tighter. This measures the round trip on FER+ Valid: each 48-px face is upsampled
(``--upsample``, 192 px), given a border (``--pad`` x that side on every side, edge pixels
repeated) so the detector sees it as a face in a picture, and run through predict's own
face path (:func:`dfer.preprocess.track.faces_from_frames`, its detector settings and its
256 template); then for each candidate ``face_crop`` c the aligned face goes through
predict's own frame pipeline for that value (:func:`dfer.predict.input_transform`: the
centred c x 256 square, grey, resized to the model's ``size``, its normalisation) and is
classified by the shipped model (:func:`dfer.predict.load_pretrained`; ``--weights FILE``
measures another file, through ``DFER_PRETRAINED``).

Reported per c (over the images where a face was detected): accuracy against the majority
vote (ties to the first class), UAR, mean KL(votes || p), and the share of images whose
predicted class equals the prediction on the original 48-px image fed directly (the
framing the model saw in training), which is also reported, as the reference, on the
detected images and on all of them. Model-free, from the alignment itself:
``frame_fraction``, the side of the original 48-px frame inside the aligned 256 image as a
fraction of 256 (the crop that would show exactly FER2013's frame), and the offset of its
centre. ``best_face_crop`` is the candidate with the highest accuracy (ties: lower KL),
chosen on Valid. Prints one JSON object and writes it to ``OUT/ferplus_framing.json``::

    .venv/bin/python benchmarks/ferplus_framing.py --out /tmp/ferplus_framing [--limit 64] [--weights FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "ferplus"
CROPS = (1.0, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)


def canvas(face: np.ndarray, upsample: int, pad: float) -> tuple[np.ndarray, int]:
    """A grey (h, w) face upsampled to ``upsample`` px inside a border of ``pad`` x that side,
    as RGB uint8, and the border width (the face occupies ``[border, border + upsample)``)."""
    big = cv2.resize(face, (upsample, upsample), interpolation=cv2.INTER_CUBIC)
    border = int(round(pad * upsample))
    big = cv2.copyMakeBorder(big, border, border, border, border, cv2.BORDER_REPLICATE)
    return np.repeat(big[..., None], 3, axis=2), border


def scores(probs: np.ndarray, votes: np.ndarray) -> dict:
    """Accuracy vs the majority vote (ties to the first class), UAR, mean KL(votes || p)."""
    from dfer.metrics import confusion_matrix, kl_divergence, uar, war

    if len(votes) == 0:
        return {"accuracy": None, "uar": None, "kl": None, "num_images": 0}
    label = votes.argmax(axis=1)
    cm = confusion_matrix(label, probs.argmax(axis=1), votes.shape[1])
    return {"accuracy": war(cm), "uar": uar(cm),
            "kl": float(kl_divergence(votes / votes.sum(axis=1, keepdims=True), probs).mean()),
            "num_images": int(len(label))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"FER+ folder (default {DEFAULT_ROOT})")
    p.add_argument("--limit", type=int, default=0, help="the first N images of Valid (0: all)")
    p.add_argument("--crops", type=float, nargs="+", default=list(CROPS), help="candidate face_crop values")
    p.add_argument("--upsample", type=int, default=192, help="side the 48-px face is upsampled to")
    p.add_argument("--pad", type=float, default=0.5, help="border on each side, as a fraction of --upsample")
    p.add_argument("--weights", type=Path, default=None, help="a model file (default: the one dfer ships)")
    p.add_argument("--threads", type=int, default=1, help="threads for torch, the detector and OpenCV")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", type=Path, default=Path("/tmp/dfer_ferplus_framing"))
    a = p.parse_args(argv)
    if a.limit < 0 or a.upsample < 32 or a.pad < 0 or a.threads < 1 or not all(0 < c <= 1 for c in a.crops):
        p.error("--limit >= 0, --upsample >= 32, --pad >= 0, --threads >= 1, every crop in (0, 1]")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from dfer.data.corpora.ferplus import load_ferplus
    from dfer.errors import DfeError
    from dfer.predict import ALIGN_SIZE, PredictConfig, input_transform, load_pretrained, make_detector
    from dfer.preprocess.align import canonical_template, similarity_transform
    from dfer.preprocess.track import TrackConfig, faces_from_frames

    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    if a.weights is not None:
        if not a.weights.is_file():
            print(f"ferplus_framing: --weights {a.weights}: file not found", file=sys.stderr)
            return 2
        os.environ["DFER_PRETRAINED"] = str(a.weights.resolve())  # where dfer.pretrained looks
    try:
        table = load_ferplus(a.root, splits="val")
        bundle = load_pretrained(device="cpu")
    except DfeError as e:
        print(f"ferplus_framing: {e}", file=sys.stderr)
        return 2
    if a.limit:
        table = table.take(np.arange(min(a.limit, len(table))))
    votes = table.votes.astype(np.float64)
    # predict's own frame pipeline (centred face_crop, grey, resize, normalisation), one per candidate
    direct_transform = input_transform(bundle, face_crop=False)
    transforms = {c: input_transform(dataclasses.replace(bundle, face_crop=c)) for c in a.crops}
    # predict's detector and face path, as `dfer predict` builds them for a still image
    pc = PredictConfig(threads=a.threads)
    detector = make_detector(pc)
    tcfg = TrackConfig.of_face(pc, detect_every=1, size=ALIGN_SIZE)
    template = canonical_template(ALIGN_SIZE, tcfg.face_fraction)

    t0 = time.perf_counter()
    direct, crops = [], {c: [] for c in a.crops}
    found, frame_fraction, offset = np.zeros(len(table), bool), [], []
    for i, path in enumerate(table.source):
        face = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        direct.append(direct_transform(np.repeat(face[None, ..., None], 3, axis=3))[0])
        image, border = canvas(face, a.upsample, a.pad)
        aligned, track = faces_from_frames([image], detector, tcfg)
        if track is None:
            continue
        found[i] = True
        aligned = next(aligned)[None]  # (T=1, 256, 256, 3)
        for c in a.crops:
            crops[c].append(transforms[c](aligned)[0])
        m = similarity_transform(track.landmarks[0], template)
        frame_fraction.append(a.upsample * np.sqrt(abs(np.linalg.det(m[:, :2]))) / ALIGN_SIZE)
        centre = border + a.upsample / 2
        offset.append((m @ [centre, centre, 1.0] - ALIGN_SIZE / 2) / ALIGN_SIZE)
    prepare_s = time.perf_counter() - t0

    @torch.inference_mode()
    def classify(frames: list[torch.Tensor]) -> np.ndarray:
        if not frames:
            return np.zeros((0, len(bundle.classes)))
        clips = torch.stack(frames)[:, None]  # (B, T=1, C, H, W), float after normalisation
        return np.concatenate([torch.softmax(bundle.model(b).double(), dim=-1).numpy()
                               for b in clips.split(a.batch_size)])

    p_direct = classify(direct)
    rows = []
    for c in a.crops:
        p = classify(crops[c])
        agree = float((p.argmax(1) == p_direct[found].argmax(1)).mean()) if len(p) else None
        rows.append({"face_crop": c, **scores(p, votes[found]), "agrees_with_direct": agree})
    ranked = [r for r in rows if r["accuracy"] is not None]
    best = max(ranked, key=lambda r: (r["accuracy"], -r["kl"]))["face_crop"] if ranked else None
    ff, off = np.asarray(frame_fraction), np.asarray(offset).reshape(-1, 2)
    report = {
        "benchmark": "ferplus_framing", "split": "FER2013Valid", "images": len(table),
        "detection_rate": float(found.mean()) if len(table) else None,
        "direct_48px": {"all": scores(p_direct, votes), "detected": scores(p_direct[found], votes[found])},
        "crops": rows, "best_face_crop": best,
        "frame_fraction": {"median": float(np.median(ff)), "p25": float(np.percentile(ff, 25)),
                           "p75": float(np.percentile(ff, 75))} if len(ff) else None,
        "frame_centre_offset": {"x": float(np.median(off[:, 0])), "y": float(np.median(off[:, 1]))}
        if len(off) else None,
        "model": {"file": bundle.source.get("file"), "trained_by": bundle.source.get("trained_by"),
                  "recorded_face_crop": bundle.face_crop, "size": bundle.size},
        "settings": {"root": str(a.root.resolve()), "limit": a.limit, "upsample": a.upsample, "pad": a.pad,
                     "align_size": ALIGN_SIZE, "face_fraction": tcfg.face_fraction, "max_side": pc.max_side,
                     "score_threshold": pc.score_threshold, "threads": a.threads},
        "seconds": {"detect_align_transform": prepare_s, "total": time.perf_counter() - t0},
    }
    from dfer.io import atomic_path

    a.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(a.out / "ferplus_framing.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
