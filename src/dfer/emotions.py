"""Emotion class sets and name-based label maps.

Corpora disagree on the order of their classes (DFEW: happy, sad, neutral, angry,
surprise, disgust, fear; FERV39K code bases: alphabetical or DFEW order; MAFW: an official
order and a community order). dfer never maps labels by position between corpora: every
label is turned into a canonical *name* first, then into an index of the target class set.
"""

from __future__ import annotations

import numpy as np

from dfer.errors import DataError

#: The seven basic classes in the order used by DFEW and the MIDAS paper.
BASIC7: tuple[str, ...] = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")

#: MAFW's eleven classes in the official order of its release.
MAFW11: tuple[str, ...] = (
    "angry", "disgust", "fear", "happy", "neutral", "sad", "surprise",
    "contempt", "anxiety", "helplessness", "disappointment",
)

#: MAFW's eleven classes in the order of the community (DFER-CLIP) list files.
MAFW11_COMMUNITY: tuple[str, ...] = (
    "happy", "sad", "neutral", "angry", "surprise", "disgust", "fear",
    "contempt", "anxiety", "helplessness", "disappointment",
)

#: FER+ (eight classes, votes of ten annotators) in its own order.
FERPLUS8: tuple[str, ...] = (
    "neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt",
)

#: Alphabetical order of the seven basic classes, as some FERV39K code bases use.
BASIC7_ALPHABETICAL: tuple[str, ...] = tuple(sorted(BASIC7))

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "basic7": BASIC7,
    "mafw11": MAFW11,
    "mafw11_community": MAFW11_COMMUNITY,
    "ferplus8": FERPLUS8,
    "basic7_alphabetical": BASIC7_ALPHABETICAL,
}

_SYNONYMS: dict[str, str] = {
    "happiness": "happy", "happy": "happy", "joy": "happy",
    "sadness": "sad", "sad": "sad",
    "neutral": "neutral", "neutrality": "neutral",
    "anger": "angry", "angry": "angry",
    "surprise": "surprise", "surprised": "surprise",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "scared": "fear",
    "contempt": "contempt",
    "anxiety": "anxiety", "anxious": "anxiety",
    "helplessness": "helplessness", "helpless": "helplessness",
    "disappointment": "disappointment", "disappointed": "disappointment",
}


def canonical(name: str) -> str:
    """Return the canonical dfer name of an emotion (``"Happiness"`` -> ``"happy"``).

    Raises:
        DataError: if the name is not a known emotion.
    """
    key = name.strip().lower()
    try:
        return _SYNONYMS[key]
    except KeyError:
        raise DataError(f"unknown emotion name {name!r}; known: {sorted(set(_SYNONYMS.values()))}") from None


def resolve_classes(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Turn a class-set name (``"basic7"``) or a list of emotion names into canonical names."""
    if isinstance(spec, str):
        if spec in CLASS_SETS:
            return CLASS_SETS[spec]
        spec = [s for s in spec.split(",") if s.strip()]
    names = tuple(canonical(s) for s in spec)
    if len(set(names)) != len(names):
        raise DataError(f"class list {list(spec)} names a class twice")
    return names


def index_of(name: str, classes: tuple[str, ...]) -> int:
    """Index of emotion ``name`` (any synonym) in ``classes``."""
    c = canonical(name)
    try:
        return classes.index(c)
    except ValueError:
        raise DataError(f"emotion {name!r} is not one of the classes {list(classes)}") from None


def label_map(source: tuple[str, ...], target: tuple[str, ...]) -> np.ndarray:
    """Index map from ``source`` class indices to ``target`` ones, by name.

    Returns:
        int64 array ``m`` of length ``len(source)`` with ``m[i]`` the index in ``target`` of
        ``source[i]``, or -1 where ``target`` lacks that class.
    """
    tgt = {canonical(n): i for i, n in enumerate(target)}
    return np.array([tgt.get(canonical(n), -1) for n in source], dtype=np.int64)
