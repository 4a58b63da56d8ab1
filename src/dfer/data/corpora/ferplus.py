"""FER+ (Barsoum et al., *Training Deep Networks for Facial Expression Recognition with
Crowd-Sourced Label Distribution*, ICMI 2016): FER2013's 48x48 grey faces, each tagged by
ten annotators into eight emotions plus ``unknown`` and ``NF`` (not a face).

Read in either form users have it:

1. **The folders FER+'s ``generate_training_data.py`` writes**: ``FER2013Train/``,
   ``FER2013Valid/``, ``FER2013Test/`` (any subset), each holding the PNGs and a
   ``label.csv`` without header, one row per image::

       fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0

   (name, face box, votes for neutral, happiness, surprise, sadness, anger, disgust, fear,
   contempt, unknown, NF).
2. **Kaggle's ``fer2013.csv``** (``emotion,pixels,Usage``: 2304 grey values as text) with
   Microsoft's **``fer2013new.csv``** beside it (``Usage,Image name,<10 vote columns>``).
   The two files have the same rows in the same order; FER+ names the image of row *i*
   by ``fer2013new.csv``'s ``Image name`` of row *i* (a row with an empty name has no FER+
   labels and is skipped), and that name is **not** ``fer%07d.png % i`` for every row, so
   rows are joined by position and named by the name FER+ gives. The images are written
   once as PNGs into a cache folder (``cache=``), exactly as the generator would; the
   folder remembers which pair of files it was written from, and is rewritten when they
   change. Every row is checked before the first image is written.

Splits: ``FER2013Train`` / ``Training`` -> train, ``FER2013Valid`` / ``PublicTest`` -> val,
``FER2013Test`` / ``PrivateTest`` -> test.

Votes are the eight emotion columns; soft labels are those votes over their sum (the
``unknown`` and ``NF`` votes are left out, as FER+ does). The FER+ paper drops an image whose
most votes go to ``unknown`` or ``NF`` (an emotion tied with them keeps the image):
``exclude_unknown=True``, the default. With it off, an image with no emotion vote at all
keeps NaN votes, and training stops on it before anything is built (see
:meth:`dfer.data.table.ClipTable.resolve_labels`, which also decides the hard label of the
images whose top emotion votes tie: ``data.ties``). This is the paper's exclusion rule only:
FER+'s own training script also zeroes single votes as outliers and, for majority-vote
training, drops images without a strict majority; dfer keeps every vote as given.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
from pathlib import Path

import numpy as np

from dfer.data.corpora.textio import read_text
from dfer.data.table import ClipKind, ClipTable, SPLIT_NAMES, Split
from dfer.emotions import FERPLUS8
from dfer.errors import DataError, where
from dfer.io import atomic_path, claim_folder, file_kind

#: folder written by FER+'s generator -> (Kaggle ``Usage`` value, split)
FOLDERS = {
    "FER2013Train": ("Training", Split.TRAIN),
    "FER2013Valid": ("PublicTest", Split.VAL),
    "FER2013Test": ("PrivateTest", Split.TEST),
}
USAGE = {usage: (folder, split) for folder, (usage, split) in FOLDERS.items()}
#: the ten vote columns of FER+, in its order (the first eight are FERPLUS8's classes)
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                "unknown", "NF")
SIDE = 48
#: in each folder of the Kaggle form's cache: the digest of the two CSV files it was written from
STAMP = ".written-from"


def load_ferplus(
    root: str | os.PathLike,
    *,
    splits: tuple[str, ...] | list[str] | str | None = None,
    exclude_unknown: bool = True,
    check_images: bool = True,
    cache: str | os.PathLike | None = None,
) -> "ClipTable":
    """Read FER+ from its generator's folders, or from ``fer2013.csv`` + ``fer2013new.csv``.

    Args:
        root: a folder holding ``FER2013Train`` / ``FER2013Valid`` / ``FER2013Test`` (any of
            them), or holding ``fer2013.csv`` and ``fer2013new.csv``, or ``fer2013.csv``
            itself (``fer2013new.csv`` lies beside it).
        splits: which of ``train``, ``val``, ``test`` to read (default: every one present);
            a comma-separated str is accepted.
        exclude_unknown: drop images whose most votes are ``unknown`` or ``NF`` (FER+).
        check_images: in the folder form, check that every image exists and has the size
            of its face box (one header read per image).
        cache: where the Kaggle form's images are written (default
            ``$XDG_CACHE_HOME/dfer/ferplus/<hash of the two CSV files>``). Each of its
            folders records which two files it was written from (``.written-from``); a
            folder written from others is written again.

    Returns:
        ClipTable with the eight FER+ classes, ids ``FER2013Train/fer0000000.png``, one
        still image per clip, ten-annotator votes, train/val/test split.

    Raises:
        DataError: naming the file and line of anything malformed.
    """
    root = Path(root)
    wanted = _wanted_splits(splits)
    kaggle = root if root.is_file() else root / "fer2013.csv"
    if kaggle.is_file() and not any((root / f).is_dir() for f in FOLDERS):
        rows = _read_kaggle(kaggle, kaggle.parent / "fer2013new.csv", wanted, cache)
    else:
        rows = _read_folders(root, wanted, check_images)
    ids, sources, votes, split = rows
    votes = np.asarray(votes, np.float32).reshape(-1, len(VOTE_COLUMNS))
    split = np.asarray(split, np.uint8)
    emotion = votes[:, :8]
    # argmax takes the first of tied columns, so an emotion tied with unknown / NF keeps the image
    unknown = votes.argmax(axis=1) >= 8 if len(votes) else np.zeros(0, bool)
    if exclude_unknown:
        keep = ~unknown
        ids, sources = np.asarray(ids)[keep], np.asarray(sources)[keep]
        emotion, split = emotion[keep], split[keep]
        excluded = int(unknown.sum())
    else:
        excluded = 0
        emotion = emotion.copy()
        emotion[emotion.sum(axis=1) <= 0] = np.nan  # no emotion vote: no usable label
    if len(ids) == 0:
        names = [Split(code).name.lower() for code in sorted(wanted)]
        raise DataError(f"{root}: no FER+ images in the split(s) {', '.join(names)}"
                        + (" once those whose most votes are unknown or NF are left out" if excluded else ""))
    return ClipTable.build(FERPLUS8, ids, sources, kind=np.full(len(ids), int(ClipKind.IMAGE), np.uint8),
                           num_frames=np.ones(len(ids), np.int32), votes=emotion, split=split, name="ferplus",
                           meta={"root": str(root), "excluded_unknown": excluded})


def _wanted_splits(splits) -> set[int]:
    if splits is None:
        return {int(s) for _, s in FOLDERS.values()}
    if isinstance(splits, str):
        splits = [s.strip() for s in splits.split(",") if s.strip()]
    out = set()
    for s in splits:
        code = SPLIT_NAMES.get(str(s).lower())
        if code not in (Split.TRAIN, Split.VAL, Split.TEST):
            raise DataError(f"FER+ split {s!r} unknown; expected train, val or test")
        out.add(int(code))
    if not out:
        raise DataError("FER+ splits: none given; expected some of train, val, test")
    return out


# ---------------------------------------------------------------------- the generator's folders
def _read_folders(root: Path, wanted: set[int], check_images: bool):
    present = [(f, s) for f, (_, s) in FOLDERS.items() if int(s) in wanted and (root / f).is_dir()]
    if not present:
        names = [f for f, (_, s) in FOLDERS.items() if int(s) in wanted]
        raise DataError(f"{root}: no FER+ folder found (expected {', '.join(names)} with a label.csv, or "
                        f"fer2013.csv with fer2013new.csv)")
    ids, sources, votes, split = [], [], [], []
    for folder, code in present:
        label_csv = root / folder / "label.csv"
        if not label_csv.is_file():
            raise DataError(f"{label_csv}: FER+ label file not found (the folder holds no label.csv)")
        seen: dict[str, int] = {}
        for line, row in _csv_rows(label_csv):
            if len(row) != 12:
                raise DataError(f"{where(label_csv, line)}: expected 12 cells (name, face box, 10 votes), "
                                f"found {len(row)}")
            name = _name(row[0], seen, label_csv, line)
            box = _box(row[1], label_csv, line)
            row_votes = _votes(row[2:], label_csv, line)
            path = root / folder / name
            if check_images:
                _check_image(path, box, label_csv, line)
            ids.append(f"{folder}/{name}")
            sources.append(os.path.abspath(path))
            votes.append(row_votes)
            split.append(int(code))
    return ids, sources, votes, split


def _csv_rows(path: Path, what: str = "FER+ label file"):
    text = read_text(path, what)
    for line, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if row and any(c.strip() for c in row):
            yield line, row


def _name(cell: str, seen: dict[str, int], path: Path, line: int) -> str:
    """An image's file name, once per file (``seen``: name -> line of its first row)."""
    name = cell.strip()
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise DataError(f"{where(path, line)}: image name {cell!r} is not a file name like fer0000000.png")
    if name in seen:
        raise DataError(f"{where(path, line)}: image {name} is named again (first on line {seen[name]})")
    seen[name] = line
    return name


def _box(cell: str, path: Path, line: int) -> tuple[int, int, int, int]:
    parts = cell.strip().strip("()").split(",")
    try:
        box = tuple(int(p) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise DataError(f"{where(path, line)}: face box {cell!r} is not '(left, top, right, bottom)' in pixels")
    return box  # type: ignore[return-value]


def _votes(cells: list[str], path: Path, line: int) -> list[int]:
    out = []
    for name, c in zip(VOTE_COLUMNS, cells):
        c = c.strip()
        if not (c.isascii() and c.isdigit()):  # str.isdigit alone admits '²', which int() refuses
            raise DataError(f"{where(path, line)}: vote for {name} is {c!r}, expected a non-negative integer")
        out.append(int(c))
    if not any(out):
        raise DataError(f"{where(path, line)}: every vote is 0; expected the counts of the annotators' tags")
    return out


def _check_image(path: Path, box, label_csv: Path, line: int) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # a FIFO would hang the reader: refused by name
            raise DataError(f"{where(label_csv, line)}: image {path} is {file_kind(mode)}, expected an image file")
        with Image.open(path) as img:
            size = img.size
    except FileNotFoundError:
        raise DataError(f"{where(label_csv, line)}: image {path} not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{where(label_csv, line)}: image {path} cannot be read ({e})") from None
    expected = (box[2] - box[0], box[3] - box[1])
    if size != expected:
        raise DataError(f"{where(label_csv, line)}: image {path} is {size[0]}x{size[1]}, the face box says "
                        f"{expected[0]}x{expected[1]}")


# ---------------------------------------------------------------------- Kaggle's CSV + FER+'s CSV
def _read_kaggle(kaggle: Path, new: Path, wanted: set[int], cache):
    if not new.is_file():
        raise DataError(f"{new}: fer2013new.csv not found beside {kaggle.name} (FER+'s labels, from Microsoft)")
    k_rows = list(_csv_rows(kaggle, "Kaggle FER2013 file"))
    n_rows = list(_csv_rows(new, "FER+ label file"))
    for p, rows in ((kaggle, k_rows), (new, n_rows)):
        if not rows:
            raise DataError(f"{p}: empty; expected a header line and one row per image")
    k_head, n_head = k_rows[0][1], n_rows[0][1]
    k_cols = _columns(k_head, ("emotion", "pixels", "Usage"), kaggle, k_rows[0][0])
    n_cols = _columns(n_head, ("Usage", "Image name") + VOTE_COLUMNS, new, n_rows[0][0])
    k_rows, n_rows = k_rows[1:], n_rows[1:]
    if len(k_rows) != len(n_rows):
        raise DataError(f"{new}: {len(n_rows)} rows, but {kaggle} has {len(k_rows)}; FER+ labels the rows of "
                        f"fer2013.csv in order, so both must have the same rows")
    digest = hashlib.sha256()
    for p in (kaggle, new):
        st = p.stat()
        digest.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    # the default folder is keyed on where the CSV files lie, not on their contents: an edited
    # or touched pair rewrites its folder (the stamp below) instead of leaving an orphan beside it
    where_from = hashlib.sha256(f"{kaggle.resolve()}:{new.resolve()}".encode()).hexdigest()[:16]
    cache_dir = Path(os.path.abspath(cache)) if cache else _default_cache() / where_from
    key = digest.hexdigest()
    # a folder of the cache written whole from these very files is trusted (its rows were all
    # checked then); any other is checked and written again, so that an explicit cache= never
    # serves the faces of an older pair of files
    fresh = {folder: _read_stamp(cache_dir / folder) == key for folder in FOLDERS}
    ids, sources, votes, split, todo = [], [], [], [], []
    seen: dict[str, dict[str, int]] = {folder: {} for folder in FOLDERS}
    for (kline, krow), (nline, nrow) in zip(k_rows, n_rows):
        usage = krow[k_cols["Usage"]].strip() if len(krow) == len(k_head) else None
        if usage is None:
            raise DataError(f"{where(kaggle, kline)}: expected {len(k_head)} cells, found {len(krow)}")
        if len(nrow) != len(n_head):
            raise DataError(f"{where(new, nline)}: expected {len(n_head)} cells, found {len(nrow)}")
        if usage not in USAGE:
            raise DataError(f"{where(kaggle, kline)}: Usage {usage!r} unknown; expected one of {sorted(USAGE)}")
        if nrow[n_cols["Usage"]].strip() != usage:
            raise DataError(f"{where(new, nline)}: Usage {nrow[n_cols['Usage']].strip()!r} does not match "
                            f"{usage!r} on line {kline} of {kaggle}: the two files do not hold the same rows")
        if not nrow[n_cols["Image name"]].strip():
            continue  # FER+ has no labels for this image
        folder, code = USAGE[usage]
        if int(code) not in wanted:
            continue
        name = _name(nrow[n_cols["Image name"]], seen[folder], new, nline)
        path = cache_dir / folder / name
        ids.append(f"{folder}/{name}")
        sources.append(str(path))
        votes.append(_votes([nrow[n_cols[c]] for c in VOTE_COLUMNS], new, nline))
        split.append(int(code))
        if not fresh[folder] or not path.is_file():
            todo.append((path, krow[k_cols["pixels"]], kline))
    pixels = [(path, _pixels(text, kaggle, line)) for path, text, line in todo]  # every row checked first
    if pixels or not all(fresh[f] for f in FOLDERS if seen[f]):
        # never a folder of the user's images: one made by dfer, or an earlier dfer's cache
        claim_folder(cache_dir, "ferplus-cache", "the FER+ cache (the Kaggle form's option cache)",
                     _is_earlier_cache)
    _write_images(pixels, overwrite={folder for folder, ok in fresh.items() if not ok})
    for folder, ok in fresh.items():
        if not ok and seen[folder]:
            _write_stamp(cache_dir / folder, key)
    return ids, sources, votes, split


def _columns(header: list[str], needed: tuple[str, ...], path: Path, line: int) -> dict[str, int]:
    cols = {h.strip(): i for i, h in enumerate(header)}
    missing = [c for c in needed if c not in cols]
    if missing:
        raise DataError(f"{where(path, line)}: header lacks column(s) {missing}; found {[h.strip() for h in header]}")
    return cols


def _pixels(text: str, path: Path, line: int) -> np.ndarray:
    values = text.split()
    if len(values) != SIDE * SIDE:
        raise DataError(f"{where(path, line)}: pixels hold {len(values)} values, expected {SIDE * SIDE} "
                        f"({SIDE}x{SIDE} grey levels)")
    try:
        px = np.array(values, dtype=np.int64)
    except ValueError:
        raise DataError(f"{where(path, line)}: pixels must be integers 0..255") from None
    if px.min() < 0 or px.max() > 255:
        raise DataError(f"{where(path, line)}: pixels must be integers 0..255, found {px.min()}..{px.max()}")
    return px.astype(np.uint8).reshape(SIDE, SIDE)


def _write_images(pixels: list[tuple[Path, np.ndarray]], overwrite: set[str]) -> None:
    """Write each face as an 8-bit grey PNG, unless the cache already holds it and its folder
    is not in ``overwrite`` (folders written from other files)."""
    from PIL import Image

    for path, px in pixels:
        if path.is_file() and path.parent.name not in overwrite:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Image.fromarray(px, mode="L").save(tmp, format="PNG")


def _is_earlier_cache(cache_dir: Path) -> bool:
    """A cache written before dfer marked its folders: each of its FER+ folders stamped."""
    present = [f for f in FOLDERS if (cache_dir / f).is_dir()]
    return bool(present) and all((cache_dir / f / STAMP).is_file() for f in present)


def _read_stamp(folder: Path) -> str:
    try:
        return (folder / STAMP).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def _write_stamp(folder: Path, key: str) -> None:
    """Mark ``folder`` as written whole from the files whose digest is ``key``."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / STAMP) as tmp:
        tmp.write_text(key + "\n", encoding="ascii")


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dfer" / "ferplus"
