"""Windows through the model: each window's distribution over the classes, streamed over
the aligned frames of one input, and the rows and summary of the report."""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import torch

from dfer.errors import DataError
from dfer.inference import clip_probabilities
from dfer.predict.bundle import ModelBundle
from dfer.predict.timing import _TimedFrame, _Timer
from dfer.predict.windows import WindowPlan
from dfer.preprocess.video import as_rgb


def _classify_windows(crops: Iterable[np.ndarray | _TimedFrame | None], plan: WindowPlan, bundle: ModelBundle,
                      transform, batch_size: int, timer: _Timer) -> np.ndarray:
    """(W, C) float64 softmax per window, streaming over the aligned crops once (None for a
    frame no window samples).

    Each frame some window samples is transformed once and kept until the last window
    that uses it has been classified.
    """
    needed = plan.sampled()
    last_needed = plan.indices.max(axis=1)  # a window is complete once this frame is in
    cache: dict[int, torch.Tensor] = {}
    out = np.full((len(plan), len(bundle.classes)), np.nan)
    pending: list[int] = []
    next_window = 0

    def flush() -> None:
        if not pending:
            return
        t0 = time.perf_counter()
        clip = torch.stack([torch.stack([cache[int(i)] for i in plan.indices[w]]) for w in pending])
        out[pending] = clip_probabilities(bundle.model, clip.to(bundle.device), dtype=torch.float64)[0][:, 0].numpy()
        pending.clear()
        timer.seconds["classify"] += time.perf_counter() - t0

    it = iter(crops)
    t = -1
    while next_window < len(plan):
        t0, decode_before = time.perf_counter(), timer.seconds["decode"]
        try:
            crop = next(it)
        except StopIteration:
            break
        # a crop may re-decode its frame (long videos): that share is already in "decode"
        timer.seconds["align"] += time.perf_counter() - t0 - (timer.seconds["decode"] - decode_before)
        t += 1
        if t < len(needed) and needed[t]:
            crop = as_rgb(crop)  # an aligned input's conversion: decode time, not transform
            t0 = time.perf_counter()
            cache[t] = transform(crop[None])[0]
            timer.seconds["transform"] += time.perf_counter() - t0
        while next_window < len(plan) and last_needed[next_window] <= t:
            pending.append(next_window)
            next_window += 1
            if len(pending) >= batch_size:
                flush()
        first_live = pending[0] if pending else next_window
        if first_live < len(plan):
            # windows are classified in order: frames before the first live window's first frame are done
            keep_from = int(plan.indices[first_live, 0])
            for k in [k for k in cache if k < keep_from]:
                del cache[k]
    flush()
    if next_window < len(plan):
        raise DataError(f"the stream ended after {t + 1} frames; windows need frame {int(last_needed[-1])}")
    return out


def _window_rows(plan: WindowPlan, probs: np.ndarray, predicted: np.ndarray, face_frac: np.ndarray,
                 fps: float | None, bundle: ModelBundle) -> list[dict]:
    """One report row per window; a window with too few face frames has no probabilities."""
    rows = []
    for w in range(len(plan)):
        s, e = int(plan.starts[w]), int(plan.ends[w])
        p = probs[w] if predicted[w] else None
        rows.append({
            "index": w, "start_frame": s, "end_frame": e,
            "start_s": s / fps if fps else 0.0, "end_s": e / fps if fps else 0.0,
            "frames": plan.indices[w].tolist(), "face_found": float(face_frac[w]),
            "probabilities": None if p is None else [float(x) for x in p],
            "top": None if p is None else bundle.classes[int(np.argmax(p))],
            "top_probability": None if p is None else float(np.max(p)),
        })
    return rows


def _overall(probs: np.ndarray, predicted: np.ndarray, classes) -> dict:
    """The mean distribution of the predicted windows and its top class (None without any)."""
    if not predicted.any():
        return {"mean_probabilities": None, "dominant": None, "dominant_probability": None}
    mean = probs[predicted].mean(axis=0)
    mean = mean / mean.sum()
    return {"mean_probabilities": [float(x) for x in mean], "dominant": classes[int(np.argmax(mean))],
            "dominant_probability": float(np.max(mean))}
