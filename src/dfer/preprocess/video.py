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
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from dfer.data.decode import RgbConverter, open_video
from dfer.errors import DataError

__all__ = ["VideoInfo", "probe_video", "iter_frames", "iter_decoded", "read_ahead", "DecodedFrame", "as_rgb"]


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

    __slots__ = ("_frame", "_array", "_source", "_convert", "_bytes", "index", "width", "height")

    def __init__(self, frame, source: str, index: int, convert: RgbConverter | None = None):
        self._frame, self._array, self._source, self.index = frame, None, source, int(index)
        self._convert = convert or RgbConverter()
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
            self._array = _to_rgb(self._frame, self._source, self.index, self._convert)
            self._frame = self._convert = None
        return self._array


def _to_rgb(frame, source: str, index: int, convert: RgbConverter) -> np.ndarray:
    import av

    try:
        return convert(frame)
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


T = TypeVar("T")
_END = object()


def read_ahead(items: Iterable[T], depth: int = 8) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` ahead of the consumer.

    FFmpeg decodes with the GIL released, so a video's next frames decode on one core
    while the caller detects or classifies with the rest (``dfer predict``: decoding hides
    behind detection). The items and their order are exactly ``items``'; an exception
    raised by ``items`` is raised here at the same place in the sequence. Closing the
    returned generator (or dropping it) stops the thread after the item in hand and closes
    ``items`` (a video file is closed), in the background thread that opened it.

    Args:
        items: any iterable; it is iterated in the background thread only.
        depth: items decoded ahead at most; 0 iterates ``items`` in the caller's thread.
    """
    if depth < 1:
        yield from items
        return
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        it = None
        try:
            it = iter(items)
            for item in it:
                ahead.put((item, None))
                if stop.is_set():
                    return
            ahead.put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            ahead.put((_END, exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="dfer-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = ahead.get()
            if exc is not None:
                raise exc
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        # a generator the garbage collector finalises in the worker itself: the worker sees
        # stop after its next put (the queue has room: this generator no longer takes items)
        if threading.current_thread() is worker:
            return
        while worker.is_alive():  # free the queue so a producer blocked on put() can see stop
            try:
                ahead.get(timeout=0.01)
            except queue.Empty:
                pass
        worker.join()


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
    convert = RgbConverter()  # one scaler for the stream's frames
    t = 0
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = max(1, int(threads))
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        try:
            for frame in container.decode(stream):
                yield DecodedFrame(frame, source, t, convert)
                t += 1
        except av.error.FFmpegError as e:
            raise DataError(f"{source}: decoding failed at frame {t} ({type(e).__name__}: {e})") from None
        except (NotImplementedError, ValueError) as e:  # a codec PyAV cannot handle
            raise DataError(f"{source}: unsupported video ({type(e).__name__}: {e})") from None
    finally:
        container.close()
