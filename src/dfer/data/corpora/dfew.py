"""DFEW (Jiang et al., ACM MM 2020) read as it is distributed.

The MIDAS paper (Kawamura et al., Sec. 4.1) trains on DFEW's soft labels: each clip was
labelled by S = 10 annotators, and its soft label is the vote average
``q_i = (1/S) sum_s v_i^(s)`` (Eq. 9). dfer computes soft labels as votes / row sum
(:meth:`dfer.data.table.ClipTable.soft_labels`), which equals Eq. 9 when every row holds
S votes; :func:`load_dfew` checks that every vote row sums to ``check_annotators``.

Layout read (see ``docs/datasets.md``)::

    ROOT/Clip/clip_224x224/<id>/<frame>.jpg          (or clip_224x224_16f, or a video folder)
    ROOT/EmoLabel_DataSplit/test(single-labeled)/set_1.csv .. set_5.csv    video_name,label
    ROOT/EmoLabel_DataSplit/train(single-labeled)/set_1.csv .. set_5.csv
    ROOT/Annotation/annotation.xlsx   1happy,2sad,3neutral,4angry,5surprise,6disgust,7fear,order,label

The fold of a clip is the test set it belongs to (1..5); train set k must be exactly the
clips of the other test sets. Hard labels come from the CSVs (1..7 -> 0..6 in DFEW order,
which is :data:`dfer.emotions.BASIC7`) and must agree with the sheet's ``label`` column.
Vote columns are matched by *name* ("1happy" -> happy), never by position.
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path

import numpy as np

from dfer.data.corpora.textio import read_text
from dfer.data.table import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ClipKind, ClipTable
from dfer.emotions import BASIC7, canonical, resolve_classes
from dfer.errors import ConfigError, DataError, where

TEST_DIR = "EmoLabel_DataSplit/test(single-labeled)"
TRAIN_DIR = "EmoLabel_DataSplit/train(single-labeled)"
ANNOTATION = "Annotation/annotation.xlsx"
NUM_FOLDS = 5


def dfew_id(name: str) -> str:
    """Normalise a DFEW clip name to its folder name: ``"1"`` / ``"00001"`` -> ``"00001"``.

    Names that are not all digits are kept as they are.
    """
    name = name.strip()
    return f"{int(name):05d}" if name.isdigit() else name


def _read_folds(root: Path) -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
    """(test fold, label, file:line) of every clip in DFEW's five test sets, checked against
    its five train sets: the test sets partition the clips and train set k is every clip
    not in test set k, with the same labels."""
    test_sets = [_read_split(root, TEST_DIR, k) for k in range(1, NUM_FOLDS + 1)]
    label_of: dict[str, int] = {}
    fold_of: dict[str, int] = {}
    where_of: dict[str, str] = {}
    for k, rows in enumerate(test_sets, start=1):
        for cid, lab, loc in rows:
            if cid in fold_of:
                raise DataError(f"{loc}: clip {cid} is already in test set_{fold_of[cid]} ({where_of[cid]}); "
                                f"the test sets must partition the clips")
            fold_of[cid], label_of[cid], where_of[cid] = k, lab, loc
    for k in range(1, NUM_FOLDS + 1):
        train = _read_split(root, TRAIN_DIR, k)
        path = root / TRAIN_DIR / f"set_{k}.csv"
        seen = set()
        for cid, lab, loc in train:
            if cid not in fold_of:
                raise DataError(f"{loc}: clip {cid} is in train set_{k} but in no test set")
            if fold_of[cid] == k:
                raise DataError(f"{loc}: clip {cid} is in train set_{k} and in test set_{k} ({where_of[cid]})")
            if lab != label_of[cid]:
                raise DataError(f"{loc}: clip {cid} has label {lab + 1}, but {where_of[cid]} gives {label_of[cid] + 1}")
            seen.add(cid)
        expected = {c for c, f in fold_of.items() if f != k}
        lacking = sorted(expected - seen)
        if lacking:
            raise DataError(f"{path}: train set_{k} lacks {len(lacking)} clip(s) of the other test sets, "
                            f"e.g. {lacking[:5]}; expected train set_{k} = all clips not in test set_{k}")
    return fold_of, label_of, where_of


def _media(frames_dir: Path, ids: list[str], frames: str) -> tuple[list, list, list]:
    """(source path, kind, frames on disk) of each clip: its frame folder or its video."""
    if not frames_dir.is_dir():
        raise DataError(f"{frames_dir}: DFEW frame/video folder not found (frames={frames!r})")
    entries = _index_media(frames_dir)
    source, kind, num_frames = [], [], []
    for cid in ids:
        e = entries.get(cid)
        if e is None:
            raise DataError(f"clip {cid}: no frame folder or video {frames_dir / cid} found")
        path, is_dir = e
        if is_dir:
            n = count_frames(path)
            if n == 0:
                raise DataError(f"clip {cid}: frame folder {path} holds no image files")
            source.append(path), kind.append(ClipKind.FRAMES), num_frames.append(n)
        else:
            source.append(path), kind.append(ClipKind.VIDEO), num_frames.append(0)
    return source, kind, num_frames


def load_dfew(
    root: str | os.PathLike,
    *,
    frames: str = "clip_224x224",
    classes: str | tuple[str, ...] = BASIC7,
    include_unlabelled: bool = False,
    check_annotators: int | None = 10,
) -> ClipTable:
    """Index DFEW from its own files.

    Soft labels are the votes divided by their row sum (``ClipTable.soft_labels``); with
    ``check_annotators=10`` every row is checked to hold 10 votes, so this equals the
    division by the number of annotators of MIDAS Eq. 9.

    Args:
        root: the DFEW folder (holding ``Clip``, ``EmoLabel_DataSplit``, ``Annotation``).
        frames: a folder name under ``ROOT/Clip`` (``"clip_224x224"``, ``"clip_224x224_16f"``,
            ``"clip_224x224_avi"``) or any path to a folder holding one frame folder or one
            video file (``<id>.avi`` / ``.mp4`` ...) per clip.
        classes: target class set; must contain the seven DFEW classes (any order, extra
            classes get zero votes). Labels and votes are mapped by name.
        include_unlabelled: also index the annotated clips in no test set (DFEW's ties);
            they get fold 0 and label -1 (or the sheet's label if it has one).
        check_annotators: the votes every row must sum to; ``None`` accepts any positive
            sum and records the sums found in ``meta["vote_sums"]``.

    Returns:
        ClipTable named ``"dfew"``: clip_id = five-digit id, source = frame folder or
        video, num_frames = image files in the folder (0 for videos), votes (N, C)
        float32, label int16, fold 1..5.

    Raises:
        DataError: naming the file and line (CSV) or row (sheet) of anything missing,
            malformed or inconsistent, or the clip id and path of a missing/empty folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: DFEW root folder not found")
    target = resolve_classes(classes)
    missing = [c for c in BASIC7 if c not in target]
    if missing:
        raise ConfigError(f"classes {list(target)} lack the DFEW classes {missing}; DFEW labels cannot be mapped")
    to_target = np.array([target.index(c) for c in BASIC7])

    fold_of, label_of, where_of = _read_folds(root)
    ann = _read_annotation(root / ANNOTATION, check_annotators)
    for cid, lab in label_of.items():
        if cid not in ann:
            raise DataError(f"{where_of[cid]}: clip {cid} is not in {root / ANNOTATION}")
        row, _, sheet_label = ann[cid]
        if sheet_label != lab:
            raise DataError(f"{where_of[cid]}: clip {cid} has label {lab + 1} but {where(root / ANNOTATION, row)} "
                            f"has label {sheet_label + 1}")
    ids = sorted(fold_of, key=_id_key)
    if include_unlabelled:
        ids += sorted((c for c in ann if c not in fold_of), key=_id_key)
    frames_dir = Path(frames) if (os.sep in frames or "/" in frames or Path(frames).is_absolute()) \
        else root / "Clip" / frames
    source, kind, num_frames = _media(frames_dir, ids, frames)

    C = len(target)
    votes = np.zeros((len(ids), C), np.float32)
    label = np.full(len(ids), -1, np.int64)
    for i, cid in enumerate(ids):
        _, v, sheet_label = ann[cid]
        votes[i, to_target] = v
        lab = label_of.get(cid, sheet_label)
        label[i] = to_target[lab] if lab >= 0 else -1
    meta = {"root": str(root), "frames": str(frames_dir), "annotators": check_annotators,
            "soft_label": "votes / row sum"}
    if check_annotators is None:
        sums, counts = np.unique(votes.sum(axis=1).astype(int), return_counts=True)
        meta["vote_sums"] = {int(s): int(c) for s, c in zip(sums, counts)}
    return ClipTable.build(
        target, ids, source, kind=kind, num_frames=num_frames, votes=votes, label=label,
        fold=[fold_of.get(c, 0) for c in ids], name="dfew", meta=meta,
    )


# ---------------------------------------------------------------------------- helpers
def count_frames(folder: str | os.PathLike) -> int:
    """Number of image files directly in ``folder`` (0 if it is missing)."""
    try:
        with os.scandir(folder) as it:
            return sum(1 for e in it if e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return 0


def _id_key(cid: str):
    return (0, int(cid), cid) if cid.isdigit() else (1, 0, cid)


def _index_media(folder: Path) -> dict[str, tuple[str, bool]]:
    """clip id -> (absolute path, is a folder) for every sub-folder and video file."""
    out: dict[str, tuple[str, bool]] = {}
    with os.scandir(folder) as it:
        for e in it:
            if e.is_dir():
                out[dfew_id(e.name)] = (os.path.abspath(e.path), True)
            elif e.name.lower().endswith(VIDEO_EXTENSIONS):
                out.setdefault(dfew_id(os.path.splitext(e.name)[0]), (os.path.abspath(e.path), False))
    return out


def _read_split(root: Path, sub: str, k: int) -> list[tuple[str, int, str]]:
    """Rows of one split CSV as (clip id, 0-based label, 'file:line')."""
    path = root / sub / f"set_{k}.csv"
    if not path.is_file():
        raise DataError(f"{sub}/set_{k}.csv not found under {root}")
    text = read_text(path, "DFEW split file")
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != ["video_name", "label"]:
        raise DataError(f"{where(path, 1)}: expected the header 'video_name,label', found {','.join(header or [])!r}")
    rows, seen = [], {}
    for line, rec in enumerate(reader, start=2):
        if not rec or all(not f.strip() for f in rec):
            continue
        loc = where(path, line)
        if len(rec) != 2:
            raise DataError(f"{loc}: expected 2 fields 'video_name,label', found {len(rec)}: {','.join(rec)!r}")
        cid, lab = dfew_id(rec[0]), rec[1].strip()
        if not cid:
            raise DataError(f"{loc}: empty video_name")
        try:
            value = int(lab)
        except ValueError:
            raise DataError(f"{loc}: label {lab!r} is not an integer 1..7") from None
        if not 1 <= value <= 7:
            raise DataError(f"{loc}: label {value} is not one of 1..7 (1 happy .. 7 fear)")
        if cid in seen:
            raise DataError(f"{loc}: clip {cid} listed twice (first at line {seen[cid]})")
        seen[cid] = line
        rows.append((cid, value - 1, loc))
    return rows


def _read_annotation(path: Path, check_annotators: int | None) -> dict[str, tuple[int, np.ndarray, int]]:
    """clip id -> (sheet row number, (7,) float64 votes in BASIC7 order, 0-based label or -1)."""
    if not path.is_file():
        raise DataError(f"{path}: DFEW annotation sheet not found")
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises zipfile/KeyError/... on a broken file
        raise DataError(f"{path}: cannot be read as an .xlsx workbook ({type(e).__name__}: {e})") from None
    try:
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise DataError(f"{where(path, 1)}: empty sheet, expected the header "
                            f"'1happy,2sad,3neutral,4angry,5surprise,6disgust,7fear,order,label'")
        col: dict[str, int] = {}
        for j, h in enumerate(header):
            if h is None:
                continue
            name = str(h).strip().lower()
            if name in ("order", "label"):
                col[name] = j
                continue
            try:
                c = canonical(re.sub(r"^\d+", "", name))
            except DataError:
                continue
            if c in BASIC7:
                col[c] = j
        need = [*BASIC7, "order", "label"]
        lacking = [n for n in need if n not in col]
        if lacking:
            raise DataError(f"{where(path, 1)}: header lacks the column(s) {lacking}; found "
                            f"{[h for h in header if h is not None]}")
        out: dict[str, tuple[int, np.ndarray, int]] = {}
        off_sum: list[str] = []
        for r, rec in enumerate(rows, start=2):
            if rec is None or all(v is None for v in rec):
                continue
            loc = where(path, r)
            cid_raw = rec[col["order"]] if col["order"] < len(rec) else None
            cid = _cell_id(cid_raw, loc)
            v = np.empty(7)
            for i, c in enumerate(BASIC7):
                x = rec[col[c]] if col[c] < len(rec) else None
                v[i] = _cell_number(x, loc, c)
            if (v < 0).any():
                raise DataError(f"{loc}: clip {cid} has negative votes {v.astype(int).tolist()}")
            if v.sum() <= 0:
                raise DataError(f"{loc}: clip {cid} has votes that are all zero")
            if check_annotators is not None and v.sum() != check_annotators:
                off_sum.append(f"row {r} (clip {cid}) sums to {v.sum():g}")
            lab = _cell_number(rec[col["label"]] if col["label"] < len(rec) else None, loc, "label")
            if lab != int(lab) or not 0 <= lab <= 7:
                raise DataError(f"{loc}: clip {cid} has label {lab:g}, expected 0 (no single label) or 1..7")
            if cid in out:
                raise DataError(f"{loc}: clip {cid} appears twice in the sheet (first at row {out[cid][0]})")
            out[cid] = (r, v, int(lab) - 1)
        if off_sum:
            raise DataError(f"{path}: {len(off_sum)} vote row(s) do not sum to {check_annotators} annotators: "
                            f"{'; '.join(off_sum[:5])}{' ...' if len(off_sum) > 5 else ''} "
                            f"(to accept them, set data.source.options.check_annotators=null; in Python, "
                            f"check_annotators=None)")
        return out
    finally:
        wb.close()


def _cell_number(x, loc: str, what: str) -> float:
    if isinstance(x, bool) or x is None:
        raise DataError(f"{loc}: column {what!r} is empty or not a number ({x!r})")
    if isinstance(x, (int, float)):
        v = float(x)
    else:
        try:
            v = float(str(x).strip())
        except ValueError:
            raise DataError(f"{loc}: column {what!r} holds {x!r}, expected a number") from None
    if math.isnan(v) or math.isinf(v):
        raise DataError(f"{loc}: column {what!r} holds {x!r}, expected a finite number")
    return v


def _cell_id(x, loc: str) -> str:
    if isinstance(x, float) and x == int(x):
        x = int(x)
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:05d}"
    if isinstance(x, str) and x.strip():
        return dfew_id(x)
    raise DataError(f"{loc}: column 'order' holds {x!r}, expected the clip id")
