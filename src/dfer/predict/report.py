"""One input of ``dfer predict`` from file to report: its frames, faces, windows and
their distributions (the steps of :mod:`dfer.predict`'s docstring)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dfer.errors import ConfigError, DataError
from dfer.predict.bundle import ModelBundle, input_transform, load_pretrained
from dfer.predict.classify import _classify_windows, _overall, _window_rows
from dfer.predict.faces import _faces
from dfer.predict.media import _media_kind, _open_media
from dfer.predict.settings import PredictConfig
from dfer.predict.timing import _Timer
from dfer.predict.windows import WindowPlan, no_face_spans, plan_windows, window_length
from dfer.preprocess.face import ALIGN_SIZE

__all__ = ["predict_file", "predict_video"]


def predict_file(path: str | os.PathLike, bundle: ModelBundle, config: PredictConfig | None = None,
                 detector=None, fps: float | None = None) -> dict:
    """Predict one video or image; returns the report written as JSON (see the module docstring).

    Args:
        path: video or image file, or a folder of aligned face frames (``dfer preprocess``
            output, DFEW's frames: ``config.aligned`` and ``fps`` required).
        bundle: :class:`ModelBundle` from :func:`load_model`.
        config: :class:`PredictConfig`.
        detector: a :class:`dfer.preprocess.detect.FaceDetector` (default: RetinaFace with
            ``config``'s settings); unused with ``config.aligned``.
        fps: frame rate of a frame folder (it places the windows in time).

    Returns:
        The report dict; ``report["status"]`` is ``"ok"`` or ``"no_face"`` (then there are
        no windows and ``report["error"]`` says why).

    Raises:
        DataError: unreadable or undecodable media.
    """
    cfg = (config or PredictConfig()).validate()
    path = Path(path)
    kind = _media_kind(path)
    if kind == "frames":
        if not cfg.aligned or not (fps or 0) > 0:
            raise ConfigError(f"{path}: a folder of frames is predicted as aligned faces at a known frame rate "
                              f"(aligned=True, fps > 0; got {cfg.aligned}, {fps})")
    elif not path.is_file():
        raise DataError(f"{path}: file not found")
    timer = _Timer()
    transform = input_transform(bundle)
    t_start = time.perf_counter()
    media = _open_media(path, kind, timer, fps)
    report: dict = {
        "input": str(path), "kind": kind, "fps": media.fps, "width": int(media.width), "height": int(media.height),
        "classes": list(bundle.classes), "model": dict(bundle.source),
        "settings": {**asdict(cfg), "align_size": ALIGN_SIZE},
    }
    # windows over the whole clip; a still image is one frame repeated num_frames times
    if kind in ("video", "frames"):
        L = window_length(cfg.window_seconds, media.fps)
        stride = cfg.stride or L
    else:
        L, stride = 1, 1

    plans: list[WindowPlan] = []

    def sampled(num: int, found: np.ndarray | None = None) -> np.ndarray:  # the only frames aligned
        plan = plan_windows(num, L, stride, bundle.num_frames)
        plans.append(plan if found is None else plan.on_faces(found))
        return plans[-1].sampled()

    faces = _faces(path, kind, media, cfg, detector, timer, sampled)
    if faces is None:
        n = media.decoded[0]
        report.update(status="no_face", frames=n, windows=[],
                      error=("no frames decoded" if n == 0 else
                             f"no face found in {n} frame{'s' if n != 1 else ''} "
                             f"(detector score >= {cfg.score_threshold})"))
        report["summary"] = {"processing_s": time.perf_counter() - t_start}
        return report
    num, found, track_stats, crops = faces
    fps = media.fps
    plan = plans[-1] if plans else plan_windows(num, L, stride, bundle.num_frames).on_faces(found)
    probs = _classify_windows(crops, plan, bundle, transform, cfg.batch_size, timer)
    seconds = time.perf_counter() - t_start

    face_frac = np.array([found[s:e].mean() for s, e in zip(plan.starts, plan.ends)])
    predicted = face_frac >= cfg.min_face - 1e-12
    duration = num / fps if fps else None
    summary = {
        "windows": len(plan), "predicted_windows": int(predicted.sum()),
        "frames_without_face": int((~found).sum()), "face_frame_fraction": float(found.mean()),
        "detected_frames": int(track_stats["detected_frames"]),
        "detection_rate": track_stats["detection_rate"],
        "processing_s": seconds,
        "realtime_factor": (duration / seconds) if duration else None,
        "ms_per_frame": {k: 1000 * v / num for k, v in timer.seconds.items()},
        **_overall(probs, predicted, bundle.classes),
    }
    report.update(status="ok", error=None, frames=int(num), duration_s=duration, window_frames=int(L),
                  stride_frames=int(stride), windows=_window_rows(plan, probs, predicted, face_frac, fps, bundle),
                  no_face_spans_s=[list(span) for span in no_face_spans(found, fps)] if fps else [],
                  summary=summary)
    return report


def predict_video(path: str | os.PathLike, model: ModelBundle | None = None, *, device: str = "auto",
                  detector=None, **settings) -> dict:
    """The emotion timeline of one video (or still image), as ``dfer predict`` writes it to JSON.

    Args:
        path: a video or image file.
        model: a :class:`ModelBundle` (:func:`load_pretrained`, or :func:`load_model` of a
            run); None loads dfer's shipped FER+ model on ``device`` (load it once with
            :func:`load_pretrained` when predicting many files).
        device: where a model loaded here goes.
        detector: a face detector to reuse across calls (default: a new RetinaFace).
        **settings: fields of :class:`PredictConfig` (``window_seconds=``, ``stride=``,
            ``min_face=``, ``aligned=``, ...).

    Returns:
        The report: ``status`` (``"ok"`` or ``"no_face"``), ``classes``, ``model``,
        ``windows`` (each with ``start_s``, ``end_s``, ``face_found``, ``probabilities``
        (None without a face), ``top``, ``top_probability``) and ``summary``
        (``dominant``, ``dominant_probability``, ``face_frame_fraction``, ...).

    Raises:
        TypeError: an unknown setting. ConfigError: a bad setting value, a missing or
        damaged shipped model. DataError: a missing, unsupported or undecodable file.

    Example:
        >>> import dfer
        >>> report = dfer.predict_video("tests/data/videos/single_face.mp4", window_seconds=1.0)
        >>> report["summary"]["dominant"] in report["classes"]
        True
        >>> [(w["start_s"], w["top"]) for w in report["windows"]]  # doctest: +SKIP
        [(0.0, 'happy'), (1.0, 'happy'), (1.4, 'happy')]
    """
    known = {f for f in PredictConfig.__dataclass_fields__}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"predict_video() got unknown setting(s) {unknown}; expected fields of PredictConfig: "
                        f"{sorted(known)}")
    config = PredictConfig(**settings).validate()
    _media_kind(Path(path))  # a wrong file is reported before a model is loaded
    bundle = model if model is not None else load_pretrained(device)
    return predict_file(path, bundle, config, detector)
