"""The settings of ``dfer predict``."""

from __future__ import annotations

from dataclasses import dataclass

from dfer.config import check_settings, setting
from dfer.preprocess.face import FaceConfig, with_default

__all__ = ["PredictConfig"]


@dataclass
class PredictConfig(FaceConfig):
    """Settings of ``dfer predict`` (the model's ``size`` and ``num_frames`` come from the run).

    The face pipeline's settings are :class:`dfer.preprocess.face.FaceConfig`'s (what each
    accepts is declared there), two of them with defaults of their own.

    Attributes:
        detect_every: run the face detector on every k-th frame, track in between. 3 here,
            1 in ``dfer preprocess``, which writes training frames: predict is run on whole
            videos and interpolates the landmarks between detections for speed.
        max_side: detection resolution (longest side in pixels); 0 = full resolution. 320
            here, 480 in ``dfer preprocess`` (what 480 finds:
            :class:`dfer.preprocess.detect.DetectorConfig`): predict gives up the smallest
            faces for speed.
        score_threshold: minimum face confidence.
        smooth_window: centred moving average of the landmarks, in frames.
        window_seconds: seconds of video one window covers.
        stride: frames between window starts; None = the window length (no overlap).
        batch_size: windows per forward pass.
        min_face: windows with a smaller fraction of face frames get no distribution.
        aligned: the inputs are already aligned face crops (e.g. DFEW frames): no detection.
        threads: threads for torch, onnxruntime and OpenCV; 0 = their defaults.
        plot: write the timeline PNG.
    """

    detect_every: int = with_default("detect_every", 3)
    max_side: int = with_default("max_side", 320)
    window_seconds: float = setting(2.0, range="(0, inf)")
    stride: int | None = setting(None, range="[1, inf)", expect=">= 1 frame")
    batch_size: int = setting(8, range="[1, inf)")
    min_face: float = setting(0.5, range="[0, 1]")
    aligned: bool = False
    threads: int = setting(0, range="[0, inf)")
    plot: bool = True

    def validate(self) -> "PredictConfig":
        """``self``, each setting checked (a bad one is named by its option, ``--min-face``)."""
        return check_settings(self, options=True)
