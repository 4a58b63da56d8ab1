"""The face pipeline's settings, shared by ``dfer preprocess`` and ``dfer predict``.

Both commands find one face per clip the same way (MIDAS, Sec. 4.1: detect, then align):
RetinaFace on every ``detect_every``-th frame at ``max_side`` pixels, detections above
``score_threshold`` linked into one track whose landmarks are smoothed over
``smooth_window`` frames (:mod:`dfer.preprocess.detect`, :mod:`dfer.preprocess.track`),
then aligned to :data:`ALIGN_SIZE`-pixel crops (:mod:`dfer.preprocess.align`).
:class:`FaceConfig` declares these settings once, with the values each accepts; each
command's config inherits it, and :func:`dfer.preprocess.detect.detector_for` and
:meth:`dfer.preprocess.track.TrackConfig.of_face` turn it into the detector and the
tracking settings.

The defaults are ``dfer preprocess``'s (it writes the training frames: every frame
detected, at 480 px) and those of :class:`~dfer.preprocess.detect.DetectorConfig` and
:class:`~dfer.preprocess.track.TrackConfig`. ``dfer predict`` keeps its own faster
``detect_every`` and ``max_side``, declared with :func:`with_default` on its config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dfer.config import setting

__all__ = ["ALIGN_SIZE", "FaceConfig", "with_default", "add_face_options", "face_options"]

#: side of the aligned crops of ``dfer preprocess`` (its default ``--size``) and of ``dfer
#: predict``: DFEW's own frames, i.e. the training data's
ALIGN_SIZE = 256


@dataclass
class FaceConfig:
    """Detection and tracking settings of one face per clip.

    Attributes:
        detect_every: run the face detector on every k-th frame, interpolate the landmarks
            between (1 = every frame).
        max_side: detection resolution: the frame is shrunk (never enlarged) so its longest
            side is at most this many pixels; 0 = full resolution.
        score_threshold: minimum face confidence (RetinaFace's usual 0.9).
        smooth_window: centred moving average of the landmarks, in frames (1 = off).
    """

    detect_every: int = setting(1, range="[1, inf)")
    max_side: int = setting(480, range=("[0, 0]", "[64, inf)"), expect="0 or >= 64")
    score_threshold: float = setting(0.9, range="(0, 1)")
    smooth_window: int = setting(5, range="[1, inf)", option="--smooth")


def with_default(name: str, default: Any) -> Any:
    """:class:`FaceConfig`'s field ``name`` for a command whose default differs; what the
    field accepts stays declared once, on :class:`FaceConfig`."""
    return dataclasses.field(default=default, metadata=FaceConfig.__dataclass_fields__[name].metadata)


def add_face_options(parser, defaults: FaceConfig) -> None:
    """The command-line options of :class:`FaceConfig`, with a command's ``defaults``."""
    d = defaults
    parser.add_argument("--detect-every", type=int, default=d.detect_every,
                        help=f"run the face detector on every k-th frame, interpolate the landmarks between "
                             f"(default {d.detect_every})")
    parser.add_argument("--max-side", type=int, default=d.max_side,
                        help=f"detection resolution, longest side in pixels; 0 = full (default {d.max_side})")
    parser.add_argument("--score-threshold", type=float, default=d.score_threshold,
                        help=f"minimum face confidence (default {d.score_threshold})")
    parser.add_argument("--smooth", type=int, default=d.smooth_window,
                        help=f"landmark moving-average window in frames; 1 = off (default {d.smooth_window})")


def face_options(args) -> dict[str, Any]:
    """The :class:`FaceConfig` fields of a command's parsed options (:func:`add_face_options`)."""
    return {"detect_every": args.detect_every, "max_side": args.max_side, "score_threshold": args.score_threshold,
            "smooth_window": args.smooth}
