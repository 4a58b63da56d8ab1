"""The shipped face model, untrained on them, over real acted clips: how ``dfer predict``
should turn a video's faces into one answer.

Stage 1 (the expensive part, cached per framing) runs the shipped model over every aligned
face of every clip of a ``dfer preprocess`` output folder and keeps each frame's logits.
Stage 2 scores, from those logits alone, every way of turning a clip's frames into one
answer: frames per window, pooling inside a window (logits or probabilities), pooling over
windows, a prior correction of the logits, and which classes may win. The shipped model
averages a window's frame *features* before its linear classifier, which is the same as
averaging its frame logits, so "features" and "logits" are one row here.

Labels come from the corpus itself (``--source KIND:PATH``, e.g. ``javanese:clips``), joined
to the preprocessed frame folders by clip name. Printed as JSON; ``--markdown`` also prints
the table for the docs.

    python benchmarks/acted_zero_shot.py --frames runs/jv_pre --source javanese:../shared/javanese/clips \
        --crops 0.55 0.65 0.75 0.85 --out runs/jv_zero_shot
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dfer.data.corpora.registry import load_source
from dfer.data.decode import list_frame_files, read_frames
from dfer.data.table import ClipKind
from dfer.evaluate import parse_source
from dfer.predict import input_transform, load_model, plan_windows
from dfer.runtime import keep_freed_memory


def frame_logits(bundle, folder: Path, transform, batch: int = 256) -> np.ndarray:
    """(N, C) float32 logits of each aligned face in ``folder`` (one frame = one clip of T=1)."""
    n = len(list_frame_files(folder))
    out = []
    for s in range(0, n, batch):
        idx = np.arange(s, min(n, s + batch))
        frames = read_frames(str(folder), ClipKind.FRAMES, idx, size_hint=transform.size_hint)
        x = transform(frames)  # (t, 3, size, size)
        with torch.inference_mode():
            out.append(bundle.model(x[:, None].to(bundle.device)).float().cpu().numpy())
    return np.concatenate(out)


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One way from a clip's frame logits to its answer."""

    window_seconds: float = 2.0  # 0: the whole clip is one window
    num_frames: int = 8  # frames sampled per window; 0: every frame of the window
    window_pool: str = "logits"  # logits | probs
    clip_pool: str = "probs"  # probs | logits
    prior: float = 0.0  # logits - prior * log(training class prior)
    classes: str = "all"  # all: argmax over the model's classes | shared: over the corpus's

    def name(self) -> str:
        return (f"win={self.window_seconds:g}s T={self.num_frames or 'all'} in={self.window_pool} "
                f"over={self.clip_pool} prior={self.prior:g} argmax={self.classes}")


def clip_answer(logits: np.ndarray, fps: float, rule: Rule, log_prior: np.ndarray) -> np.ndarray:
    """(C,) distribution of one clip from its (N, C) frame logits under ``rule``."""
    z = logits - rule.prior * log_prior
    n = len(z)
    L = n if rule.window_seconds == 0 else max(1, int(round(rule.window_seconds * fps)))
    if rule.num_frames:
        idx = plan_windows(n, L, L, rule.num_frames).indices
    else:
        starts = np.arange(0, max(1, n - L + 1), L)
        idx = [np.arange(s, min(n, s + L)) for s in starts]
    win = [z[i].mean(0) if rule.window_pool == "logits" else np.log(softmax(z[i]).mean(0)) for i in idx]
    win = np.stack(win)
    if rule.clip_pool == "logits":
        return softmax(win.mean(0))
    p = softmax(win).mean(0)
    return p / p.sum()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", required=True, help="a dfer preprocess output folder (manifest.csv + frame folders)")
    ap.add_argument("--source", required=True, help="the labelled corpus the clips came from, KIND:PATH")
    ap.add_argument("--crops", type=float, nargs="+", default=[0.65], help="face crops to try (the model's: 0.65)")
    ap.add_argument("--colour", action="store_true", help="also the model's crop without the grey conversion")
    ap.add_argument("--ferplus", required=True,
                    help="FER+ folder (FER2013Train/label.csv): the model's training class prior, for the prior "
                         "correction")
    ap.add_argument("--out", required=True, help="cache of frame logits and the result JSON")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    frames_root = Path(args.frames)
    report = json.loads((frames_root / "report.json").read_text())
    fps_of = {v["path"]: v["fps"] for v in report["videos"] if v["status"] == "ok"}
    stems = sorted(fps_of)
    folders = [frames_root / s for s in stems]

    bundle = load_model(pretrained=True, device="cpu")
    framings = [(c, True) for c in args.crops] + ([(bundle.face_crop, False)] if args.colour else [])
    logits: dict[tuple[float, bool], list[np.ndarray]] = {}
    for crop, grey in framings:
        cache = out / f"logits_crop{crop:g}{'' if grey else '_colour'}.npz"
        if cache.exists():
            z = np.load(cache)
            logits[(crop, grey)] = [z[s] for s in stems]
            continue
        b = dataclasses.replace(bundle, face_crop=crop, grey=grey)
        transform = input_transform(b)
        t0 = time.perf_counter()
        per = [frame_logits(bundle, f, transform) for f in folders]
        print(f"crop {crop:g} grey={grey}: {sum(map(len, per))} frames in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
        np.savez(cache, **dict(zip(stems, per)))
        logits[(crop, grey)] = per

    kind, root = parse_source(args.source)
    table = load_source(kind, root)
    label_of = {Path(src).stem: int(y) for src, y in zip(table.source, table.label)}
    missing = [s for s in stems if s not in label_of]
    if missing:
        sys.exit(f"{len(missing)} preprocessed clips are not in {args.source}, e.g. {missing[0]}")
    labels = np.array([label_of[s] for s in stems])
    model_classes = list(bundle.classes)
    corpus_classes = list(table.classes)
    to_model = np.array([model_classes.index(c) for c in corpus_classes])
    log_prior = np.log(np.asarray(_training_prior(args.ferplus, model_classes)))

    rules = [Rule(*r) for r in itertools.product([2.0, 1.0, 0.0], [8, 16, 0], ["logits", "probs"],
                                                  ["probs", "logits"], [0.0, 0.5, 1.0], ["all", "shared"])]
    rows = []
    for (crop, grey), per in logits.items():
        for rule in rules:
            probs8 = np.stack([clip_answer(z, fps_of[s], rule, log_prior) for z, s in zip(per, stems)])
            pred8 = probs8.argmax(1) if rule.classes == "all" else to_model[probs8[:, to_model].argmax(1)]
            # a prediction outside the corpus's classes (disgust, contempt) is wrong
            pred = np.array([corpus_classes.index(model_classes[p]) if model_classes[p] in corpus_classes else -1
                             for p in pred8])
            rows.append({"crop": crop, "grey": grey, "rule": dataclasses.asdict(rule),
                         **_scores(pred, labels, corpus_classes)})
    rows.sort(key=lambda r: -r["uar"])
    default = next(r for r in rows if r["crop"] == bundle.face_crop and r["grey"] and r["rule"] == dataclasses.asdict(Rule()))
    result = {"clips": len(stems), "classes": corpus_classes, "model_classes": model_classes,
              "actors": int(len(np.unique(table.group))), "predict_default": default, "best": rows[:15],
              "all": rows}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "all"}, indent=1))
    if args.markdown:
        print(_markdown([default] + rows[:15], corpus_classes))
    return 0


def _training_prior(ferplus_root: str, classes: list[str]) -> list[float]:
    """Share of each class among FER+ Train's majority labels (the shipped model's training set)."""
    t = load_source("ferplus", ferplus_root, splits="train").to_classes(tuple(classes))
    counts = np.bincount(t.resolve_labels("first").label, minlength=len(classes)).astype(float)
    return list(counts / counts.sum())


def _scores(pred: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    C = len(classes)
    present = [c for c in range(C) if (labels == c).any()]  # UAR over the classes the corpus has
    recall = {classes[c]: float((pred[labels == c] == c).mean()) for c in present}
    neutral = classes.index("neutral")
    emotional = labels != neutral
    confusion = np.zeros((C, C + 1), int)
    for y, p in zip(labels, pred):
        confusion[y, p if p >= 0 else C] += 1
    return {"accuracy": float((pred == labels).mean()), "uar": float(np.mean(list(recall.values()))),
            "recall": recall,
            "emotional_called_neutral": int((pred[emotional] == neutral).sum()),
            "emotional": int(emotional.sum()), "confusion": confusion.tolist()}


def _markdown(rows: list[dict], classes: list[str]) -> str:
    present = [c for c in classes if c in rows[0]["recall"]]
    head = "| crop | grey | rule | accuracy | UAR | " + " | ".join(present) + " | non-neutral called neutral |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        rec = " | ".join(f"{100 * r['recall'][c]:.0f}" for c in classes if c in r["recall"])
        lines.append(f"| {r['crop']:g} | {r['grey']} | {Rule(**r['rule']).name()} | {100 * r['accuracy']:.1f} | "
                     f"{100 * r['uar']:.1f} | {rec} | {r['emotional_called_neutral']}/{r['emotional']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
