"""MAFW (Liu et al., ACM MM 2022): 10,045 clips, 11 classes, single and compound labels.

Layout as distributed::

    data/clips/<id>.mp4                          (layout="video")
    data/frames/<id>/*.jpg or data/faces/<id>/   (layout="frames": faces extracted)
    Labels/single_label.txt     `03747.mp4  anger  <captions>`
    Labels/multi_label.txt      `20045.mp4<TAB>anger_disgust_anxiety<TAB>...`
    Train & Test Set/single/no_caption/set_{1..5}/{train,test}.txt    `clip.mp4 label`

The table holds the single-labelled clips (label from ``single_label.txt``), fold ``k`` =
member of ``set_k/test.txt``, and ``multi_hot`` from ``multi_label.txt`` (compound
labels, kept for later use; a single-labelled clip absent from it gets its one label).
Classes default to the official order (:data:`dfer.emotions.MAFW11`); any order can be
asked for, labels are mapped by name. A split file's label, when it is a name, must
agree with ``single_label.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dfer.data.corpora.textio import label_index, numbered_lines
from dfer.data.table import ClipKind, ClipTable
from dfer.emotions import MAFW11, resolve_classes
from dfer.errors import DataError, where

SPLITS = os.path.join("Train & Test Set", "single", "no_caption")


def _stem(token: str) -> str:
    return token.strip().rsplit("/", 1)[-1].removesuffix(".mp4")


def read_single_labels(path, classes) -> dict[str, tuple[int, int]]:
    """clip id -> (label index, line) from ``single_label.txt`` (captions ignored)."""
    out: dict[str, tuple[int, int]] = {}
    for i, line in numbered_lines(path, "MAFW label file"):
        parts = line.split(maxsplit=2)
        if len(parts) < 2:
            raise DataError(f"{where(path, i)}: expected `<clip>.mp4 <label> [captions]`, found {line.strip()!r}")
        cid = _stem(parts[0])
        if cid in out:
            raise DataError(f"{where(path, i)}: clip {cid!r} listed twice (first on line {out[cid][1]})")
        out[cid] = (label_index(parts[1], classes, path, i, allow_index=False), i)
    return out


def read_multi_labels(path, classes) -> dict[str, np.ndarray]:
    """clip id -> (C,) bool multi-hot from ``multi_label.txt`` (labels joined by ``_``)."""
    out: dict[str, np.ndarray] = {}
    for i, line in numbered_lines(path, "MAFW label file"):
        parts = line.split("\t") if "\t" in line else line.split(maxsplit=2)
        if len(parts) < 2 or not parts[1].strip():
            raise DataError(f"{where(path, i)}: expected `<clip>.mp4<TAB>label_label...`, found {line.strip()!r}")
        cid = _stem(parts[0])
        if cid in out:
            raise DataError(f"{where(path, i)}: clip {cid!r} listed twice")
        hot = np.zeros(len(classes), bool)
        for name in parts[1].strip().split("_"):
            hot[label_index(name, classes, path, i, allow_index=False)] = True
        out[cid] = hot
    return out


def load_mafw(
    root: str | os.PathLike,
    *,
    layout: str = "auto",
    classes: str | tuple[str, ...] = MAFW11,
    splits_dir: str | os.PathLike | None = None,
    num_sets: int = 5,
) -> ClipTable:
    """Read MAFW's single-label protocol (5 folds) with compound labels as multi-hot.

    Args:
        root: the MAFW folder.
        layout: ``"video"`` (``data/clips/<id>.mp4``), ``"frames"`` (``data/frames/<id>``
            or ``data/faces/<id>``) or ``"auto"``.
        classes: target class set (default the official MAFW order), mapped by name.
        splits_dir: folder of ``set_k/{train,test}.txt`` (default
            ``Train & Test Set/single/no_caption``); without one every fold is 0.

    Raises:
        DataError: naming file:line for malformed rows, unknown labels, a clip in two
            test folds, a split row naming a clip without a single label, or a split
            label that contradicts ``single_label.txt``.
    """
    root = Path(root)
    classes = resolve_classes(classes)
    single = read_single_labels(root / "Labels" / "single_label.txt", classes)
    multi_path = root / "Labels" / "multi_label.txt"
    multi = read_multi_labels(multi_path, classes) if multi_path.exists() else {}
    if layout == "auto":
        layout = "video" if (root / "data" / "clips").is_dir() else "frames"
    if layout == "video":
        base, suffix = root / "data" / "clips", ".mp4"
    elif layout == "frames":
        base = next((root / "data" / d for d in ("frames", "faces") if (root / "data" / d).is_dir()), None)
        suffix = ""
        if base is None:
            raise DataError(f"{root}/data: neither clips/, frames/ nor faces/ found")
    else:
        raise DataError(f"MAFW layout {layout!r} unknown; expected video, frames or auto")
    ids = sorted(single)
    index = {c: n for n, c in enumerate(ids)}
    fold = np.zeros(len(ids), np.int8)
    sdir = Path(splits_dir) if splits_dir is not None else root / SPLITS
    if sdir.is_dir():
        where_test: dict[str, str] = {}
        for k in range(1, num_sets + 1):
            for part in ("train", "test"):
                f = sdir / f"set_{k}" / f"{part}.txt"
                for i, line in numbered_lines(f, "MAFW split file"):
                    parts = line.split()
                    if len(parts) != 2:
                        raise DataError(f"{where(f, i)}: {len(parts)} fields, expected 2 (`<clip>.mp4 <label>`)")
                    cid = _stem(parts[0])
                    if cid not in index:
                        raise DataError(f"{where(f, i)}: clip {cid!r} has no single label in Labels/single_label.txt")
                    if not parts[1].lstrip("-").isdigit():
                        if label_index(parts[1], classes, f, i, allow_index=False) != single[cid][0]:
                            raise DataError(f"{where(f, i)}: label {parts[1]!r} contradicts Labels/single_label.txt "
                                            f"line {single[cid][1]} ({classes[single[cid][0]]})")
                    if part == "test":
                        if cid in where_test:
                            raise DataError(f"{where(f, i)}: clip {cid!r} is in two test folds "
                                            f"(also {where_test[cid]})")
                        where_test[cid] = where(f, i)
                        fold[index[cid]] = k
    elif splits_dir is not None:
        raise DataError(f"{sdir}: MAFW split folder not found")
    clip_id = np.asarray(ids, dtype=str)
    label = np.array([single[c][0] for c in ids], np.int16)
    hot = np.zeros((len(ids), len(classes)), bool)
    hot[np.arange(len(ids)), label] = True
    for n, c in enumerate(ids):
        if c in multi:
            hot[n] = multi[c]
    source = np.strings.add(np.strings.add(str(base) + "/", clip_id), suffix)
    kind = ClipKind.VIDEO if layout == "video" else ClipKind.FRAMES
    return ClipTable.build(classes, clip_id, source, kind=np.full(len(ids), kind, np.uint8), label=label,
                           fold=fold, multi_hot=hot, name="mafw",
                           meta={"root": str(root), "layout": layout, "compound_only": len(set(multi) - set(single))})
