"""FERV39K (Wang et al., CVPR 2022): 38,935 clips in 22 scenes, hard labels only.

Layout as distributed::

    0_7_LabelClips/<Scene>/<Emotion>/<id>.mp4          raw clips        (layout="video")
    2_ClipsforFaceCrop/<Scene>/<Emotion>/<id>/*.jpg    face crops       (layout="frames")
    4_setups/All_scenes/train_All.csv, test_All.csv    `Action/Sad/0010 Sad`, no header

The clip id is ``<Scene>/<Emotion>/<id>``; the scene is the clip's ``group``. Labels are
mapped by emotion *name* into ``classes`` (code bases disagree on the order: alphabetical
or DFEW's), and the emotion folder of each path must agree with the label column.

Soft labels: FERV39k-Plus (from the MIDAS authors) adds vote distributions whose file
format is not public, so votes come through a generic vote sheet
(:func:`dfer.data.corpora.manifest.read_vote_sheet`: clip id + one column per class).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dfer.data.corpora.manifest import attach_votes, read_vote_sheet
from dfer.data.corpora.textio import label_index, numbered_lines
from dfer.data.table import VIDEO_EXTENSIONS, ClipKind, ClipTable, Split
from dfer.emotions import BASIC7, canonical, resolve_classes
from dfer.errors import DataError, where

FRAMES_DIR = "2_ClipsforFaceCrop"
VIDEO_DIR = "0_7_LabelClips"
SETUP_DIR = os.path.join("4_setups", "All_scenes")


def read_split_file(path: str | os.PathLike, classes: tuple[str, ...]) -> tuple[list[str], list[int], list[int]]:
    """Parse a FERV39K setup file: ``<Scene>/<Emotion>/<id> <Emotion>`` per line.

    Returns:
        (clip ids, labels as indices into ``classes``, line numbers).

    Raises:
        DataError: naming file:line for a wrong field count, a path that is not
            ``Scene/Emotion/id``, an unknown emotion, or a label that contradicts the
            emotion folder of its path.
    """
    ids, labels, lines = [], [], []
    for i, line in numbered_lines(path, "FERV39K split file"):
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{where(path, i)}: {len(parts)} fields, expected 2 (`<Scene>/<Emotion>/<id> <Emotion>`)")
        clip, name = parts
        comp = clip.strip("/").split("/")
        if len(comp) != 3 or not all(comp):
            raise DataError(f"{where(path, i)}: clip {clip!r} is not <Scene>/<Emotion>/<id>")
        k = label_index(name, classes, path, i, allow_index=False)
        try:
            folder = canonical(comp[1])
        except DataError:
            raise DataError(f"{where(path, i)}: emotion folder {comp[1]!r} of {clip!r} is not an emotion") from None
        if folder != classes[k]:
            raise DataError(f"{where(path, i)}: label {name!r} contradicts the emotion folder of {clip!r}")
        ids.append("/".join(comp))
        labels.append(k)
        lines.append(i)
    return ids, labels, lines


def _scan(top: Path, classes: tuple[str, ...], videos: bool) -> tuple[list[str], list[int]]:
    """Clip ids and labels from the folder tree (when the setups are absent)."""
    ids, labels = [], []
    for scene in sorted(p for p in top.iterdir() if p.is_dir()):
        for emo in sorted(p for p in scene.iterdir() if p.is_dir()):
            k = label_index(emo.name, classes, emo, allow_index=False)
            for clip in sorted(emo.iterdir()):
                if clip.name.startswith("."):
                    continue
                if (clip.is_file() and clip.suffix.lower() in VIDEO_EXTENSIONS) if videos else clip.is_dir():
                    ids.append(f"{scene.name}/{emo.name}/{clip.stem if videos else clip.name}")
                    labels.append(k)
    return ids, labels


def load_ferv39k(
    root: str | os.PathLike,
    *,
    layout: str = "auto",
    classes: str | tuple[str, ...] = BASIC7,
    votes: str | os.PathLike | None = None,
    train_file: str | os.PathLike | None = None,
    test_file: str | os.PathLike | None = None,
    video_ext: str = ".mp4",
) -> ClipTable:
    """Read FERV39K as it lies on disk.

    Args:
        root: the corpus folder (holding ``2_ClipsforFaceCrop`` and/or ``0_7_LabelClips``).
        layout: ``"frames"`` (face crops), ``"video"`` (raw clips) or ``"auto"`` (frames
            when present).
        classes: target class set; labels are mapped by name.
        votes: optional vote sheet (clip id + one column per class) -> soft labels.
        train_file, test_file: split files (default ``4_setups/All_scenes/{train,test}_All.csv``).
            Without any, the folder tree is scanned and every clip has split NONE.

    Returns:
        ClipTable with ``split`` TRAIN/TEST, ``group`` = scene, ``num_frames`` 0 (unknown
        until :func:`dfer.data.check.check_table`).
    """
    root = Path(root)
    classes = resolve_classes(classes)
    if not root.is_dir():
        raise DataError(f"{root}: FERV39K folder not found")
    if layout == "auto":
        layout = "frames" if (root / FRAMES_DIR).is_dir() else "video" if (root / VIDEO_DIR).is_dir() else ""
        if not layout:
            raise DataError(f"{root}: neither {FRAMES_DIR}/ nor {VIDEO_DIR}/ found; is this the FERV39K folder?")
    if layout not in ("frames", "video"):
        raise DataError(f"FERV39K layout {layout!r} unknown; expected frames, video or auto")
    top = root / (FRAMES_DIR if layout == "frames" else VIDEO_DIR)
    files = {"train": train_file or root / SETUP_DIR / "train_All.csv",
             "test": test_file or root / SETUP_DIR / "test_All.csv"}
    ids: list[str] = []
    labels: list[int] = []
    split: list[int] = []
    if any(Path(f).exists() for f in files.values()) or train_file or test_file:
        first: dict[str, str] = {}
        for part, f in files.items():
            f_ids, f_labels, f_lines = read_split_file(f, classes)
            for cid, ln in zip(f_ids, f_lines):
                if cid in first:
                    raise DataError(f"{where(f, ln)}: clip {cid!r} listed twice (first at {first[cid]})")
                first[cid] = where(f, ln)
            ids += f_ids
            labels += f_labels
            split += [Split.TRAIN if part == "train" else Split.TEST] * len(f_ids)
    else:
        if not top.is_dir():
            raise DataError(f"{top}: folder not found")
        ids, labels = _scan(top, classes, layout == "video")
        split = [Split.NONE] * len(ids)
    clip_id = np.asarray(ids, dtype=str)
    suffix = video_ext if layout == "video" else ""
    source = np.strings.add(np.strings.add(str(top) + "/", clip_id), suffix) if len(ids) else clip_id
    group = np.strings.partition(clip_id, "/")[0] if len(ids) else clip_id
    kind = ClipKind.VIDEO if layout == "video" else ClipKind.FRAMES
    table = ClipTable.build(classes, clip_id, source, kind=np.full(len(ids), kind, np.uint8), label=labels,
                            split=split, group=group, name="ferv39k", meta={"root": str(root), "layout": layout})
    if votes is not None:
        table = attach_votes(table, read_vote_sheet(votes, classes))
    return table
