"""An input of ``dfer predict`` opened as frames: a video, a still image or a folder of
aligned frames. Videos are opened and decoded by dfer's one video reader
(:func:`dfer.preprocess.video.probe_video`, :func:`dfer.preprocess.video.iter_decoded`,
both through :func:`dfer.data.decode.open_video`), images and frame folders by
:mod:`dfer.data.decode`; this module only times them and says which kind an input is."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfer.data.decode import list_frame_files, read_image
from dfer.data.table import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ClipKind, kind_of_path
from dfer.errors import DataError
from dfer.predict.timing import _Timer, _TimedFrame
from dfer.preprocess.video import iter_decoded, probe_video, read_ahead


def _media_kind(path: Path) -> str:
    """``"frames"`` (a folder), ``"video"`` or ``"image"``, by :func:`dfer.data.table.kind_of_path`."""
    if path.is_dir():
        return "frames"
    kind = kind_of_path(str(path))
    if kind == ClipKind.VIDEO:
        return "video"
    if kind == ClipKind.IMAGE:
        return "image"
    raise DataError(f"{path}: expected a video ({', '.join(VIDEO_EXTENSIONS)}) or an image "
                    f"({', '.join(IMAGE_EXTENSIONS)}), found suffix {path.suffix or '(none)'!r}")


@dataclass
class _Media:
    """A decoded-on-demand video or a decoded image: its size, frame rate (None for an
    image) and ``frames()``, a fresh iterator over its frames each call (a video's are
    decoded frames whose RGB conversion waits until it is used)."""

    width: int
    height: int
    fps: float | None
    frames: Callable[[], Iterator[np.ndarray]]
    decoded: list[int]  # frames decoded by the last pass (a box the iterator fills)


def _open_media(path: Path, kind: str, timer: _Timer, fps: float | None = None) -> _Media:
    decoded = [0]
    if kind == "frames":
        files = list_frame_files(path)
        if not files:
            raise DataError(f"{path}: no frames in the folder")

        def read() -> Iterator[np.ndarray]:
            decoded[0] = 0
            for f in files:
                t0 = time.perf_counter()
                image = read_image(f)
                timer.seconds["decode"] += time.perf_counter() - t0
                decoded[0] += 1
                yield image

        first = read_image(files[0])
        return _Media(first.shape[1], first.shape[0], float(fps), read, decoded)
    if kind == "video":
        info = probe_video(path)
        if not info.fps > 0:
            raise DataError(f"{path}: the container gives no frame rate; cannot place windows in time")

        def frames() -> Iterator[_TimedFrame]:
            decoded[0] = 0
            return timer.frames(read_ahead(iter_decoded(path, threads=1)), decoded)

        return _Media(info.width, info.height, info.fps, frames, decoded)
    t0 = time.perf_counter()
    image = read_image(str(path)).copy()  # PIL's array may be read-only; torch wants writable memory
    timer.seconds["decode"] += time.perf_counter() - t0
    decoded[0] = 1
    return _Media(image.shape[1], image.shape[0], None, lambda: iter([image]), decoded)
