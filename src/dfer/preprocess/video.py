"""Streaming video decoding with PyAV, with errors a user can act on.

Raw DFER corpora (AFEW, MAFW, FERV39K's raw clips) and users' own footage come as
mp4/avi/mov/mkv in H.264, HEVC, MPEG-4 Part 2 and the like. Frames are decoded one at a
time (never the whole video in memory) as RGB uint8 (H, W, 3), or as decoded frames that
convert to RGB only when asked (:func:`iter_decoded`). Anything PyAV cannot open
or decode becomes a :class:`dfer.errors.DataError` naming the file and, for a stream that
breaks midway, the frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dfer.data.decode import open_video
from dfer.errors import DataError

__all__ = ["VideoInfo", "probe_video", "iter_frames", "iter_decoded", "DecodedFrame", "as_rgb"]


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream (``num_frames`` may be 0 or
    differ from the frames actually decoded; decoding is the truth)."""

    width: int
    height: int
    fps: float
    num_frames: int
    codec: str


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the container's header (no decoding).

    Raises:
        DataError: unreadable file or no video stream.
    """
    with open_video(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 0
        return VideoInfo(
            width=int(stream.codec_context.width), height=int(stream.codec_context.height),
            fps=float(rate) if rate else 0.0, num_frames=int(stream.frames or 0),
            codec=str(stream.codec_context.name),
        )


class DecodedFrame:
    """One decoded video frame whose RGB conversion waits until :meth:`rgb` asks for it.

    Converting a decoded picture (YUV) to RGB costs more than decoding it, and ``dfer
    predict`` needs RGB only for the frames the detector sees and the frames its windows
    sample: :func:`iter_decoded` yields these, :func:`iter_frames` their arrays.

    Attributes:
        width, height: the frame's size in pixels.
        index: the frame's number in presentation order.
    """

    __slots__ = ("_frame", "_array", "_source", "_bytes", "index", "width", "height")

    def __init__(self, frame, source: str, index: int):
        self._frame, self._array, self._source, self.index = frame, None, source, int(index)
        self.width, self.height = int(frame.width), int(frame.height)
        # the decoded picture, or the RGB array it becomes, whichever is larger (10-bit 4:2:2
        # holds 4 bytes a pixel, more than RGB's 3)
        self._bytes = max(self.width * self.height * 3, sum(int(p.buffer_size) for p in frame.planes))

    @property
    def nbytes(self) -> int:
        """Bytes this frame holds (what a cache of frames is charged for it)."""
        return self._bytes if self._array is None else self._array.nbytes

    @property
    def converted(self) -> bool:
        """Whether :meth:`rgb` has run (the decoded picture is then released)."""
        return self._array is not None

    def rgb(self) -> np.ndarray:
        """RGB uint8 (H, W, 3), converted on the first call and kept.

        Raises:
            DataError: a pixel format PyAV cannot convert (the file and frame are named).
        """
        if self._array is None:
            self._array = _to_rgb(self._frame, self._source, self.index)
            self._frame = None
        return self._array


def _to_rgb(frame, source: str, index: int) -> np.ndarray:
    import av

    try:
        return frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise DataError(f"{source}: cannot convert frame {index} to RGB ({type(e).__name__}: {e})") from None
    except (NotImplementedError, ValueError) as e:  # a pixel format PyAV cannot handle
        raise DataError(f"{source}: unsupported video ({type(e).__name__}: {e})") from None


def as_rgb(frame: np.ndarray | DecodedFrame) -> np.ndarray:
    """The RGB array of a frame that is one already or a :class:`DecodedFrame`."""
    return frame if isinstance(frame, np.ndarray) else frame.rgb()


def iter_frames(path: str | os.PathLike, threads: int = 1) -> Iterator[np.ndarray]:
    """Decode the first video stream frame by frame into RGB arrays.

    Args:
        path: video file.
        threads: decoder threads (keep workers x threads within the cores you were given).

    Yields:
        RGB uint8 (H, W, 3) frames in presentation order.

    Raises:
        DataError: the file cannot be opened, has no video stream, uses a codec or pixel
            format this FFmpeg build cannot decode, or breaks while decoding (the frame is
            named).
    """
    for frame in iter_decoded(path, threads):
        yield frame.rgb()


def iter_decoded(path: str | os.PathLike, threads: int = 1) -> Iterator[DecodedFrame]:
    """Decode the first video stream frame by frame, leaving the RGB conversion to each
    :class:`DecodedFrame` (its :meth:`~DecodedFrame.rgb`); the frames stay valid after the
    stream has ended.

    Raises:
        DataError: as :func:`iter_frames`; a pixel format that cannot be converted is
            reported by :meth:`DecodedFrame.rgb`.
    """
    import av

    container = open_video(path)
    source = os.fspath(path)
    t = 0
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = max(1, int(threads))
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        try:
            for frame in container.decode(stream):
                yield DecodedFrame(frame, source, t)
                t += 1
        except av.error.FFmpegError as e:
            raise DataError(f"{source}: decoding failed at frame {t} ({type(e).__name__}: {e})") from None
        except (NotImplementedError, ValueError) as e:  # a codec PyAV cannot handle
            raise DataError(f"{source}: unsupported video ({type(e).__name__}: {e})") from None
    finally:
        container.close()
