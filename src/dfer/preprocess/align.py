"""5-point similarity alignment of faces to a canonical template.

The paper (MIDAS, Sec. 4.1) aligns the detected face with an affine transform of its
landmarks before sampling frames; DFEW ships such aligned frames at 256x256. dfer fits a
similarity transform ``x' = s R x + t`` (4 degrees of freedom: scale, rotation, shift;
no shear, so the face keeps its proportions) from the 5 detected landmarks to the 5
points of a template, by least squares, and warps the frame with it.

Template: the ArcFace 5-point template (Deng et al., "ArcFace", CVPR 2019; insightface's
``arcface_dst``) defined on a 112x112 crop::

    left eye (38.2946, 51.6963)   right eye (73.5318, 51.5014)   nose (56.0252, 71.7366)
    left mouth (41.5493, 92.3655) right mouth (70.7299, 92.2041)

That crop is tight (it cuts the forehead and the chin), so dfer shrinks the 112-box about
its centre to ``face_fraction`` of the output side and places it in the middle:
``p_out = size * (0.5 + face_fraction * (p_112 / 112 - 0.5))``. The default
``face_fraction = 0.7`` shows the whole face with a margin of hair and background, like
DFEW's frames; at 256x256 the eyes land at (99.7, 121.1) and (156.1, 120.8), the nose at
(128.0, 153.2) and the mouth corners at (104.9, 186.2) and (151.6, 185.9).
"""

from __future__ import annotations

import cv2
import numpy as np

from dfer.preprocess.face import ALIGN_SIZE

__all__ = ["ARCFACE_TEMPLATE_112", "FACE_FRACTION", "canonical_template", "similarity_transform", "align_face"]

#: ArcFace 5-point template on a 112x112 crop, float32 (5, 2), order as in detect.Detections
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


#: share of the aligned crop's side that ArcFace's 112-px box covers in ``dfer preprocess``'s
#: and ``dfer predict``'s faces (the whole face with a margin, like DFEW's frames)
FACE_FRACTION = 0.7


def canonical_template(size: int = ALIGN_SIZE, face_fraction: float = FACE_FRACTION) -> np.ndarray:
    """The template scaled to a ``size`` x ``size`` crop.

    Args:
        size: output side in pixels.
        face_fraction: fraction of the output side covered by ArcFace's 112-box (1.0 =
            ArcFace's tight crop; smaller = more margin around the face).

    Returns:
        (5, 2) float32 pixel coordinates of left eye, right eye, nose, left and right mouth corners.
    """
    if not 0 < face_fraction <= 2:
        raise ValueError(f"face_fraction must be in (0, 2], got {face_fraction}")
    return (size * (0.5 + face_fraction * (ARCFACE_TEMPLATE_112 / 112.0 - 0.5))).astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst``.

    Uses ``cv2.estimateAffinePartial2D`` with a RANSAC threshold so large that every point
    is an inlier: its final Levenberg-Marquardt refinement then fits all 5 points, which
    is what alignment wants (dropping a landmark as an "outlier" makes the crop jump).

    Args:
        src: (N, 2) float points in the source image, N >= 2.
        dst: (N, 2) float target points.

    Returns:
        (2, 3) float64 matrix ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``.
    """
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    if len(src) != len(dst) or len(src) < 2:
        raise ValueError(f"Expected two (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}")
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1e9,
                                            maxIters=1, confidence=0.5, refineIters=50)
    if matrix is None:
        # degenerate input (all points equal): identity keeps the pipeline total
        matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 256, face_fraction: float = FACE_FRACTION,
               template: np.ndarray | None = None) -> np.ndarray:
    """Warp ``image`` so the face's 5 landmarks land on the canonical template.

    Args:
        image: RGB uint8 (H, W, 3).
        landmarks: (5, 2) float landmarks in ``image`` pixels (detect.Detections order).
        size: output side.
        face_fraction: see :func:`canonical_template`.
        template: (5, 2) target points; overrides ``size``/``face_fraction`` placement.

    Returns:
        RGB uint8 (size, size, 3); pixels outside the frame are black.
    """
    dst = canonical_template(size, face_fraction) if template is None else np.asarray(template, np.float32)
    matrix = similarity_transform(landmarks, dst)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
