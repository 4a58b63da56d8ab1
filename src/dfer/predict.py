"""``dfer predict``: the emotion distribution over the time of any video or still image.

Without ``--run`` or ``--checkpoint`` it uses the face-expression model that ships inside
dfer (:mod:`dfer.pretrained`: a ResNet-18 over one grey frame, trained on FER+'s eight
classes), so ``dfer predict VIDEO`` works right after ``pip install``; in Python,
:func:`predict_video` (``dfer.predict_video``) does the same and returns the report.

The MIDAS paper (Kawamura et al., Sec. 4.1 and 4.3) classifies a clip from 8 frames, one
per equal segment (TSN sampling), of the face detected and aligned by an affine transform.
This command applies a trained model the same way to every stretch of a user's video:

1. **Faces**: decode (PyAV), detect (RetinaFace) on every ``detect_every``-th frame,
   link, fill and smooth one face track, and align every frame a window samples to the
   256x256 template of ``dfer preprocess`` (:func:`dfer.preprocess.track.faces_from_frames`); then the
   run's test-time transform (:func:`dfer.data.transforms.build_transforms` with
   ``train=False``: short side to ``size``, centre crop, ImageNet normalisation). The
   shipped FER+ model saw FER2013's tight grey crops, so for it (and only for a model that
   asks, :func:`input_transform`) the aligned face is first cut to its centred
   ``face_crop`` fraction and turned grey (ITU-R 601 luma, three equal channels).
2. **Windows**: a window covers ``window_seconds`` of video, ``L = round(window_seconds
   * fps)`` frames, sampled into the model's ``num_frames`` frames exactly as the test
   clips of training (:class:`dfer.data.sampling.SegmentSampler`, segment centres; a
   window shorter than ``num_frames`` repeats frames evenly). Windows start every
   ``stride`` frames (default ``L``: each frame belongs to one window); when the last
   window would run past the end, one more window is placed so that it ends on the last
   frame, so every frame is covered and every window has the same length. A video shorter
   than ``L`` is one window over all its frames; a still image is a one-frame clip
   repeated ``num_frames`` times (one window).
3. **Classes**: windows are batched through the model (:func:`dfer.inference.clip_probabilities`);
   each window's softmax is its distribution over the classes. A decoded and aligned
   frame is transformed once and shared by every window that samples it; frames no
   remaining window needs are dropped, so memory stays bounded by one window's frames
   (plus the raw-frame cache of ``faces_from_frames``).

Only what a window uses is computed: a decoded frame is converted to RGB only when the
detector looks at it or a window samples it (:class:`dfer.preprocess.video.DecodedFrame`;
the conversion costs more than the decoding), only sampled frames are warped to the
template, and the model runs in channels-last layout (:func:`dfer.inference.channels_last`).
None of this changes the report beyond the float rounding of the forward pass.

Frames where the track is not really there (``FrameSource.FILLED``: before the face
appears, after it leaves) are "no face" frames: a window's ``face_found`` is the fraction
of its frames (all frames of its span, not only the sampled ones) with a face, and a
window below ``min_face`` gets no distribution (``null`` in JSON, empty cells in CSV, a gap
in the timeline) instead of a guess from a stale crop.

Outputs per input ``X`` in ``--out`` (default ``./predictions``): ``X.json`` (everything),
``X.csv`` (one row per window) and ``X.png`` (stacked probabilities over time with the
no-face frames shaded; not written for a still image). One line per input on stdout.

Exit codes: 0 when at least one input was predicted; 2 when none was (every input had no
face or failed to decode; each is reported on its own line) or the arguments are bad
(missing file, unsupported extension, not a run directory, bad option values), which
stop the command before any input is processed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from dfer.checkpoint import load_checkpoint, load_run
from dfer.config import MAX_BATCH, MAX_FRAMES, MAX_SIZE, MAX_THREADS, arg
from dfer.data.decode import list_frame_files, probe_num_frames, read_image
from dfer.distributed import resolve_device
from dfer.data.sampling import SegmentSampler
from dfer.data.table import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from dfer.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms
from dfer.emotions import resolve_classes
from dfer.errors import ConfigError, DataError, DfeError, first_line
from dfer.inference import channels_last, clip_probabilities, fold_batchnorm
from dfer.io import claim_folder, regular_file, write_text_atomic
from dfer.models import create_model_for_weights
from dfer.preprocess.video import DecodedFrame, as_rgb, iter_decoded, probe_video, read_ahead
from dfer.pretrained import NAME, weights_path
from dfer.pretrained.model import build_model

__all__ = ["PredictConfig", "WindowPlan", "window_length", "plan_windows", "ModelBundle", "load_model",
           "load_pretrained", "input_transform", "predict_file", "predict_video",
           "add_arguments", "run"]

ALIGN_SIZE = 256  # the aligned frame size of `dfer preprocess` (DFEW's own frames), i.e. of the training data


@dataclass
class PredictConfig:
    """Settings of ``dfer predict`` (the model's ``size`` and ``num_frames`` come from the run).

    Attributes:
        window_seconds: seconds of video one window covers.
        stride: frames between window starts; None = the window length (no overlap).
        batch_size: windows per forward pass.
        detect_every: run the face detector on every k-th frame, track in between.
        max_side: detection resolution (longest side in pixels); 0 = full resolution.
        score_threshold: minimum face confidence.
        smooth_window: centred moving average of the landmarks, in frames.
        min_face: windows with a smaller fraction of face frames get no distribution.
        aligned: the inputs are already aligned face crops (e.g. DFEW frames): no detection.
        threads: threads for torch, onnxruntime and OpenCV; 0 = their defaults.
        plot: write the timeline PNG.
    """

    window_seconds: float = 2.0
    stride: int | None = None
    batch_size: int = 8
    detect_every: int = 3
    max_side: int = 320
    score_threshold: float = 0.9
    smooth_window: int = 5
    min_face: float = 0.5
    aligned: bool = False
    threads: int = 0
    plot: bool = True

    def validate(self) -> "PredictConfig":
        checks = [
            (self.window_seconds > 0 and math.isfinite(self.window_seconds),
             f"--window-seconds must be > 0, got {self.window_seconds}"),
            (self.stride is None or self.stride >= 1, f"--stride must be >= 1 frame, got {self.stride}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.detect_every >= 1, f"--detect-every must be >= 1, got {self.detect_every}"),
            (self.max_side == 0 or self.max_side >= 64, f"--max-side must be 0 or >= 64, got {self.max_side}"),
            (0 < self.score_threshold < 1, f"--score-threshold must be in (0, 1), got {self.score_threshold}"),
            (self.smooth_window >= 1, f"--smooth must be >= 1, got {self.smooth_window}"),
            (0 <= self.min_face <= 1, f"--min-face must be in [0, 1], got {self.min_face}"),
            (self.threads >= 0, f"--threads must be >= 0, got {self.threads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self


# ---------------------------------------------------------------------------- windows (pure)
@dataclass(frozen=True)
class WindowPlan:
    """Sliding windows over a clip of ``num_video_frames`` frames.

    Attributes:
        starts: (W,) int64 first frame of each window, non-decreasing.
        ends: (W,) int64 one past the last frame of each window.
        indices: (W, num_frames) int64 frames each window feeds the model (non-decreasing
            within a row, inside ``[start, end)``; the first column is non-decreasing over rows).
    """

    starts: np.ndarray
    ends: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def sampled(self) -> np.ndarray:
        """(N,) bool: the frames of the clip some window feeds the model."""
        mask = np.zeros(int(self.ends.max()), bool)
        mask[self.indices.ravel()] = True
        return mask

    def on_faces(self, found: np.ndarray) -> "WindowPlan":
        """The same windows, each sampled frame without a face (``found`` False: a black
        lead-in, the face turned away or out of the picture) replaced by the nearest frame
        of its window that has one (the earlier on ties); a window without any face frame
        keeps its frames (it gets no distribution, see ``min_face``)."""
        found = np.asarray(found, bool)
        indices = self.indices.copy()
        for w, (s, e) in enumerate(zip(self.starts, self.ends)):
            have = np.flatnonzero(found[s:e]) + s
            if len(have) == 0 or found[indices[w]].all():
                continue
            pos = np.clip(np.searchsorted(have, indices[w]), 0, len(have) - 1)
            before = have[np.maximum(pos - 1, 0)]
            after = have[pos]
            nearest = np.where(np.abs(indices[w] - before) <= np.abs(after - indices[w]), before, after)
            indices[w] = np.where(found[indices[w]], indices[w], nearest)
        return WindowPlan(self.starts, self.ends, indices)


def window_length(window_seconds: float, fps: float) -> int:
    """Frames in a window of ``window_seconds`` at ``fps`` (at least 1)."""
    return max(1, int(round(window_seconds * fps)))


def plan_windows(num_video_frames: int, window: int, stride: int, num_frames: int) -> WindowPlan:
    """Window placement and TSN sampling inside each window (see the module docstring).

    Args:
        num_video_frames: N >= 1 frames in the clip.
        window: L >= 1 frames per window.
        stride: frames between consecutive starts (>= 1).
        num_frames: T frames the model takes per window.

    Returns:
        :class:`WindowPlan`. Starts are ``0, stride, 2*stride, ...`` while a full window
        fits; if frames remain after the last of them, a final window ``[N - L, N)`` is
        added. ``N < L`` gives one window ``[0, N)``. Each window's frames are the segment
        centres of :class:`dfer.data.sampling.SegmentSampler` (test mode) over its span.
    """
    n, L, s = int(num_video_frames), int(window), int(stride)
    if n < 1 or L < 1 or s < 1:
        raise ValueError(f"expected num_video_frames, window and stride >= 1, got {n}, {L}, {s}")
    if n <= L:
        starts = np.zeros(1, np.int64)
    else:
        starts = np.arange(0, n - L + 1, s, dtype=np.int64)
        if starts[-1] + L < n:
            starts = np.append(starts, n - L)
    ends = np.minimum(starts + L, n)
    sampler = SegmentSampler(num_frames, mode="test")
    offsets = {int(length): sampler.sample(int(length)) for length in np.unique(ends - starts)}
    indices = np.stack([start + offsets[int(end - start)] for start, end in zip(starts, ends)]).astype(np.int64)
    return WindowPlan(starts, ends, indices)


def no_face_spans(found: np.ndarray, fps: float) -> list[tuple[float, float]]:
    """Runs of frames without a face as ``(start_s, end_s)`` (frame ``t`` spans
    ``[t / fps, (t + 1) / fps)``)."""
    missing = ~np.asarray(found, bool)
    if not missing.any():
        return []
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(float(a / fps), float(b / fps)) for a, b in zip(starts, ends)]


# ---------------------------------------------------------------------------- model
@dataclass
class ModelBundle:
    """A model ready for inference and what it expects.

    Attributes:
        model: module in eval mode mapping (B, T, 3, size, size) float32 to logits (B, C).
        classes: the C class names.
        size: input side in pixels.
        num_frames: T.
        device: where the model lives.
        source: what was loaded (for the report).
        grey: the model saw grey faces: frames are turned grey (three equal channels).
        face_crop: centred fraction of the aligned face to keep (1.0: the whole face).
        mean, std: the normalisation the model was trained with (None: ImageNet's).
    """

    model: torch.nn.Module
    classes: tuple[str, ...]
    size: int
    num_frames: int
    device: torch.device
    source: dict = field(default_factory=dict)
    grey: bool = False
    face_crop: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def load_model(*, run: str | None = None, which: str | None = None, checkpoint: str | None = None,
               pretrained: bool | None = None, model_name: str = "tsm_resnet18", classes: str = "basic7",
               size: int | None = None, num_frames: int | None = None, device: str = "auto") -> ModelBundle:
    """Load a model: dfer's shipped FER+ model, a run directory or a bare checkpoint file.

    The model comes for inference: in eval mode, its BatchNorms folded into the
    convolutions before them (:func:`dfer.inference.fold_batchnorm`) and its 2-D
    convolutions in channels-last layout (:func:`dfer.inference.channels_last`): faster,
    the outputs equal up to float rounding.

    Args:
        run: run directory of ``dfer train`` (config.yaml, classes.json, checkpoints/).
        which: ``last`` or ``best`` (default: the run's own selection rule).
        checkpoint: a ``.safetensors`` checkpoint of ``dfer train`` (with ``model_name``
            and ``classes``; ``size`` default 224, ``num_frames`` default 8).
        pretrained: the model that ships with dfer (:mod:`dfer.pretrained`); the default
            when neither ``run`` nor ``checkpoint`` is given. Its classes, size, frames,
            grey input and face crop come from the file's metadata.
        size, num_frames: override the model's input size / frames per window.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: not a run directory, missing or unreadable checkpoint, a checkpoint
            that does not fit the model, bad sizes, a missing or damaged shipped model.
    """
    dev = resolve_device(device)
    given = [name for name, v in (("--run", run), ("--checkpoint", checkpoint)) if v is not None]
    if len(given) > 1 or (given and pretrained):
        raise ConfigError(f"give one model: {' and '.join(given + (['the shipped model'] if pretrained else []))} "
                          f"exclude each other")
    if not given:
        if pretrained is False:
            raise ConfigError("pretrained=False needs a model: give run= or checkpoint=")
        bundle = _load_pretrained_bundle(dev, size, num_frames)
    elif run is not None:
        run_dir = Path(run)
        model, cfg, run_classes = load_run(run_dir, which=which, device=dev)  # one line on a damaged file
        bundle = ModelBundle(model, tuple(run_classes), int(size or cfg.data.size),
                             int(num_frames or cfg.data.num_frames), dev,
                             {"run": str(run_dir), "which": which or ("best" if cfg.eval.select == "best_val" else "last"),
                              "model": cfg.model.name}, grey=bool(cfg.data.grey), face_crop=float(cfg.data.face_crop))
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError(f"{path}: checkpoint file not found")
        class_names = tuple(resolve_classes(classes))
        model = create_model_for_weights(model_name, len(class_names))
        try:
            load_checkpoint(path, model)
        except Exception as e:
            raise ConfigError(f"{path}: not a dfer checkpoint for {model_name} with {len(class_names)} classes "
                              f"({type(e).__name__}: {first_line(e)})") from None
        bundle = ModelBundle(model.to(dev).eval(), class_names, int(size or 224), int(num_frames or 8), dev,
                             {"checkpoint": str(path), "model": model_name})
    if bundle.size < 8:
        raise ConfigError(f"--size must be >= 8, got {bundle.size}")
    if bundle.num_frames < 1:
        raise ConfigError(f"--num-frames must be >= 1, got {bundle.num_frames}")
    bundle.source.update(size=bundle.size, num_frames=bundle.num_frames)
    # faster convolutions, the same outputs up to float rounding
    channels_last(fold_batchnorm(bundle.model))
    return bundle


def _load_pretrained_bundle(device: torch.device, size: int | None, num_frames: int | None) -> ModelBundle:
    path = weights_path()
    model, meta = build_model(path, device=device)  # raises, saying how to reinstall, on a broken file
    face_crop = float(meta["face_crop"])
    source = {"pretrained": NAME, "name": "dfer FER+ ResNet-18",
              "description": "dfer's shipped face-expression model: a ResNet-18 over one grey face, trained on "
                             "FER+ (8 classes)",
              "file": str(path), "model": meta["model"], "trained_by": meta.get("trained_by"),
              "metrics": meta.get("metrics") or {}, "grey": bool(meta["grey"]), "face_crop": face_crop}
    return ModelBundle(model, tuple(meta["classes"]), int(size or meta["size"]),
                       int(num_frames or meta.get("num_frames") or 1), device, source, grey=bool(meta["grey"]),
                       face_crop=face_crop, mean=tuple(meta["mean"]), std=tuple(meta["std"]))


def load_pretrained(device: str = "auto") -> ModelBundle:
    """dfer's shipped face-expression model, ready for :func:`predict_video`.

    A ResNet-18 over one grey face trained on FER+ (classes neutral, happy, surprise, sad,
    angry, disgust, fear, contempt); it lies inside the package, nothing is downloaded.
    Load it once and pass it to every :func:`predict_video` call. The bundle's model is
    for inference (its BatchNorms are folded into the convolutions, see :func:`load_model`);
    to fine-tune the weights, train from them with ``model.pretrained: ferplus``.

    Args:
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        :class:`ModelBundle` with ``grey=True`` and the file's ``face_crop``.

    Raises:
        ConfigError: the shipped file is missing or damaged (the message says how to
            reinstall), or ``device`` is not available.

    Example:
        >>> import dfer
        >>> model = dfer.load_pretrained(device="cpu")
        >>> model.classes[:3]
        ('neutral', 'happy', 'surprise')
    """
    return load_model(pretrained=True, device=device)


# ---------------------------------------------------------------------------- frames -> model input
def input_transform(bundle: ModelBundle, *, face_crop: bool = True):
    """The bundle's frame pipeline: uint8 (T, H, W, 3) -> normalised float32 (T, 3, size, size).

    The test-time transform of training (:func:`dfer.data.transforms.build_transforms`,
    ``train=False``) with the bundle's framing: the centred ``face_crop`` of the aligned
    face (``face_crop=False`` skips it: images that are already tight crops, like FER+'s)
    and the grey conversion, for a bundle that asks for them. A model trained by
    ``dfer train`` gets its run's own ``data.face_crop`` and ``data.grey``.
    """
    return build_transforms(train=False, size=bundle.size, mean=bundle.mean or IMAGENET_MEAN,
                            std=bundle.std or IMAGENET_STD, face_crop=bundle.face_crop if face_crop else 1.0,
                            grey=bundle.grey)


# ---------------------------------------------------------------------------- one input
class _Timer:
    """Seconds spent per stage (decode, detect, align, transform, classify); a frame's RGB
    conversion counts as decoding, wherever it happens. Frames decode ahead in a background
    thread (:func:`dfer.preprocess.video.read_ahead`), so "decode" is the time the pipeline
    waited for decoded frames plus their conversion, not the decoder's own CPU time."""

    def __init__(self):
        self.seconds: dict[str, float] = {"decode": 0.0, "detect": 0.0, "align": 0.0, "transform": 0.0,
                                          "classify": 0.0}

    def frames(self, source: Iterable[DecodedFrame], counter: list[int]) -> Iterator["_TimedFrame"]:
        it = iter(source)
        while True:
            t0 = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                self.seconds["decode"] += time.perf_counter() - t0
                return
            self.seconds["decode"] += time.perf_counter() - t0
            counter[0] += 1
            yield _TimedFrame(frame, self.seconds)


class _TimedFrame:
    """A :class:`DecodedFrame` whose RGB conversion is timed as decoding (the other stages'
    clocks leave it out)."""

    __slots__ = ("frame", "seconds")

    def __init__(self, frame: DecodedFrame, seconds: dict[str, float]):
        self.frame, self.seconds = frame, seconds

    @property
    def nbytes(self) -> int:
        return self.frame.nbytes

    def rgb(self) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.frame.rgb()
        finally:
            self.seconds["decode"] += time.perf_counter() - t0


class _TimedDetector:
    def __init__(self, detector, timer: _Timer):
        self.detector, self.timer = detector, timer

    def detect(self, image):
        t0 = time.perf_counter()
        try:
            return self.detector.detect(image)
        finally:
            self.timer.seconds["detect"] += time.perf_counter() - t0


def _media_kind(path: Path) -> str:
    if path.is_dir():
        return "frames"
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    raise DataError(f"{path}: expected a video ({', '.join(VIDEO_EXTENSIONS)}) or an image "
                    f"({', '.join(IMAGE_EXTENSIONS)}), found suffix {path.suffix or '(none)'!r}")


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


@dataclass
class _Media:
    """A decoded-on-demand video or a decoded image: its size, frame rate (None for an
    image) and ``frames()``, a fresh iterator over its frames each call (a video's are
    decoded frames whose RGB conversion waits until it is used)."""

    width: int
    height: int
    fps: float | None
    frames: Callable[[], Iterator[np.ndarray]]
    decoded: list[int]  # frames decoded by the last pass (a box the iterator fills)


def _open_media(path: Path, kind: str, timer: _Timer, fps: float | None = None) -> _Media:
    decoded = [0]
    if kind == "frames":
        files = list_frame_files(path)
        if not files:
            raise DataError(f"{path}: no frames in the folder")

        def read() -> Iterator[np.ndarray]:
            decoded[0] = 0
            for f in files:
                t0 = time.perf_counter()
                image = read_image(f)
                timer.seconds["decode"] += time.perf_counter() - t0
                decoded[0] += 1
                yield image

        first = read_image(files[0])
        return _Media(first.shape[1], first.shape[0], float(fps), read, decoded)
    if kind == "video":
        info = probe_video(path)
        if not info.fps > 0:
            raise DataError(f"{path}: the container gives no frame rate; cannot place windows in time")

        def frames() -> Iterator[_TimedFrame]:
            decoded[0] = 0
            return timer.frames(read_ahead(iter_decoded(path, threads=1)), decoded)

        return _Media(info.width, info.height, info.fps, frames, decoded)
    t0 = time.perf_counter()
    image = read_image(str(path)).copy()  # PIL's array may be read-only; torch wants writable memory
    timer.seconds["decode"] += time.perf_counter() - t0
    decoded[0] = 1
    return _Media(image.shape[1], image.shape[0], None, lambda: iter([image]), decoded)


def make_detector(cfg: PredictConfig):
    """The face detector ``dfer predict`` uses with ``cfg`` (RetinaFace, offline); make it
    once and pass it to every :func:`predict_file` call."""
    from dfer.preprocess.detect import DetectorConfig, RetinaFaceDetector

    return RetinaFaceDetector(DetectorConfig(max_side=cfg.max_side, score_threshold=cfg.score_threshold,
                                             num_threads=cfg.threads or max(1, torch.get_num_threads())))


def _faces(path: Path, kind: str, media: _Media, cfg: PredictConfig, detector, timer: _Timer,
           wanted: Callable[..., np.ndarray]):
    """(frames, found mask, tracking stats, aligned face crops) of the media, or None when
    no face is found; only the frames ``wanted(frames, found)`` marks are aligned (the
    others are None). With ``cfg.aligned`` the frames are the faces already (decoded frames, converted
    to RGB when a window samples them)."""
    if cfg.aligned:
        num = (probe_num_frames(path) if kind == "video" else len(list_frame_files(path)) if kind == "frames"
               else 1)
        stats = {"detected_frames": 0, "found_frames": num, "detection_rate": None, "filled_frames": 0}
        return num, np.ones(num, bool), stats, media.frames()
    from dfer.preprocess.track import TrackConfig, faces_from_frames

    if detector is None:
        detector = make_detector(cfg)
    tcfg = TrackConfig(detect_every=cfg.detect_every if kind == "video" else 1, smooth_window=cfg.smooth_window,
                       size=ALIGN_SIZE)
    source = media.frames if kind == "video" else list(media.frames())
    crops, track = faces_from_frames(source, _TimedDetector(detector, timer), tcfg,
                                     wanted=lambda t: wanted(t.num_frames, t.found))
    if track is None:
        return None
    return track.num_frames, track.found, track.stats(), crops


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


# ---------------------------------------------------------------------------- outputs
def _is_predict_report(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"input", "windows", "summary", "outputs"} <= doc.keys()


def claim_output_folder(out_dir: Path, create: bool = True) -> Path:
    """:func:`dfer.io.claim_folder` for --out; one written before dfer marked its folders
    holds a report of dfer predict."""
    return claim_folder(out_dir, "predictions", "dfer predict",
                        lambda d: any(_is_predict_report(p) for p in d.glob("*.json")), create=create)


def write_outputs(report: dict, out_dir: Path, name: str, plot: bool = True) -> dict[str, Path]:
    """Write ``name.json``, ``name.csv`` and (videos, ``plot``) ``name.png`` into ``out_dir``.

    Outputs of an earlier ``dfer predict`` (its ``name.json`` says so) are replaced; a file
    of those names that dfer did not write is left alone and the input fails with one line.
    The JSON goes first, so a run killed halfway leaves files a rerun knows as its own.
    """
    claim_output_folder(out_dir)
    paths = {"json": out_dir / f"{name}.json", "csv": out_dir / f"{name}.csv"}
    will_plot = plot and report["kind"] == "video" and bool(report["windows"])
    if will_plot:
        paths["png"] = out_dir / f"{name}.png"
    existing = [p for p in (paths["json"], paths["csv"], out_dir / f"{name}.png") if p.exists() or p.is_symlink()]
    if existing and not _is_predict_report(paths["json"]):
        raise DataError(f"{existing[0]} exists and was not written by dfer predict; left as it is (move it, or "
                        f"give another --out)")
    write_text_atomic(paths["json"], json.dumps({**report, "outputs": {k: str(v) for k, v in paths.items()}},
                                          indent=1, allow_nan=False) + "\n")
    classes = report["classes"]

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["start_frame", "end_frame", "start_s", "end_s", "face_found", "top", *classes])
    for w in report["windows"]:
        p = w["probabilities"]
        writer.writerow([w["start_frame"], w["end_frame"], f"{w['start_s']:.4f}", f"{w['end_s']:.4f}",
                         f"{w['face_found']:.4f}", w["top"] or "",
                         *([f"{x:.6f}" for x in p] if p is not None else [""] * len(classes))])
    write_text_atomic(paths["csv"], buf.getvalue())

    if will_plot:
        from dfer.plots import plot_timeline

        times, probs = timeline_steps(report["windows"], len(classes))
        s = report["summary"]
        title = (f"{Path(report['input']).name}: dominant {s['dominant']} ({s['dominant_probability']:.2f})"
                 if s.get("dominant") else f"{Path(report['input']).name}: no prediction")
        plot_timeline(times, probs, classes, paths["png"],
                      no_face=np.array(report["no_face_spans_s"], np.float64).reshape(-1, 2), title=title)
    return paths


def timeline_steps(windows: list[dict], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows as a piecewise-constant timeline for :func:`dfer.plots.plot_timeline`.

    Window ``w`` holds from the midpoint between its centre and the previous window's
    centre to the midpoint with the next one (the first from its start, the last to its
    end); with the default stride (no overlap) these are exactly the windows' spans. Each
    piece is drawn as two points (its start and just before its end), so one window alone
    is still a visible band.

    Returns:
        ``(times (2W,), probs (2W, C))``; windows without a prediction are NaN rows.
    """
    centres = np.array([(w["start_s"] + w["end_s"]) / 2 for w in windows], np.float64)
    bounds = np.concatenate([[windows[0]["start_s"]], (centres[1:] + centres[:-1]) / 2, [windows[-1]["end_s"]]])
    times, probs = [], []
    for w, (a, b) in zip(windows, zip(bounds[:-1], bounds[1:])):
        p = w["probabilities"] if w["probabilities"] is not None else [np.nan] * num_classes
        eps = 1e-6 * max(b - a, 1e-3)
        times += [a, b - eps]
        probs += [p, p]
    return np.asarray(times, np.float64), np.asarray(probs, np.float64)


def summary_line(report: dict, paths: dict[str, Path] | None = None) -> str:
    """The one-line summary printed per input."""
    name = Path(report["input"]).name
    if report["status"] != "ok":
        return f"{name}: {report['error']}; nothing written"
    s = report["summary"]
    if s["dominant"] is None:
        result = f"no window with a face in >= {report['settings']['min_face']:.0%} of its frames"
    else:
        result = f"dominant {s['dominant']} ({s['dominant_probability']:.2f})"
    if report["kind"] == "image":
        line = f"{name}: still image, {result}"
    else:
        line = (f"{name}: {report['frames']} frames, {report['duration_s']:.1f} s, {s['windows']} windows, {result}, "
                f"faces in {s['face_frame_fraction']:.0%} of frames, {s['realtime_factor']:.1f}x real time")
    if paths:
        stem = paths["json"].with_suffix("")
        line += f" -> {stem}.{{{','.join(paths)}}}"
    return line


def _output_names(paths: list[Path]) -> list[str]:
    """Output file stems: the input's stem, with its suffix appended when stems clash."""
    stems = [p.stem for p in paths]
    names, taken = [], set()
    for p, stem in zip(paths, stems):
        name = stem if stems.count(stem) == 1 else f"{stem}_{p.suffix.lstrip('.').lower()}"
        base, k = name, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        names.append(name)
    return names


# ---------------------------------------------------------------------------- CLI
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
    parser.add_argument("--detect-every", type=int, default=d.detect_every,
                        help=f"run the face detector on every k-th frame, track in between (default {d.detect_every})")
    parser.add_argument("--max-side", type=int, default=d.max_side,
                        help=f"detection resolution, longest side in pixels; 0 = full (default {d.max_side})")
    parser.add_argument("--score-threshold", type=float, default=d.score_threshold,
                        help=f"minimum face confidence (default {d.score_threshold})")
    parser.add_argument("--smooth", type=int, default=d.smooth_window,
                        help=f"landmark moving-average window in frames (default {d.smooth_window})")
    parser.add_argument("--min-face", type=float, default=d.min_face,
                        help=f"windows with a smaller fraction of face frames get no prediction (default {d.min_face})")
    parser.add_argument("--aligned", action="store_true",
                        help="inputs are already aligned face crops (like DFEW frames): skip detection")
    parser.add_argument("--threads", type=arg(int, range="[0, inf)", limit=MAX_THREADS), default=d.threads,
                        help="threads for torch, the detector and OpenCV (default 0: their defaults)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--out", default="predictions", help="output folder (default ./predictions)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the timeline PNG")


def run(args: argparse.Namespace) -> int:
    cfg = PredictConfig(window_seconds=args.window_seconds, stride=args.stride, batch_size=args.batch_size,
                        detect_every=args.detect_every, max_side=args.max_side, score_threshold=args.score_threshold,
                        smooth_window=args.smooth, min_face=args.min_face, aligned=args.aligned,
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
                            classes=args.classes, size=args.size, num_frames=args.num_frames, device=args.device)
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

