"""AFEW 7.0 (EmotiW): movie clips in class folders, used by the MIDAS paper (Table 5)
only as a cross-dataset test set for models trained on DFEW.

Layout as distributed::

    Train_AFEW/<Class>/*.avi     Val_AFEW/<Class>/*.avi

with class folders ``Angry Disgust Fear Happy Neutral Sad Surprise`` (mapped by name).
The test labels were never released, so the paper tests on the validation part:
``val_as_test=True`` marks it as the TEST split. A class folder may also hold frame
folders (faces already extracted, e.g. by ``dfer preprocess``): each sub-folder is a clip.
Files that are neither videos nor folders are listed in ``table.meta["ignored"]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dfer.data.corpora.textio import label_index
from dfer.data.table import VIDEO_EXTENSIONS, ClipKind, ClipTable, Split
from dfer.emotions import BASIC7, resolve_classes
from dfer.errors import DataError

PARTS = {"train": ("Train_AFEW", Split.TRAIN), "val": ("Val_AFEW", Split.VAL)}


def load_afew(
    root: str | os.PathLike,
    *,
    parts: tuple[str, ...] | list[str] | str = ("train", "val"),
    classes: str | tuple[str, ...] = BASIC7,
    val_as_test: bool = False,
) -> ClipTable:
    """Read AFEW's ``Train_AFEW`` / ``Val_AFEW`` class folders.

    Args:
        root: folder holding ``Train_AFEW`` and/or ``Val_AFEW``.
        parts: which of ``"train"``, ``"val"`` to read (a comma-separated str is accepted).
        classes: target class set; folder names are mapped by name.
        val_as_test: give validation clips the TEST split (the paper's protocol).

    Returns:
        ClipTable, clip ids ``<part>/<Class>/<file or folder name>``, ``num_frames`` 0
        (filled in by the disk check).
    """
    root = Path(root)
    classes = resolve_classes(classes)
    if isinstance(parts, str):
        parts = tuple(p.strip() for p in parts.split(",") if p.strip())
    ids, sources, kinds, labels, splits, ignored = [], [], [], [], [], []
    for part in parts:
        if part not in PARTS:
            raise DataError(f"AFEW part {part!r} unknown; expected train or val")
        folder, code = PARTS[part]
        if part == "val" and val_as_test:
            code = Split.TEST
        top = root / folder
        if not top.is_dir():
            raise DataError(f"{top}: AFEW folder not found (expected {root}/{folder}/<Class>/*.avi)")
        for cdir in sorted(top.iterdir()):
            if cdir.name.startswith("."):
                continue
            if not cdir.is_dir():
                ignored.append(str(cdir))
                continue
            k = label_index(cdir.name, classes, cdir, allow_index=False)
            for clip in sorted(cdir.iterdir()):
                if clip.name.startswith("."):
                    continue
                if clip.is_dir():
                    kind = ClipKind.FRAMES
                elif clip.suffix.lower() in VIDEO_EXTENSIONS:
                    kind = ClipKind.VIDEO
                else:
                    ignored.append(str(clip))
                    continue
                ids.append(f"{part}/{cdir.name}/{clip.name}")
                sources.append(str(clip))
                kinds.append(kind)
                labels.append(k)
                splits.append(code)
    if not ids:
        raise DataError(f"{root}: no AFEW clips found in {[PARTS[p][0] for p in parts]}")
    return ClipTable.build(classes, ids, sources, kind=np.asarray(kinds, np.uint8), label=labels, split=splits,
                           name="afew", meta={"root": str(root), "ignored": ignored})
