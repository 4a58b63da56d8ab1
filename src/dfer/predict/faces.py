"""The face of each frame of a ``dfer predict`` input: detected, tracked and aligned by
the face pipeline of ``dfer preprocess`` (:mod:`dfer.preprocess.face`), with predict's
settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dfer.data.decode import list_frame_files, probe_num_frames
from dfer.predict.media import _Media
from dfer.predict.settings import PredictConfig
from dfer.predict.timing import _TimedDetector, _Timer
from dfer.preprocess.face import ALIGN_SIZE


def make_detector(cfg: PredictConfig):
    """The face detector ``dfer predict`` uses with ``cfg`` (RetinaFace, offline); make it
    once and pass it to every :func:`predict_file` call."""
    from dfer.preprocess.detect import detector_for

    return detector_for(cfg, cfg.threads or max(1, torch.get_num_threads()))


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
    tcfg = TrackConfig.of_face(cfg, detect_every=cfg.detect_every if kind == "video" else 1, size=ALIGN_SIZE)
    source = media.frames if kind == "video" else list(media.frames())
    crops, track = faces_from_frames(source, _TimedDetector(detector, timer), tcfg,
                                     wanted=lambda t: wanted(t.num_frames, t.found))
    if track is None:
        return None
    return track.num_frames, track.found, track.stats(), crops
