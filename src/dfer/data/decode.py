"""Read only the frames a sampler picked, from a frame folder, a video file or a still image.

A training step of MIDAS (section 4.3) needs 8 frames per clip, one per segment; decoding
a whole clip to keep 8 frames wastes most of the loader's time. So:

- frame folders: only the sampled files are opened; a JPEG is decoded by libjpeg-turbo
  through simplejpeg, straight into the clip's array (no copy per frame between the decode
  and the clip, and none of PIL's header parsing in Python: 1.9x PIL's rate on a 256-px
  frame, the same pixels), at 1/2, 1/4 or 1/8 size from its DCT coefficients when the
  caller's ``size_hint`` is that much smaller than the stored frame. An 8-bit grey or RGB
  PNG (FER+'s faces) is decoded by OpenCV's libpng, again the same pixels in a fraction of
  PIL's time. Everything else (other PNGs, CMYK JPEG, other formats, damaged files) goes to
  PIL, which decodes it or names what is wrong; 16 bits per channel become 8 (the high
  byte), grey or colour alike, and 32-bit or floating-point images are refused by name;
- video files (PyAV): a packet-level index (presentation timestamps and keyframes, read by
  demuxing without decoding, cached per file) turns frame numbers into timestamps, so the
  reader seeks to the keyframe before the first wanted frame, decodes forward and stops
  after the last. Frame ``i`` is the i-th frame in presentation order, which holds for
  variable frame rates too (no ``i / fps`` arithmetic);
- still images: a one-frame clip; every index reads the same image.

All readers return uint8 arrays of shape (T, H, W, 3), RGB, in the order of the indices
asked for (repeats allowed). Problems with the media raise :class:`DataError` naming the
file and what was expected.
"""

from __future__ import annotations

import functools
import io
import os
import re
import threading
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image

from dfer.data.table import IMAGE_EXTENSIONS, ClipKind
from dfer.errors import DataError
from dfer.io import file_kind, read_bytes, regular_file

__all__ = ["list_frame_files", "read_frames", "read_image", "read_video_frames", "probe_num_frames",
           "num_frames_of", "clear_caches", "RgbConverter"]

_DIGITS = re.compile(r"(\d+)")


def _path(p) -> str:
    # exact str: numpy's str_ (ClipTable columns) makes os.scandir yield bytes names
    return str(os.fspath(p))


def _natural_key(name: str):
    # "frame_2.jpg" < "frame_10.jpg": digit runs compare as numbers, the rest as text
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in _DIGITS.split(name)]


@functools.lru_cache(maxsize=16384)
def _listing(folder: str) -> tuple[str, ...]:
    try:
        names = [e.name for e in os.scandir(folder)
                 if e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith(".")]
    except FileNotFoundError:
        raise DataError(f"{folder}: frame folder not found") from None
    except NotADirectoryError:
        raise DataError(f"{folder}: expected a frame folder, found {file_kind(os.stat(folder).st_mode)}") from None
    if not names:
        raise DataError(f"{folder}: frame folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    names.sort(key=_natural_key)
    return tuple(os.path.join(folder, n) for n in names)


def list_frame_files(folder: str | os.PathLike) -> list[str]:
    """Image files of a frame folder in natural order (``2.jpg`` before ``10.jpg``).

    The listing is cached per folder (per process): a folder is scanned once, not once
    per epoch. Call :func:`clear_caches` after changing folders on disk.

    Raises:
        DataError: the folder is missing, is a file, or holds no image files.
    """
    return list(_listing(_path(folder)))


def clear_caches() -> None:
    """Forget cached folder listings and video indexes."""
    _listing.cache_clear()
    _video_index.cache_clear()


def _reduction(width: int, height: int, size_hint: int | None) -> int:
    """Largest power-of-two factor (<= 8) that keeps the short side >= ``size_hint``."""
    if not size_hint:
        return 1
    factor = 1
    while factor < 8 and min(width, height) // (factor * 2) >= size_hint:
        factor *= 2
    return factor


# JPEG colour spaces libjpeg-turbo turns into RGB; CMYK and YCCK are PIL's to convert
_TURBO_COLOURS = frozenset({"Gray", "YCbCr", "RGB"})


def _turbo_shape(data: bytes, size_hint: int | None) -> tuple[int, int] | None:
    """(height, width) of the RGB frame simplejpeg decodes ``data`` to for ``size_hint``
    (the DCT-scaled size, as PIL's draft picks it), or None when ``data`` is not a JPEG it
    decodes to RGB."""
    if not data.startswith(b"\xff\xd8"):  # no JPEG start-of-image marker: not simplejpeg's
        return None
    try:
        height, width, colours, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colours not in _TURBO_COLOURS or width * height > (Image.MAX_IMAGE_PIXELS or 1 << 62):
        return None  # PIL converts it, or refuses a decompression bomb with its own error
    f = _reduction(width, height, size_hint)
    return -(-height // f), -(-width // f)  # libjpeg rounds a scaled side up


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode_png(data: bytes) -> np.ndarray | None:
    """An 8-bit grey or RGB PNG decoded by OpenCV's libpng (the same pixels as PIL, in a
    fifth of the time on a 48-px face: PIL parses the file in Python), or None for any other
    PNG (palette, alpha, 16 bits, interlaced) or one larger than PIL's decompression-bomb
    limit, which PIL then decodes or refuses as before."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour, interlace = data[24], data[25], data[28]
    if depth != 8 or colour not in (0, 2) or interlace or width * height > (Image.MAX_IMAGE_PIXELS or 1 << 62):
        return None
    import cv2  # imported here: corpora of JPEG frames and videos never pay for OpenCV

    # grey comes as three equal channels; an eXIf orientation is ignored, as PIL ignores it
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.shape != (height, width, 3):
        return None
    return image if colour == 0 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_pil(data: bytes, path: str, size_hint: int | None) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            if size_hint and img.format == "JPEG":
                f = _reduction(img.width, img.height, size_hint)
                if f > 1:
                    img.draft("RGB", (img.width // f, img.height // f))
            img.load()  # the decode, where truncated data surfaces
            if img.mode.startswith("I;16"):
                return _grey16_to_rgb(img)
            if img.mode in ("I", "F"):  # no range to scale from: 32-bit integers or floats
                raise DataError(f"{path}: a {'32-bit integer' if img.mode == 'I' else 'floating-point'} image "
                                f"(PIL mode {img.mode}); dfer reads 8- and 16-bit images: save it with 8 or 16 "
                                f"bits per channel")
            # an RGB image is read as it is: convert("RGB") would copy it once more
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


def _grey16_to_rgb(img: Image.Image) -> np.ndarray:
    """A 16-bit grey image (PIL mode ``I;16*``) -> uint8 (H, W, 3): each sample's high byte,
    as PIL and libpng read a 16-bit colour image (PIL's own ``convert`` clips 16-bit grey at
    255 instead, which turns most of a face white)."""
    grey = np.asarray(img).astype(np.uint16, copy=False) >> 8
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)


def _decode_image(data: bytes, path: str, size_hint: int | None, shape: tuple[int, int] | None,
            out: np.ndarray | None = None) -> np.ndarray:
    """The frame in ``data`` as uint8 (H, W, 3): in ``out`` (and returned) when simplejpeg
    (``shape`` from :func:`_turbo_shape`) or OpenCV decodes it and ``out`` has its shape, else
    a new array (PIL's read-only one for what both leave to PIL)."""
    if shape is not None:
        if out is not None and out.shape[:2] != shape:
            out = None
        try:
            return simplejpeg.decode_jpeg(data, "RGB", min_height=shape[0], min_width=shape[1], buffer=out)
        except ValueError:
            pass  # damaged, or a JPEG strict libjpeg-turbo refuses: PIL decodes it or says what is wrong
    else:
        png = _decode_png(data)
        if png is not None:
            if out is not None and out.shape == png.shape:
                out[...] = png
                return out
            return png
    return _decode_pil(data, path, size_hint)


def read_image(path: str, size_hint: int | None = None) -> np.ndarray:
    """One image file -> uint8 (H, W, 3) RGB.

    Args:
        size_hint: smallest short side the caller needs; a JPEG is decoded at a reduced
            scale (1/2, 1/4, 1/8) only while its short side stays >= ``size_hint``.

    Raises:
        DataError: missing or undecodable file (named in the message).
    """
    data = read_bytes(path, "image file")
    return _decode_image(data, path, size_hint, _turbo_shape(data, size_hint))


def _read_folder(folder: str, idx: np.ndarray, size_hint: int | None) -> np.ndarray:
    files = _listing(folder)
    _check_range(folder, idx, len(files), "folder")
    uniq, inverse = np.unique(idx, return_inverse=True)
    names = [files[i] for i in uniq]
    frames = None
    for k, name in enumerate(names):
        data = read_bytes(name, "image file")
        shape = _turbo_shape(data, size_hint)
        if frames is None and shape is not None:
            frames = np.empty((len(names),) + shape + (3,), np.uint8)
        frame = _decode_image(data, name, size_hint, shape, None if frames is None else frames[k])
        if frames is None:  # a first frame PIL decoded gives the clip its shape
            frames = np.empty((len(names),) + frame.shape, np.uint8)
        if frame.shape != frames.shape[1:]:
            want = frames.shape
            raise DataError(f"{name}: frame is {frame.shape[1]}x{frame.shape[0]}, expected {want[2]}x{want[1]} "
                            f"like {names[0]}")
        if not np.shares_memory(frame, frames):
            frames[k] = frame
    return frames[inverse] if len(uniq) != len(idx) or not np.array_equal(uniq, idx) else frames


def _as_indices(indices) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("no frame indices to read")
    return idx


def _check_range(source: str, idx: np.ndarray, n: int, what: str) -> None:
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise DataError(f"{source}: frame index {int(bad[0])} requested, expected 0..{n - 1} "
                        f"(the {what} has {n} frames)")


# ---------------------------------------------------------------------------- video
@dataclass(frozen=True)
class _VideoIndex:
    pts: np.ndarray  # (N,) int64 presentation timestamps of the frames, sorted
    keyframes: np.ndarray  # (K,) int64 frame numbers (into pts) of the keyframes


def open_video(path: str | os.PathLike):
    """The PyAV container of a video file with at least one video stream; the one opener
    of every video dfer reads (training clips, ``dfer preprocess``, ``dfer predict``).

    Raises:
        DataError: the file is missing, cannot be opened, or has no video stream.
    """
    import av  # imported lazily: frame-folder corpora never pay for FFmpeg

    path = _path(path)
    regular_file(path, "video file")  # a FIFO would hang FFmpeg: refused by name before it opens
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot open video ({type(exc).__name__}: {exc})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: expected a video stream, found none")
    return container


@functools.lru_cache(maxsize=256)
def _video_index(path: str) -> _VideoIndex | None:
    """Timestamps and keyframes from the packets (no decoding); None when the container
    gives packets without timestamps, in which case readers count decoded frames."""
    import av

    container = open_video(path)
    try:
        stream = container.streams.video[0]
        pts, keys = [], []
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            keys.append(packet.is_keyframe)
    except av.error.FFmpegError as exc:
        raise DataError(f"{path}: cannot read video packets ({exc})") from None
    finally:
        container.close()
    if not pts:
        raise DataError(f"{path}: video stream holds no frames")
    pts_arr = np.asarray(pts, dtype=np.int64)
    order = np.argsort(pts_arr, kind="stable")
    key_pts = pts_arr[np.asarray(keys, dtype=bool)]
    frame_of = np.searchsorted(pts_arr[order], key_pts)
    if len(np.unique(pts_arr)) != len(pts_arr):
        return None  # duplicate timestamps: pts cannot name a frame
    return _VideoIndex(pts=pts_arr[order], keyframes=np.sort(frame_of))


def probe_num_frames(path: str | os.PathLike) -> int:
    """Frames in a video file's first video stream.

    Uses the packet index (exact, also for variable frame rates); falls back to the
    container's frame count and, when that is missing, to counting decoded frames.

    Raises:
        DataError: missing, unreadable or frameless video.
    """
    path = _path(path)
    index = _video_index(path)
    if index is not None:
        return len(index.pts)
    with open_video(path) as container:
        stream = container.streams.video[0]
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        return sum(1 for _ in _decode(container, stream, path))


def _decode(container, stream, path):
    import av

    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise DataError(f"{path}: cannot decode video ({exc})") from None


def count_decoded_frames(path: str | os.PathLike) -> int:
    """Decode every frame of a video (nothing converted or kept) and count them.

    Raises:
        DataError: missing file, or a frame FFmpeg cannot decode.
    """
    path = _path(path)
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in _decode(container, stream, path))


class RgbConverter:
    """Decoded video frames -> RGB uint8 arrays (H, W, 3) through one FFmpeg scaler, reused.

    PyAV's ``frame.to_ndarray(format="rgb24")`` sets up a new scaler context on every call,
    which costs three times the conversion of a 640x360 frame itself (0.71 against 0.18 ms
    a frame, the same pixels); one converter per stream sets it up once. A lock keeps the
    context to one thread at a time (``dfer predict`` decodes in a background thread).
    """

    def __init__(self):
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()
        self._lock = threading.Lock()

    def __call__(self, frame, width: int | None = None, height: int | None = None) -> np.ndarray:
        """``frame`` (an ``av.VideoFrame``) as RGB, scaled to ``width`` x ``height`` if given."""
        with self._lock:
            return self._reformatter.reformat(frame, width=width, height=height, format="rgb24").to_ndarray()


def _to_rgb(frame, factor: int, convert: RgbConverter) -> np.ndarray:
    if factor > 1:
        return convert(frame, frame.width // factor, frame.height // factor)
    return convert(frame)


def read_video_frames(path: str | os.PathLike, indices, *, size_hint: int | None = None) -> np.ndarray:
    """Decode only frames ``indices`` of a video -> uint8 (len(indices), H, W, 3) RGB.

    Raises:
        DataError: missing/corrupt file, or an index beyond the video's frames.
    """
    path = _path(path)
    idx = _as_indices(indices)
    index = _video_index(path)
    if index is not None:
        _check_range(path, idx, len(index.pts), "video")
    wanted = set(int(i) for i in idx)
    got = _decode_wanted(path, index, wanted, size_hint, seek=True)
    if len(got) < len(wanted) and index is not None:
        got = _decode_wanted(path, index, wanted, size_hint, seek=False)  # a seek that overshot
    if len(got) < len(wanted):
        missing = min(wanted - got.keys())
        n = probe_num_frames(path)
        raise DataError(f"{path}: frame index {missing} requested, expected 0..{n - 1} "
                        f"(the video decodes to {len(got) if index is None else n} frames)")
    return np.stack([got[int(i)] for i in idx])


def _decode_wanted(path, index, wanted: set[int], size_hint, *, seek: bool) -> dict[int, np.ndarray]:
    first, last = min(wanted), max(wanted)
    got: dict[int, np.ndarray] = {}
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frame_of = None
        if index is not None:
            frame_of = {int(p): i for i, p in enumerate(index.pts)}
            k = index.keyframes[index.keyframes <= first]
            if seek and k.size and k[-1] > 0:
                container.seek(int(index.pts[k[-1]]), stream=stream, backward=True, any_frame=False)
        factor = None
        count = -1
        convert = RgbConverter()
        for frame in _decode(container, stream, path):
            count += 1
            i = count if frame_of is None else frame_of.get(frame.pts, -1)
            if factor is None:
                factor = _reduction(frame.width, frame.height, size_hint)
            if i in wanted and i not in got:
                got[i] = _to_rgb(frame, factor, convert)
                if len(got) == len(wanted):
                    break
            if frame_of is None and count >= last:
                break
    return got


# ---------------------------------------------------------------------------- dispatch
def read_frames(source: str | os.PathLike, kind: ClipKind | int, indices, *,
                size_hint: int | None = None) -> np.ndarray:
    """Frames ``indices`` of one clip -> uint8 (T, H, W, 3) RGB, T = len(indices).

    Args:
        source: frame folder, video file or image file.
        kind: :class:`ClipKind` of ``source``.
        indices: int frame numbers (any order, repeats allowed), e.g. from a sampler.
        size_hint: smallest short side the caller needs; lets the decoder work at a
            reduced scale (never below ``size_hint``). None decodes at full size.

    Raises:
        DataError: naming the file or folder, what was expected and what was found.
    """
    source = _path(source)
    idx = _as_indices(indices)
    kind = ClipKind(int(kind))
    if kind is ClipKind.FRAMES:
        return _read_folder(source, idx, size_hint)
    if kind is ClipKind.VIDEO:
        return read_video_frames(source, idx, size_hint=size_hint)
    if (idx < 0).any():
        raise DataError(f"{source}: frame index {int(idx.min())} requested, expected >= 0")
    frame = read_image(source, size_hint)
    return np.broadcast_to(frame, (len(idx),) + frame.shape).copy()


def num_frames_of(source: str | os.PathLike, kind: ClipKind | int) -> int:
    """Frames available on disk (the truth, whatever a list file claims): folder listing
    length, video frame count, or 1 for a still image."""
    source = _path(source)
    kind = ClipKind(int(kind))
    if kind is ClipKind.FRAMES:
        return len(_listing(source))
    if kind is ClipKind.VIDEO:
        return probe_num_frames(source)
    regular_file(source, "image file")
    return 1
