"""Generic manifest: any corpus with (optional) annotator votes, as CSV or JSON lines.

One row per clip. Columns (header names; order free):

- ``path`` (required): a frame folder, a video file or a still image (a one-frame clip).
  Relative paths are resolved against ``root`` when given, else the manifest's folder.
  When the user sets ``root``, a path that leaves it (``../x``, or absolute elsewhere) is
  an error: a manifest cannot reach outside the folder it was told to live in. ``..`` is
  judged as the system resolves it (after a link, it climbs from the link's target); a
  plain path may go through a link the user placed inside the root.
  Two rows that are one file (however spelled: ``./a``, ``a//``, ``x/../a``, absolute, a
  link to it) are an error naming both lines (:func:`dfer.data.table.real_paths`).
- ``clip_id``: unique id (default: the ``path`` cell as written).
- ``label``: hard label, an emotion name or a 0-based index into the classes.
- one column per class, the header being the class name (``happy``, ``Sadness``, ...):
  votes or probabilities. A row whose vote cells are all empty has no votes.
- ``fold`` (cross-validation test fold, 1..127; empty/0 = none), ``split``
  (train/val/test), ``group`` (subject, scene, movie: folds never split one),
  ``num_frames`` (empty/0 = unknown, the disk check fills it in).

Any other header is an error (a misspelt class name must not silently vanish). The class
set is the vote columns in header order, or ``classes`` when given (vote columns are then
mapped into it *by name*, and must name exactly its classes).

Scale: parsing is columnar — ``csv.reader`` in chunks, then numpy casts per column;
validation is vectorised and finds the offending line only after something failed. A
1,000,000-clip manifest loads in seconds (``benchmarks/table_scale.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dfer.data.corpora.columns import RawColumns, read_columns
from dfer.data.corpora.textio import inside, label_index, map_unique
from dfer.data.table import (IMAGE_EXTENSIONS, SPLIT_NAMES, VIDEO_EXTENSIONS, ClipKind, ClipTable,
                             first_repeat, real_paths)
from dfer.emotions import BASIC7, canonical, resolve_classes
from dfer.errors import DataError, where

RESERVED = ("path", "clip_id", "label", "fold", "split", "group", "num_frames")


# ---------------------------------------------------------------------------- typed columns
def parse_votes(raw: RawColumns, names: list[str]) -> np.ndarray:
    """(N, C) float32 votes from the numeric columns ``names``; all cells empty -> NaN row.

    Raises:
        DataError: naming the line of the first row with some (not all) cells empty, a
            NaN or infinite vote, a negative vote, or votes that sum to zero.
    """
    votes = np.stack([raw.num[nm] for nm in names], axis=1) if raw.n else np.zeros((0, len(names)), np.float32)
    empty = np.stack([raw.empty[nm] for nm in names], axis=1) if raw.n else np.zeros((0, len(names)), bool)
    allempty = empty.all(axis=1)
    finite = np.isfinite(votes)
    checks = (
        (empty.any(axis=1) & ~allempty, f"some vote cells are empty; fill all of {names} or leave them all empty"),
        (~finite.all(axis=1), "a vote is NaN or infinite; votes must be finite numbers >= 0"),
        ((votes < 0).any(axis=1), "a vote is negative; votes must be numbers >= 0"),
        (~allempty & (np.where(finite, votes, 1).sum(axis=1, dtype=np.float64) <= 0),
         "votes are all zero; a clip with votes needs a positive sum (leave the cells empty for no votes)"),
    )
    for mask, msg in checks:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            cells = ",".join(f"{nm}={raw.cell(nm, i)}" for nm in names)
            raw.fail(i, f"{msg}; found {cells}")
    votes[allempty] = np.nan
    return votes


def parse_ints(raw: RawColumns, name: str, lo: int, hi: int, what: str) -> np.ndarray:
    """Integer column (empty = 0) with values in ``lo..hi``; errors name the line."""
    col = raw.cols[name]

    def conv(s: str) -> int:
        if s == "":
            return 0
        try:
            v = int(s)
        except ValueError:
            raise DataError(f"{what} {s!r} is not an integer") from None
        if not lo <= v <= hi:
            raise DataError(f"{what} {v} out of range; expected {lo}..{hi}")
        return v

    return map_unique(col, conv, raw.fail).astype(np.int64)


def parse_labels(raw: RawColumns, name: str, classes: tuple[str, ...]) -> np.ndarray:
    """Hard labels (int16, -1 = empty cell) from names or 0-based indices into ``classes``."""

    def conv(s: str) -> int:
        return -1 if s == "" else label_index(s, classes)

    return map_unique(raw.cols[name], conv, raw.fail).astype(np.int16)


def parse_split(raw: RawColumns, name: str) -> np.ndarray:
    def conv(s: str) -> int:
        try:
            return int(SPLIT_NAMES[s.lower()])
        except KeyError:
            raise DataError(f"split {s!r} unknown; expected train, val or test") from None

    return map_unique(raw.cols[name], conv, raw.fail).astype(np.uint8)


def kinds_of(paths: np.ndarray) -> np.ndarray:
    """Vectorised :func:`dfer.data.table.kind_of_path` over a str array."""
    # only paths whose last component has a dot get string work (frame folders have none);
    # np.strings.slice(a, n) means a[:n], so both bounds are given
    dot = np.strings.rfind(paths, ".")
    idx = np.flatnonzero(dot > np.strings.rfind(paths, "/") + 1)
    sub = paths[idx]
    ext = np.strings.lower(np.strings.slice(sub, dot[idx], np.strings.str_len(sub)))
    kind = np.full(len(paths), int(ClipKind.FRAMES), np.uint8)
    kind[idx[np.isin(ext, VIDEO_EXTENSIONS)]] = ClipKind.VIDEO
    kind[idx[np.isin(ext, IMAGE_EXTENSIONS)]] = ClipKind.IMAGE
    return kind


def resolve_paths(raw: RawColumns, col: np.ndarray, root: str | os.PathLike | None) -> np.ndarray:
    """Absolute sources for a path column: relative to ``root`` (checked: nothing may
    leave it, as the system resolves ``..`` and links) or, without a root, to the
    manifest's folder."""
    user_root = root is not None
    base = os.path.abspath(root if user_root else raw.path.parent)
    if user_root and not os.path.isdir(base):
        raise DataError(f"--root {base}: folder not found")
    empty = np.flatnonzero(np.strings.str_len(col) == 0)
    if empty.size:
        raw.fail(int(empty[0]), "empty path; expected a frame folder, video or image")
    absolute = np.strings.startswith(col, "/")
    src = np.strings.add(base.rstrip("/") + "/", col)
    if absolute.any():
        src = np.where(absolute, col, src)
    # only rows that may escape (or are spelled untidily) need the per-row normpath
    suspect = np.flatnonzero(absolute | (np.strings.find(col, "..") >= 0) | (np.strings.find(col, "./") >= 0)
                         | (np.strings.find(col, "//") >= 0))
    if suspect.size:
        fixed = [os.path.normpath(s) for s in src[suspect].tolist()]
        if user_root:
            real_base = os.path.realpath(base)
            real = real_paths(src[suspect])
            for i, s, r in zip(suspect.tolist(), fixed, real.tolist()):
                # inside as the system opens it (`..` after a link climbs from the link's target);
                # a plain path inside the root may go through a link the user put there
                climbs = ".." in str(col[i]).split("/")
                if not inside(r, real_base) and (climbs or not inside(s, base)):
                    raw.fail(i, f"path {str(col[i])!r} leaves the root {base}; expected a path inside it")
        src = src.astype(np.result_type(src.dtype, np.array(fixed).dtype)) if fixed else src
        src[suspect] = fixed
    return src


def find_duplicates(raw: RawColumns, ids: np.ndarray, what: str = "clip id") -> None:
    """Raise naming both lines of the first duplicated id (sort-based, vectorised)."""
    pair = first_repeat(ids)
    if pair is not None:
        i, j = pair
        raw.fail(j, f"duplicate {what} {str(ids[j])!r}, first given on line {raw.line(i)}")


def class_columns(path, header: list[str], reserved=RESERVED) -> list[str]:
    """Header names that are classes; a header that is neither reserved nor a class fails
    (a misspelt class name must not silently become an ignored column)."""
    names = []
    for h in header:
        if h.lower() in reserved:
            continue
        try:
            canonical(h)
        except DataError:
            raise DataError(f"{path}: unknown column {h!r} in the header; expected {', '.join(reserved)} "
                            f"or one column per class named after it (e.g. happy, sad)") from None
        names.append(h)
    return names


def vote_order(raw: RawColumns, vote_cols: list[str], classes) -> tuple[tuple[str, ...], list[str]]:
    """Class set and the vote columns ordered like it (mapping by name)."""
    found = tuple(canonical(h) for h in vote_cols)
    if len(set(found)) != len(found):
        raise DataError(f"{raw.path}: two vote columns name the same class: {vote_cols}")
    if classes is None:
        return found, vote_cols
    classes = resolve_classes(classes)
    if set(found) != set(classes):
        raise DataError(f"{raw.path}: vote columns {list(found)} do not match the classes {list(classes)} "
                        f"(missing {sorted(set(classes) - set(found))}, extra {sorted(set(found) - set(classes))})")
    by = dict(zip(found, vote_cols))
    return classes, [by[c] for c in classes]


# ---------------------------------------------------------------------------- the adapter
def load_manifest(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: str | tuple[str, ...] | list[str] | None = None,
    name: str | None = None,
) -> ClipTable:
    """Read a manifest (CSV, TSV or JSON lines) into a :class:`ClipTable`.

    Args:
        path: the manifest file.
        root: folder that relative paths are resolved against (default: the manifest's
            folder); when given, no path may leave it.
        classes: class set (a name such as ``"basic7"`` or a list). Default: the vote
            columns in header order, or :data:`dfer.emotions.BASIC7` without votes.
        name: table name (default: the manifest's file stem).

    Returns:
        The table; ``num_frames`` is 0 unless the manifest gives it (the disk check,
        :func:`dfer.data.check.check_table`, fills it in). Still images get 1.

    Raises:
        DataError: naming file:line for any malformed row (see the module docstring).
    """
    raw = read_columns(path, numeric=lambda header: set(class_columns(path, header)))
    lower = {h.lower(): h for h in raw.header}
    if "path" not in lower:
        raise DataError(f"{raw.path}: no 'path' column in the header {raw.header}")
    vote_cols = class_columns(path, raw.header)
    if vote_cols:
        cls, vote_cols = vote_order(raw, vote_cols, classes)
        votes = parse_votes(raw, vote_cols)
    else:
        cls = resolve_classes(classes) if classes is not None else BASIC7
        votes = None
    col = lambda k: raw.cols[lower[k]]  # noqa: E731
    paths = col("path")
    if np.strings.endswith(paths, "/").any():  # "clips/a/" and "clips/a" are one clip
        paths = np.strings.rstrip(paths, "/")
    source = resolve_paths(raw, paths, root)
    clip_id = col("clip_id") if "clip_id" in lower else paths
    if "clip_id" in lower:
        empty = np.flatnonzero(np.strings.str_len(clip_id) == 0)
        if empty.size:
            raw.fail(int(empty[0]), "empty clip_id")
    label = parse_labels(raw, lower["label"], cls) if "label" in lower else None
    fold = parse_ints(raw, lower["fold"], 0, 127, "fold") if "fold" in lower else None
    split = parse_split(raw, lower["split"]) if "split" in lower else None
    num_frames = parse_ints(raw, lower["num_frames"], 0, 2**31 - 1, "num_frames") if "num_frames" in lower else None
    kind = kinds_of(source)
    if num_frames is None:
        num_frames = (kind == ClipKind.IMAGE).astype(np.int32)
    else:
        bad = np.flatnonzero((kind == ClipKind.IMAGE) & (num_frames > 1))
        if bad.size:
            raw.fail(int(bad[0]), f"a still image has num_frames {num_frames[bad[0]]}; expected 1 (or empty)")
        num_frames = np.where(kind == ClipKind.IMAGE, 1, num_frames)
    meta = {"manifest": str(raw.path), "root": str(root) if root is not None else None}
    if label is not None and votes is not None:
        has = ~np.isnan(votes[:, 0]) & (label >= 0)
        meta["label_vote_disagreements"] = int((votes[has].argmax(axis=1) != label[has]).sum())
    try:
        table = ClipTable.build(cls, clip_id, source, kind=kind, num_frames=num_frames, votes=votes, label=label,
                                fold=fold, split=split, group=col("group") if "group" in lower else None,
                                name=name or raw.path.stem, meta=meta)
    except DataError:
        find_duplicates(raw, clip_id)
        raise
    return table.refuse_repeated_files(at=lambda i: where(raw.path, raw.line(i)), spelled=paths)


# ---------------------------------------------------------------------------- vote sheets
@dataclass
class VoteSheet:
    """Votes per clip id from a generic vote file (FERV39k-Plus style)."""

    path: Path
    clip_id: np.ndarray  # (N,) str, normalised (see normalise_ids)
    votes: np.ndarray  # (N, C) float32
    classes: tuple[str, ...]
    raw: RawColumns


def normalise_ids(ids: np.ndarray) -> np.ndarray:
    """Clip ids comparable across files: no surrounding slashes, no video extension."""
    ids = np.strings.strip(np.strings.strip(ids), "/")
    head, dot, ext = np.strings.rpartition(ids, ".")
    is_vid = np.isin(np.strings.lower(np.strings.add(".", ext)), VIDEO_EXTENSIONS) & (dot == ".")
    return np.where(is_vid, head, ids)


def read_vote_sheet(path: str | os.PathLike, classes=None) -> VoteSheet:
    """Read a vote file: header ``<id column>,<class>,<class>,...``, one row per clip.

    The first column holds the clip id whatever its name; every other header must be a
    class name. Votes are mapped by name into ``classes`` when given.
    """
    vote_names = lambda header: class_columns(path, header, reserved=(header[0].lower(),))  # noqa: E731
    raw = read_columns(path, numeric=lambda header: set(vote_names(header)), what="vote sheet")
    if len(raw.header) < 3:
        raise DataError(f"{raw.path}: expected a clip id column and one column per class, "
                        f"found the header {raw.header}")
    id_col = raw.header[0]
    vote_cols = vote_names(raw.header)
    cls, vote_cols = vote_order(raw, vote_cols, classes)
    votes = parse_votes(raw, vote_cols)
    nov = np.flatnonzero(np.isnan(votes[:, 0]))
    if nov.size:
        raw.fail(int(nov[0]), "row without votes; a vote sheet needs votes on every row")
    ids = normalise_ids(raw.cols[id_col])
    empty = np.flatnonzero(np.strings.str_len(ids) == 0)
    if empty.size:
        raw.fail(int(empty[0]), "empty clip id")
    find_duplicates(raw, ids)
    return VoteSheet(raw.path, ids, votes, cls, raw)


def attach_votes(table: ClipTable, sheet: VoteSheet) -> ClipTable:
    """Copy a vote sheet's votes into ``table`` by clip id (classes mapped by name).

    Every id in the sheet must be a clip of the table (a mismatch in id style would
    otherwise leave every clip without votes); clips the sheet lacks keep NaN votes.
    """
    if set(sheet.classes) != set(table.classes):
        raise DataError(f"{sheet.path}: vote classes {list(sheet.classes)} differ from the corpus classes "
                        f"{list(table.classes)}")
    perm = [sheet.classes.index(c) for c in table.classes]
    tid = normalise_ids(table.clip_id)
    order = np.argsort(tid)
    pos = np.searchsorted(tid[order], sheet.clip_id)
    pos = np.minimum(pos, len(order) - 1) if len(order) else pos
    found = (tid[order][pos] == sheet.clip_id) if len(order) else np.zeros(len(sheet.clip_id), bool)
    miss = np.flatnonzero(~found)
    if miss.size:
        i = int(miss[0])
        sheet.raw.fail(i, f"clip id {str(sheet.clip_id[i])!r} is not in the corpus {table.name!r} "
                          f"({miss.size} such ids; corpus ids look like {str(table.clip_id[0])!r})")
    votes = table.votes.copy()
    votes[order[pos]] = sheet.votes[:, perm]
    meta = dict(table.meta, votes=str(sheet.path))
    has = (table.label >= 0) & ~np.isnan(votes[:, 0])
    meta["label_vote_disagreements"] = int((votes[has].argmax(axis=1) != table.label[has]).sum())
    out = replace(table, votes=votes, meta=meta)
    out.validate()
    return out
