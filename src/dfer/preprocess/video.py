"""Streaming video decoding with PyAV, with errors a user can act on.

Raw DFER corpora (AFEW, MAFW, FERV39K's raw clips) and users' own footage come as
mp4/avi/mov/mkv in H.264, HEVC, MPEG-4 Part 2 and the like. Frames are decoded one at a
time (never the whole video in memory) as RGB uint8 (H, W, 3). Anything PyAV cannot open
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

__all__ = ["VideoInfo", "probe_video", "iter_frames"]


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


def iter_frames(path: str | os.PathLike, threads: int = 1) -> Iterator[np.ndarray]:
    """Decode the first video stream frame by frame.

    Args:
        path: video file.
        threads: decoder threads (keep workers x threads within the cores you were given).

    Yields:
        RGB uint8 (H, W, 3) frames in presentation order.

    Raises:
        DataError: the file cannot be opened, has no video stream, uses a codec this
            FFmpeg build cannot decode, or breaks while decoding (the frame is named).
    """
    import av

    container = open_video(path)
    t = 0
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = max(1, int(threads))
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                t += 1
        except av.error.FFmpegError as e:
            raise DataError(f"{os.fspath(path)}: decoding failed at frame {t} ({type(e).__name__}: {e})") from None
        except (NotImplementedError, ValueError) as e:  # codec/pixel format PyAV cannot handle
            raise DataError(f"{os.fspath(path)}: unsupported video ({type(e).__name__}: {e})") from None
    finally:
        container.close()
