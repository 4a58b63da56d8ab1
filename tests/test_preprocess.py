"""Face detection, alignment, tracking and decoding (dfer.preprocess).

Unit tests use synthetic landmarks and boxes with known answers; the real-video tests use
the face videos in tests/data/videos.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from dfer.errors import DataError
from dfer.preprocess.align import ARCFACE_TEMPLATE_112, align_face, canonical_template, similarity_transform
from dfer.preprocess.detect import Detections, DetectorConfig, FaceDetector, RetinaFaceDetector
from dfer.preprocess.track import (
    FrameSource, TrackConfig, box_iou, build_track, detection_steps, faces_from_frames, fill_track,
    link_tracks, select_track, smooth_landmarks,
)
from dfer.preprocess.video import iter_decoded, iter_frames, probe_video, read_ahead


def _similarity(scale: float, angle: float, shift) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def _apply(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ matrix[:, :2].T + matrix[:, 2]


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector(DetectorConfig(num_threads=1))


@pytest.fixture(scope="module")
def single_face(videos_dir):
    return videos_dir / "single_face.mp4"


# ---------------------------------------------------------------------------- alignment
def test_template_is_arcface_at_full_fraction_and_centred_with_margin():
    np.testing.assert_allclose(canonical_template(112, 1.0), ARCFACE_TEMPLATE_112, atol=1e-4)
    t = canonical_template(256, 0.7)
    # a margin shrinks the face about the crop centre: distances to (128, 128) scale by 0.7*256/112
    np.testing.assert_allclose(t - 128, (ARCFACE_TEMPLATE_112 - 56) * 0.7 * 256 / 112, atol=1e-3)
    assert abs((t[0, 0] + t[1, 0]) / 2 - 128) < 0.5  # eyes centred horizontally


@pytest.mark.parametrize("scale,angle,shift", [(1.0, 0.0, (0, 0)), (0.37, 0.4, (12.5, -80)), (2.6, -1.1, (300, 7))])
def test_similarity_transform_recovers_a_known_transform(scale, angle, shift):
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 400, size=(5, 2))
    truth = _similarity(scale, angle, shift)
    matrix = similarity_transform(src, _apply(truth, src))
    np.testing.assert_allclose(matrix, truth, atol=1e-4)


def test_similarity_transform_is_least_squares_over_all_points():
    # with one landmark off by 30 px a robust fit would drop it; alignment must not
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, size=(5, 2))
    dst = _apply(_similarity(1.3, 0.2, (5, 9)), src)
    dst[2] += 30
    matrix = similarity_transform(src, dst)
    a = np.zeros((10, 4))
    a[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)]
    a[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(5), np.ones(5)]
    p = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)[0]
    np.testing.assert_allclose(matrix, [[p[0], -p[1], p[2]], [p[1], p[0], p[3]]], atol=1e-3)


def test_align_face_puts_landmarks_on_the_template():
    size = 256
    tmpl = canonical_template(size)
    # landmarks somewhere in a 640x480 frame, related to the template by a known similarity
    inverse = cv2.invertAffineTransform(_similarity(0.6, 0.3, (40, 10)))
    lms = _apply(inverse, tmpl)
    image = np.zeros((480, 640, 3), np.uint8)
    for x, y in lms:
        cv2.circle(image, (int(round(x)), int(round(y))), 6, (255, 255, 255), -1, lineType=cv2.LINE_AA)
    crop = align_face(image, lms, size=size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    gray = crop[..., 0].astype(np.float64)
    for x, y in tmpl:  # centre of mass of each blob lands on its template point
        x0, y0 = int(x) - 12, int(y) - 12
        patch = gray[y0:y0 + 25, x0:x0 + 25]
        yy, xx = np.mgrid[y0:y0 + 25, x0:x0 + 25]
        assert abs((patch * xx).sum() / patch.sum() - x) < 0.6
        assert abs((patch * yy).sum() / patch.sum() - y) < 0.6


# ---------------------------------------------------------------------------- tracking
def _det(boxes, score=0.99) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    lms = np.stack([np.stack([cx + dx, cy + dy], -1) for dx, dy in
                    [(-10, -10), (10, -10), (0, 0), (-8, 10), (8, 10)]], 1).astype(np.float32)
    return Detections(boxes, np.full(len(boxes), score, np.float32), lms)


def test_box_iou_reference_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.25]])


def test_tracker_keeps_the_largest_continuous_face():
    # face A: large but seen on 3 of 20 frames; face B: medium, every frame; C: small, every frame
    big, mid, small = [300, 50, 500, 250], [20, 40, 140, 160], [560, 300, 600, 340]
    dets = [_det([big, mid, small] if t in (3, 4, 5) else [mid, small]) for t in range(20)]
    tracks = link_tracks(dets)
    assert len(tracks) == 3
    main = tracks[select_track(tracks, dets)]
    assert len(main) == 20
    assert all(np.array_equal(dets[s].boxes[d], np.float32(mid)) for s, d in main)
    # and size wins between two faces present equally long
    dets = [_det([small, big]) for _ in range(5)]
    tracks = link_tracks(dets)
    main = tracks[select_track(tracks, dets)]
    assert all(np.array_equal(dets[s].boxes[d], np.float32(big)) for s, d in main)


def test_tracker_follows_a_moving_face_and_fills_lost_frames():
    # the face moves 4 px per frame, is lost on frames 5-7, a second small face appears on 6-9
    T = 12
    dets = []
    for t in range(T):
        boxes = [] if t in (5, 6, 7) else [[100 + 4 * t, 100, 220 + 4 * t, 240]]
        if 6 <= t <= 9:
            boxes.append([500, 20, 530, 50])
        dets.append(_det(boxes) if boxes else Detections.empty())
    track = build_track(np.arange(T), dets, T, TrackConfig(smooth_window=1))
    assert track.num_filled == 3
    assert list(np.flatnonzero(~track.found)) == [5, 6, 7]
    # filled frames copy the nearest detection of the main track (earlier on ties), never the other face
    np.testing.assert_allclose(track.boxes[5], dets[4].boxes[0])
    np.testing.assert_allclose(track.boxes[6], dets[4].boxes[0])
    np.testing.assert_allclose(track.boxes[7], dets[8].boxes[0])
    assert track.stats() == {"num_frames": 12, "detected_frames": 12, "found_frames": 9, "detection_rate": 0.75,
                             "interpolated_frames": 0, "filled_frames": 3}
    assert build_track(np.arange(3), [Detections.empty()] * 3, 3) is None


def test_fill_track_interpolates_between_subsampled_detections():
    idx = detection_steps(10, 3)
    assert idx.tolist() == [0, 3, 6, 9]
    values = np.array([[0.0], [30.0], [60.0], [90.0]])
    present = np.array([True, True, False, True])
    out, source = fill_track(idx, values, present, 10)
    np.testing.assert_allclose(out[:4, 0], [0, 10, 20, 30])  # exact linear interpolation
    assert source.tolist() == [FrameSource.DETECTED, 1, 1, 0, 2, 2, 2, 2, 2, 0]
    np.testing.assert_allclose(out[4:9, 0], [30, 30, 30, 90, 90])  # nearest found detection
    assert detection_steps(7, 3).tolist() == [0, 3, 6]


def test_smoothing_reduces_jitter_and_keeps_linear_motion():
    rng = np.random.default_rng(0)
    T = 400
    motion = np.linspace(0, 200, T)[:, None, None] * np.ones((1, 5, 2))
    noisy = motion + rng.normal(0, 2.0, size=motion.shape)
    smooth = smooth_landmarks(noisy, 5)
    np.testing.assert_allclose(smooth_landmarks(motion, 5)[2:-2], motion[2:-2], atol=1e-4)  # no lag
    jitter_before = np.std(np.diff(noisy - motion, axis=0))
    jitter_after = np.std(np.diff(smooth - motion, axis=0))
    # consecutive 5-frame means differ by (x[t+3] - x[t-2]) / 5: a fifth of the raw jitter
    assert jitter_after < jitter_before / 3
    residual = np.std((smooth - motion)[2:-2])
    assert residual == pytest.approx(2.0 / np.sqrt(5), rel=0.1)
    np.testing.assert_array_equal(smooth_landmarks(noisy, 1), noisy.astype(np.float32))


# ---------------------------------------------------------------------------- real videos
def test_video_probe_and_decode(single_face):
    info = probe_video(single_face)
    assert (info.width, info.height, info.num_frames, info.codec) == (640, 360, 72, "h264")
    frames = list(iter_frames(single_face))
    assert len(frames) == 72 and frames[0].shape == (360, 640, 3) and frames[0].dtype == np.uint8


def test_corrupt_and_missing_videos_raise_data_errors(tmp_path, single_face):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(single_face.read_bytes()[:4000])
    with pytest.raises(DataError, match=r"broken\.mp4: cannot open video"):
        list(iter_frames(bad))
    with pytest.raises(DataError, match=r"nope\.mp4: video file not found"):
        probe_video(tmp_path / "nope.mp4")


def test_retinaface_landmark_order_and_resolution_mapping(single_face, detector):
    frame = next(iter(iter_frames(single_face)))
    assert isinstance(detector, FaceDetector)
    det = detector.detect(frame)
    assert len(det) == 1 and det.scores[0] > 0.9
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = det.landmarks[0]
    assert lx < nx < rx and mlx < mrx  # image-left eye and mouth corner come first
    assert max(ly, ry) < ny < min(mly, mry)  # eyes above the nose above the mouth
    x0, y0, x1, y1 = det.boxes[0]
    assert (det.landmarks[0, :, 0] > x0).all() and (det.landmarks[0, :, 0] < x1).all()
    assert (det.landmarks[0, :, 1] > y0).all() and (det.landmarks[0, :, 1] < y1).all()
    # detecting at half resolution maps back onto the full-resolution answer; the tolerance
    # is the small network's own resolution-dependent noise (measured <= 10 px), while a
    # mapping error (a missed 1/scale, padding offset) would be off by ~100 px
    full = RetinaFaceDetector(DetectorConfig(max_side=0)).detect(frame)
    half = RetinaFaceDetector(DetectorConfig(max_side=320)).detect(frame)
    np.testing.assert_allclose(half.landmarks, full.landmarks, atol=12)
    np.testing.assert_allclose(half.boxes, full.boxes, atol=15)
    assert abs(half.landmarks[0, 1, 0] - half.landmarks[0, 0, 0]) > 0.8 * abs(full.landmarks[0, 1, 0] - full.landmarks[0, 0, 0])


def test_single_face_aligns_eyes_onto_the_template(single_face, detector):
    crops, track = faces_from_frames(lambda: iter_frames(single_face), detector, TrackConfig())
    crops = list(crops)
    assert len(crops) == 72 and track.num_filled == 0
    assert track.stats()["detection_rate"] == 1.0
    tmpl = canonical_template(256)
    redetect = RetinaFaceDetector(DetectorConfig(max_side=0))
    errors = []
    for crop in crops[::4]:
        det = redetect.detect(crop)
        assert len(det) >= 1
        errors.append(np.linalg.norm(det.landmarks[0, :2] - tmpl[:2], axis=1))
    errors = np.asarray(errors)
    # pixels in the 256x256 crop (the eyes are 74 px apart): detector noise at 480 px plus
    # RetinaFace's own landmark convention vs the ArcFace template
    assert errors.mean() < 5.0, errors.mean()
    assert errors.max() < 8.0, errors.max()


def test_wanted_frames_alone_are_aligned_and_equal_the_full_alignment(single_face, detector, monkeypatch):
    import dfer.preprocess.track as track_module

    frames = list(iter_frames(single_face))
    full, _ = faces_from_frames(frames, detector, TrackConfig())
    full = list(full)
    warped = []
    real_align = track_module.align_face
    monkeypatch.setattr(track_module, "align_face", lambda image, *a, **k: warped.append(1) or real_align(image, *a, **k))
    asked = []

    def wanted(track):
        asked.append(track.num_frames)
        return np.arange(track.num_frames) % 9 == 4

    some, track = faces_from_frames(frames, detector, TrackConfig(), wanted=wanted)
    some = list(some)
    assert asked == [track.num_frames] == [72] and len(some) == 72
    assert len(warped) == 8  # frames 4, 13, ..., 67: nothing else is warped
    for t, crop in enumerate(some):
        if t % 9 == 4:
            np.testing.assert_array_equal(crop, full[t])
        else:
            assert crop is None


def test_lazy_frames_convert_only_what_is_detected_or_aligned_and_give_the_same_crops(single_face, detector):
    from dfer.preprocess.video import DecodedFrame, as_rgb, iter_decoded

    eager = list(iter_frames(single_face))
    lazy = list(iter_decoded(single_face))  # the container is closed: frames outlive it
    assert len(lazy) == len(eager) == 72 and all(isinstance(f, DecodedFrame) for f in lazy)
    assert (lazy[0].height, lazy[0].width) == eager[0].shape[:2] and [f.index for f in lazy] == list(range(72))
    assert lazy[0].nbytes == eager[0].nbytes  # 8-bit 4:2:0 holds less than its RGB: charged as RGB
    wanted = lambda track: np.arange(track.num_frames) % 10 == 5  # noqa: E731
    crops_e, track_e = faces_from_frames(eager, detector, TrackConfig(detect_every=3), wanted=wanted)
    crops_l, track_l = faces_from_frames(lazy, detector, TrackConfig(detect_every=3), wanted=wanted)
    np.testing.assert_array_equal(track_l.landmarks, track_e.landmarks)
    for a, b in zip(crops_l, crops_e):
        assert (a is None and b is None) or np.array_equal(a, b)
    converted = [t for t, f in enumerate(lazy) if f.converted]
    detected = set(range(0, 72, 3)) | {71}
    assert set(converted) == detected | set(range(5, 72, 10))  # nothing else was converted
    np.testing.assert_array_equal(as_rgb(lazy[1]), eager[1])  # a late conversion gives the same pixels


@pytest.mark.parametrize("error", ["ffmpeg", "value"])
def test_a_frame_that_cannot_be_converted_is_one_data_error_naming_the_file_and_frame(error):
    import av

    from dfer.preprocess.video import DecodedFrame

    class Picture:  # a decoded picture
        width, height, planes = 4, 2, ()

    def convert(picture):  # whose conversion fails, as an odd pixel format's does
        raise (av.error.InvalidDataError(1094995529, "Invalid data found") if error == "ffmpeg"
               else ValueError("Conversion from yuv444p16le to rgb24 is not supported"))

    frame = DecodedFrame(Picture(), "/videos/clip.mov", 17, convert)
    with pytest.raises(DataError, match=r"^/videos/clip\.mov: (cannot convert frame 17 to RGB|unsupported video)"):
        frame.rgb()
    assert not frame.converted and frame.nbytes == 4 * 2 * 3


def test_a_wanted_mask_of_the_wrong_length_is_refused(single_face, detector):
    with pytest.raises(ValueError, match=r"wanted\(track\) gave a mask of shape \(70,\), expected \(72,\)"):
        faces_from_frames(list(iter_frames(single_face)), detector, TrackConfig(),
                          wanted=lambda t: np.ones(t.num_frames - 2, bool))


def test_detect_every_interpolates_between_detections(single_face, detector):
    _, every = faces_from_frames(lambda: iter_frames(single_face), detector, TrackConfig(detect_every=1))
    _, sparse = faces_from_frames(list(iter_frames(single_face)), detector, TrackConfig(detect_every=4))
    assert sparse.stats()["detected_frames"] == 19  # frames 0, 4, ..., 68 and the last one
    assert sparse.stats()["interpolated_frames"] == 72 - 19 and sparse.num_filled == 0
    eye_gap = np.abs(sparse.landmarks[:, :2] - every.landmarks[:, :2]).max()
    assert eye_gap < 6.0, eye_gap


def test_no_face_video_gives_no_track(videos_dir, detector):
    crops, track = faces_from_frames(lambda: iter_frames(videos_dir / "no_face.mp4"), detector,
                                     TrackConfig(detect_every=2))
    assert track is None and list(crops) == []


@pytest.mark.slow
def test_hevc_video_with_a_face_that_leaves_counts_the_lost_frames(videos_dir, detector):
    path = videos_dir / "face_noface.mov"
    assert probe_video(path).codec == "hevc"
    crops, track = faces_from_frames(lambda: iter_frames(path), detector, TrackConfig(detect_every=2))
    assert sum(1 for _ in crops) == track.num_frames == 169
    filled = track.num_filled
    assert 0 < filled < 169
    # the face is there at the start and gone at the end: the lost frames are one block at the end
    assert track.found[:60].all() and not track.found[-40:].any()
    assert np.all(np.diff(track.found.astype(int)) <= 0)


# ----------------------------------------------------------------------- read-ahead
def test_read_ahead_gives_the_items_in_order_and_stays_within_its_depth():
    made, taken = [], []

    def items():
        for i in range(60):
            made.append(i)
            yield i

    out = []
    for item in read_ahead(items(), depth=3):
        out.append(item)
        taken.append(item)
        time.sleep(0.001)
        # at most depth items queued, one in the producer's hand, one just handed over
        assert len(made) - len(taken) <= 3 + 1
    assert out == list(range(60))


def test_read_ahead_raises_the_sources_error_where_it_happened():
    def items():
        yield from range(3)
        raise DataError("clip.mp4: decoding failed at frame 3")

    got = []
    with pytest.raises(DataError, match="frame 3"):
        for item in read_ahead(items(), depth=8):
            got.append(item)
    assert got == [0, 1, 2]


def test_closing_read_ahead_stops_its_thread_and_closes_the_source_there():
    closed_in = []

    def items():
        try:
            for i in range(10_000):
                yield i
        finally:
            closed_in.append(threading.current_thread().name)

    stream = read_ahead(items(), depth=2)
    assert [next(stream), next(stream)] == [0, 1]
    stream.close()
    assert closed_in == ["dfer-read-ahead"]
    assert not [t for t in threading.enumerate() if t.name == "dfer-read-ahead"]


def test_read_ahead_raises_an_iterable_that_cannot_start():
    class Broken:
        def __iter__(self):
            raise OSError("cannot open the source")

    with pytest.raises(OSError, match="cannot open the source"):
        list(read_ahead(Broken(), depth=2))


def test_read_ahead_of_depth_0_runs_in_the_callers_thread():
    where = []

    def items():
        where.append(threading.current_thread())
        yield 1

    assert list(read_ahead(items(), depth=0)) == [1]
    assert where == [threading.current_thread()]


def test_one_converter_for_a_stream_gives_pyavs_pixels_and_frames_that_stay_apart(videos_dir):
    import av

    from dfer.data.decode import RgbConverter

    convert = RgbConverter()
    with av.open(str(videos_dir / "single_face.mp4")) as container:
        pictures = list(container.decode(video=0))[:12]
    arrays = [convert(p) for p in pictures]  # all kept: no array may be a later one's buffer
    for picture, array in zip(pictures, arrays):
        np.testing.assert_array_equal(array, picture.to_ndarray(format="rgb24"))
        np.testing.assert_array_equal(convert(picture, 320, 180), picture.to_ndarray(format="rgb24", width=320, height=180))
    assert not np.array_equal(arrays[0], arrays[-1])


def test_read_ahead_decodes_a_video_to_the_same_frames(videos_dir):
    path = videos_dir / "single_face.mp4"
    direct = [f.rgb() for f in iter_decoded(path)]
    ahead = [f.rgb() for f in read_ahead(iter_decoded(path), depth=4)]
    assert len(ahead) == len(direct) > 0
    assert all(np.array_equal(a, b) for a, b in zip(ahead, direct))
