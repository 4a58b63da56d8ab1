"""One face per clip: link detections over time, pick the main track, fill gaps, smooth.

DFER corpora label one person per clip (MIDAS paper, Sec. 4.1: detect, align, then sample
frames of that face). This module turns per-frame detections into one landmark track per
clip and aligned crops:

1. **Detect** on every ``detect_every``-th frame (and always the last one).
2. **Link** detections of consecutive detected frames into tracks, greedily by IoU of the
   boxes (a track remembers its last box, so a face that is lost for a while and comes
   back near where it was continues its track).
3. **Select** the track with the largest ``sum over its frames of sqrt(box area)``: a face
   that is both larger and present for longer wins (a passer-by in the background loses
   to the subject, a brief large false positive loses to a long track).
4. **Fill**: frames between two detected frames where the track is present are linearly
   interpolated (``INTERPOLATED``); frames where the track is absent -- or that border a
   detected frame where it is absent -- copy the landmarks of the nearest detection of
   the track (``FILLED``) and are counted: they are the "no face" frames.
5. **Smooth** the landmarks with a centred moving average over ``smooth_window`` frames
   (edges average over the frames that exist), which removes the detector's frame-to-frame
   jitter (its standard deviation drops by about sqrt(window) for independent noise)
   without the lag of a causal filter.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dfer.preprocess.align import FACE_FRACTION, align_face
from dfer.preprocess.detect import Detections, FaceDetector
from dfer.preprocess.face import ALIGN_SIZE, FaceConfig
from dfer.preprocess.video import DecodedFrame, as_rgb

Frame = np.ndarray | DecodedFrame  # an RGB frame, or a decoded one converted when used

__all__ = [
    "FrameSource", "TrackConfig", "FaceTrack", "box_iou", "link_tracks", "select_track",
    "fill_track", "smooth_landmarks", "build_track", "detect_frames", "track_faces",
    "faces_from_frames",
]


class FrameSource(enum.IntEnum):
    """Where a frame's landmarks come from."""

    DETECTED = 0  # the detector ran on this frame and found the track's face
    INTERPOLATED = 1  # skipped by detect_every, between two frames where the face was found
    FILLED = 2  # face lost: landmarks copied from the nearest detection (counted)


@dataclass
class TrackConfig:
    """Temporal settings (the commands make them from their
    :class:`dfer.preprocess.face.FaceConfig`, :meth:`of_face`).

    Attributes:
        detect_every: run the detector on every k-th frame (1 = all frames).
        iou_threshold: minimum box IoU to continue a track.
        smooth_window: frames in the centred moving average of the landmarks (1 = off).
        size: side of the aligned crops.
        face_fraction: see :func:`dfer.preprocess.align.canonical_template`.
    """

    detect_every: int = FaceConfig.detect_every
    iou_threshold: float = 0.3
    smooth_window: int = FaceConfig.smooth_window
    size: int = ALIGN_SIZE
    face_fraction: float = FACE_FRACTION

    @classmethod
    def of_face(cls, face: FaceConfig, **alignment) -> "TrackConfig":
        """The tracking settings of a command's ``face`` settings; ``alignment`` sets the
        other fields (``size``, ``face_fraction``) or overrides ``detect_every`` (a still
        image is detected on its one frame)."""
        return cls(**{"detect_every": face.detect_every, "smooth_window": face.smooth_window, **alignment})


@dataclass
class FaceTrack:
    """The clip's main face over all its frames.

    Attributes:
        landmarks: (T, 5, 2) float32 smoothed landmarks, one row per frame.
        boxes: (T, 4) float32 boxes ``x0, y0, x1, y1`` (filled/interpolated like the landmarks).
        source: (T,) uint8 :class:`FrameSource` codes.
        detected: (T,) bool, True where the detector ran.
    """

    landmarks: np.ndarray
    boxes: np.ndarray
    source: np.ndarray
    detected: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.source)

    @property
    def found(self) -> np.ndarray:
        """(T,) bool: the face is really there (detected or interpolated between detections)."""
        return self.source != FrameSource.FILLED

    @property
    def num_filled(self) -> int:
        return int(np.sum(self.source == FrameSource.FILLED))

    def stats(self) -> dict:
        """Counts for reports: frames, detector runs, hits, detection rate, filled frames."""
        ran = int(self.detected.sum())
        hit = int(np.sum(self.detected & (self.source == FrameSource.DETECTED)))
        return {
            "num_frames": self.num_frames,
            "detected_frames": ran,
            "found_frames": hit,
            "detection_rate": round(hit / ran, 4) if ran else 0.0,
            "interpolated_frames": int(np.sum(self.source == FrameSource.INTERPOLATED)),
            "filled_frames": self.num_filled,
        }


# ---------------------------------------------------------------------------- pure steps
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), xyxy -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def link_tracks(detections: Sequence[Detections], iou_threshold: float = 0.3) -> list[list[tuple[int, int]]]:
    """Greedy IoU linking of detections over a sequence of detected frames.

    Args:
        detections: one :class:`Detections` per detected frame, in time order.
        iou_threshold: minimum IoU between a track's last box and a new box.

    Returns:
        Tracks, each a list of ``(step, detection index)`` in time order, where ``step``
        indexes ``detections``. Tracks are in order of creation.
    """
    tracks: list[list[tuple[int, int]]] = []
    last_box: list[np.ndarray] = []
    for step, det in enumerate(detections):
        if len(det) == 0:
            continue
        unmatched = set(range(len(det)))
        if tracks:
            iou = box_iou(np.stack(last_box), det.boxes)
            # best pairs first; each track and each detection used at most once
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                t, d = divmod(int(flat), iou.shape[1])
                if iou[t, d] < iou_threshold:
                    break
                if d not in unmatched or tracks[t][-1][0] == step:
                    continue
                tracks[t].append((step, d))
                last_box[t] = det.boxes[d]
                unmatched.discard(d)
        for d in sorted(unmatched):
            tracks.append([(step, d)])
            last_box.append(det.boxes[d])
    return tracks


def select_track(tracks: Sequence[Sequence[tuple[int, int]]], detections: Sequence[Detections]) -> int:
    """Index of the main track: the largest ``sum of sqrt(box area)`` over its frames.

    Raises:
        ValueError: if there are no tracks.
    """
    if not tracks:
        raise ValueError("no tracks to select from")

    def weight(track) -> float:
        boxes = np.stack([detections[s].boxes[d] for s, d in track]).astype(np.float64)
        wh = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)
        return float(np.sqrt(wh[:, 0] * wh[:, 1]).sum())

    weights = [weight(t) for t in tracks]
    return int(np.argmax(weights))  # first of equals: deterministic


def fill_track(frame_index: np.ndarray, values: np.ndarray, present: np.ndarray, num_frames: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Spread a track known on detected frames to every frame.

    Args:
        frame_index: (K,) int increasing indices of the detected frames.
        values: (K, ...) float values (landmarks, boxes) on those frames; rows where
            ``present`` is False are ignored.
        present: (K,) bool, the track was found on that detected frame (at least one True).
        num_frames: T.

    Returns:
        ``(filled, source)``: (T, ...) float32 values and (T,) uint8 :class:`FrameSource`.
        Frames strictly between two consecutive detected frames that both have the track
        are interpolated linearly; every other frame without its own detection takes the
        value of the nearest detected frame with the track (the earlier one on ties).
    """
    frame_index = np.asarray(frame_index, np.int64)
    present = np.asarray(present, bool)
    values = np.asarray(values, np.float64)
    if not present.any():
        raise ValueError("the track is present on no detected frame")
    out = np.empty((num_frames,) + values.shape[1:], np.float64)
    source = np.full(num_frames, FrameSource.FILLED, np.uint8)

    hits = frame_index[present]
    hit_values = values[present]
    # nearest hit for every frame (earlier on ties)
    t = np.arange(num_frames)
    right = np.clip(np.searchsorted(hits, t, side="left"), 0, len(hits) - 1)
    left = np.clip(right - 1, 0, len(hits) - 1)
    use_left = np.abs(t - hits[left]) <= np.abs(hits[right] - t)
    nearest = np.where(use_left, left, right)
    out[:] = hit_values[nearest]

    source[hits] = FrameSource.DETECTED
    for k in range(len(frame_index) - 1):
        a, b = frame_index[k], frame_index[k + 1]
        if b - a > 1 and present[k] and present[k + 1]:
            w = ((np.arange(a + 1, b) - a) / (b - a)).reshape((-1,) + (1,) * (values.ndim - 1))
            out[a + 1:b] = (1 - w) * values[k] + w * values[k + 1]
            source[a + 1:b] = FrameSource.INTERPOLATED
    return out.astype(np.float32), source


def smooth_landmarks(landmarks: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred moving average over time.

    Args:
        landmarks: (T, ...) float values per frame.
        window: frames averaged (odd; an even value is rounded up; 1 = unchanged).
            Near the clip's ends the average runs over the frames that exist.

    Returns:
        (T, ...) float32.
    """
    x = np.asarray(landmarks, np.float64)
    if window <= 1 or len(x) <= 1:
        return x.astype(np.float32)
    half = window // 2
    csum = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0)])
    t = np.arange(len(x))
    lo = np.clip(t - half, 0, len(x))
    hi = np.clip(t + half + 1, 0, len(x))
    count = (hi - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return ((csum[hi] - csum[lo]) / count).astype(np.float32)


def detection_steps(num_frames: int, detect_every: int) -> np.ndarray:
    """Frames the detector runs on: every ``detect_every``-th, and always the last."""
    idx = np.arange(0, num_frames, max(1, detect_every))
    if num_frames and idx[-1] != num_frames - 1:
        idx = np.append(idx, num_frames - 1)
    return idx


def build_track(frame_index: np.ndarray, detections: Sequence[Detections], num_frames: int,
                config: TrackConfig | None = None) -> FaceTrack | None:
    """Link, select, fill and smooth; ``None`` when no face was detected at all.

    Args:
        frame_index: (K,) indices of the frames the detector ran on.
        detections: K :class:`Detections`.
        num_frames: T, frames in the clip.
    """
    cfg = config or TrackConfig()
    tracks = link_tracks(detections, cfg.iou_threshold)
    if not tracks:
        return None
    main = tracks[select_track(tracks, detections)]
    K = len(frame_index)
    lms = np.zeros((K, 5, 2), np.float32)
    boxes = np.zeros((K, 4), np.float32)
    present = np.zeros(K, bool)
    for step, d in main:
        lms[step] = detections[step].landmarks[d]
        boxes[step] = detections[step].boxes[d]
        present[step] = True
    landmarks, source = fill_track(frame_index, lms, present, num_frames)
    full_boxes, _ = fill_track(frame_index, boxes, present, num_frames)
    detected = np.zeros(num_frames, bool)
    detected[np.asarray(frame_index, np.int64)] = True
    return FaceTrack(smooth_landmarks(landmarks, cfg.smooth_window), full_boxes, source, detected)


# ---------------------------------------------------------------------------- frames
def detect_frames(frames: Iterable[Frame], detector: FaceDetector, detect_every: int = 1,
                  keep: Callable[[Frame], bool] | None = None
                  ) -> tuple[np.ndarray, list[Detections], int]:
    """Run ``detector`` on every ``detect_every``-th frame of a stream (and on its last frame).

    Args:
        frames: iterable of RGB uint8 (H, W, 3) frames (or
            :class:`dfer.preprocess.video.DecodedFrame`, converted only when detected),
            consumed once.
        detector: a :class:`FaceDetector`.
        detect_every: detection stride k.
        keep: optional callback given every frame in order (e.g. to cache them).

    Returns:
        ``(frame_index (K,) int64, detections (K,), num_frames T)``.
    """
    k = max(1, int(detect_every))
    index: list[int] = []
    dets: list[Detections] = []
    last: tuple[int, Frame] | None = None
    t = -1
    for t, frame in enumerate(frames):
        if keep is not None:
            keep(frame)
        if t % k == 0:
            index.append(t)
            dets.append(detector.detect(as_rgb(frame)))
            last = None
        else:
            last = (t, frame)
    if last is not None:  # the last frame anchors interpolation at the clip's end
        index.append(last[0])
        dets.append(detector.detect(as_rgb(last[1])))
    return np.asarray(index, np.int64), dets, t + 1


def track_faces(frames: Iterable[Frame], detector: FaceDetector, config: TrackConfig | None = None,
                keep: Callable[[Frame], bool] | None = None) -> tuple[FaceTrack | None, int]:
    """Detect on a frame stream and build the main face track.

    Returns:
        ``(track or None when no face was found, num_frames)``.
    """
    cfg = config or TrackConfig()
    index, dets, n = detect_frames(frames, detector, cfg.detect_every, keep)
    return build_track(index, dets, n, cfg), n


def align_frames(frames: Iterable[Frame], track: FaceTrack, config: TrackConfig | None = None,
                 wanted: np.ndarray | None = None) -> Iterator[np.ndarray | None]:
    """Yield the aligned (size, size, 3) uint8 crop of every frame of the track; with
    ``wanted`` (a bool mask over the track's frames) None for the frames it leaves out,
    which are not warped at all."""
    cfg = config or TrackConfig()
    for t, frame in enumerate(frames):
        if t >= track.num_frames:
            break
        if wanted is not None and not (t < len(wanted) and wanted[t]):
            yield None
            continue
        yield align_face(as_rgb(frame), track.landmarks[t], cfg.size, cfg.face_fraction)


def faces_from_frames(frames: Iterable[Frame] | Callable[[], Iterable[Frame]], detector: FaceDetector,
                      config: TrackConfig | None = None, cache_bytes: int = 1 << 29,
                      wanted: Callable[[int], np.ndarray] | None = None
                      ) -> tuple[Iterator[np.ndarray | None], FaceTrack | None]:
    """Aligned crops of the clip's main face, for preprocessing and for ``dfer predict``.

    Selecting the main track and smoothing need the whole clip before the first crop can
    be made, so the frames are read twice: ``frames`` may be a zero-argument callable
    returning a fresh iterator (e.g. ``lambda: iter_frames(path)``); frames are kept in
    memory up to ``cache_bytes`` and re-read from the callable beyond that, so long
    videos never sit in memory. A plain iterable is read once and kept whole.

    Args:
        frames: RGB uint8 (H, W, 3) frames (or :class:`dfer.preprocess.video.DecodedFrame`,
            converted only where detected or aligned), or a callable returning them.
        detector: a :class:`FaceDetector`.
        config: :class:`TrackConfig`.
        cache_bytes: memory budget for the frame cache when ``frames`` is callable.
        wanted: given the :class:`FaceTrack` (its ``num_frames`` T, its ``found`` flags), a
            bool mask (T,) of the frames whose crops the caller will use (``dfer predict``:
            the frames its windows sample);
            the others are not warped and come out as None. None: every frame.

    Returns:
        ``(crops, track)``: an iterator over T uint8 (size, size, 3) crops, None where
        ``wanted`` leaves a frame out (empty when no face was found) and the :class:`FaceTrack` (``None`` when no face was found);
        ``track.found`` is the per-frame flag, ``track.stats()`` the counts.
    """
    cfg = config or TrackConfig()
    reopen = frames if callable(frames) else None
    cache: list[Frame] | None = []
    used = 0

    def keep(frame: Frame) -> bool:
        nonlocal cache, used
        if cache is not None:
            used += frame.nbytes
            if reopen is not None and used > cache_bytes:
                cache = None  # over budget: read again in the second pass
            else:
                cache.append(frame)
        return True

    track, _ = track_faces(reopen() if reopen else frames, detector, cfg, keep)
    if track is None:
        return iter(()), None
    second = cache if cache is not None else reopen()
    mask = None
    if wanted is not None:
        mask = np.asarray(wanted(track), bool)
        if mask.shape != (track.num_frames,):
            raise ValueError(f"wanted(track) gave a mask of shape {mask.shape}, expected ({track.num_frames},)")
    return align_frames(second, track, cfg, mask), track
