"""Seconds ``dfer predict`` spends per stage of one input (decode, detect, align,
transform, classify), as its report's ``summary.ms_per_frame`` gives them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import numpy as np

from dfer.preprocess.video import DecodedFrame


class _Timer:
    """Seconds spent per stage (decode, detect, align, transform, classify); a frame's RGB
    conversion counts as decoding, wherever it happens. Frames decode ahead in a background
    thread (:func:`dfer.preprocess.video.read_ahead`), so "decode" is the time the pipeline
    waited for decoded frames plus their conversion, not the decoder's own CPU time."""

    def __init__(self):
        self.seconds: dict[str, float] = {"decode": 0.0, "detect": 0.0, "align": 0.0, "transform": 0.0,
                                          "classify": 0.0}

    def frames(self, source: Iterable[DecodedFrame], counter: list[int]) -> Iterator["_TimedFrame"]:
        it = iter(source)
        while True:
            t0 = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                self.seconds["decode"] += time.perf_counter() - t0
                return
            self.seconds["decode"] += time.perf_counter() - t0
            counter[0] += 1
            yield _TimedFrame(frame, self.seconds)


class _TimedFrame:
    """A :class:`DecodedFrame` whose RGB conversion is timed as decoding (the other stages'
    clocks leave it out)."""

    __slots__ = ("frame", "seconds")

    def __init__(self, frame: DecodedFrame, seconds: dict[str, float]):
        self.frame, self.seconds = frame, seconds

    @property
    def nbytes(self) -> int:
        return self.frame.nbytes

    def rgb(self) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.frame.rgb()
        finally:
            self.seconds["decode"] += time.perf_counter() - t0


class _TimedDetector:
    def __init__(self, detector, timer: _Timer):
        self.detector, self.timer = detector, timer

    def detect(self, image):
        t0 = time.perf_counter()
        try:
            return self.detector.detect(image)
        finally:
            self.timer.seconds["detect"] += time.perf_counter() - t0
