"""Community list files (Former-DFER, DFER-CLIP, TSM-style), re-rooted onto the user's disk.

One clip per line, whitespace separated, no header::

    <frame folder path on the author's machine> <num_frames> <0-based label>

The labels index a class order fixed by the list's authors: DFEW and FERV39K lists use
DFEW order (:data:`dfer.emotions.BASIC7`), MAFW lists the community order
(:data:`dfer.emotions.MAFW11_COMMUNITY`), which differs from MAFW's official one. Pass the
list's class order as ``classes``; mapping to another class set goes by name
(:func:`dfer.emotions.label_map`). Paths cannot hold whitespace in this format.

Re-rooting (the paths point at the authors' disks):

* ``strip_prefix`` given: it must be a leading part (whole path components) of every path;
  it is replaced by ``root``. ``Clip ids`` are the remainders (``Action/Happy/0015``).
* only ``root`` given: each path keeps its last ``keep`` components (``keep=None``: the
  fewest that keep every path of the file distinct; 1 for DFEW and MAFW lists, i.e. the
  clip folder ``00001``; 3 for FERV39K, ``Action/Happy/0015``), joined onto ``root``.
* neither: paths are used as written; relative ones are taken relative to the list
  file's folder. Clip ids still follow the ``keep`` rule.

A path that would leave ``root`` (``..`` components, an absolute remainder) is an error, and
so are two lines that are one file however they are spelled (``./a``, ``a//``, ``x/../a``,
absolute, a link to it: :func:`dfer.data.table.real_paths`), within a list or across the
test lists of :func:`load_fold_lists`.
Frame counts in these lists are known to disagree with the disk for some clips: they are
kept in ``num_frames`` as listed; :func:`frame_count_mismatches` compares them with the
folders (and ``check_frames=True`` raises on any difference).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from dfer.data.corpora.dfew import count_frames
from dfer.data.table import SPLIT_NAMES, ClipTable, Split, concat
from dfer.emotions import BASIC7, resolve_classes
from dfer.errors import ConfigError, DataError, where
from dfer.io import MAX_TEXT_BYTES, read_bytes


def load_listfile(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    strip_prefix: str | None = None,
    keep: int | None = None,
    classes: str | tuple[str, ...] = BASIC7,
    kind=None,
    fold: int = 0,
    split: str | None = None,
    check_frames: bool = False,
    name: str | None = None,
) -> ClipTable:
    """Read one community list file.

    Args:
        path: the list file.
        root: folder that replaces the authors' prefix (see the module docstring).
        strip_prefix: the authors' prefix to replace by ``root`` (needs ``root``).
        keep: trailing path components kept per clip when only ``root`` is given
            (``None`` = the fewest that keep the file's paths distinct).
        classes: the list's class order: a class-set name (``"basic7"``,
            ``"mafw11_community"``) or a tuple of names.
        kind: ClipKind for every row, or None to guess from each path's extension.
        fold: fold written on every row (0 = none).
        split: ``"train"``, ``"val"``, ``"test"`` or None.
        check_frames: compare the listed frame counts with the folders on disk and raise
            :class:`DataError` listing the clips that differ.
        name: table name (default: the file's stem).

    Returns:
        ClipTable with clip_id, absolute source, num_frames as listed (int32), label
        (int16, index into ``classes``), no votes.

    Raises:
        DataError: naming ``file:line`` for a malformed line, an out-of-range label, a
            duplicate path or file, non-UTF-8 bytes or a path escaping ``root``; a list
            that is not a regular file or is over :data:`dfer.io.MAX_TEXT_BYTES`.
    """
    path = Path(path)
    classes = resolve_classes(classes)
    if strip_prefix is not None and root is None:
        raise ConfigError(f"{path}: strip_prefix={strip_prefix!r} needs a root to put in its place")
    if split is not None and split.lower() not in SPLIT_NAMES:
        raise ConfigError(f"split {split!r} is not one of train, val, test")
    rows = _parse(path, len(classes))
    raw = [r[1] for r in rows]
    _no_duplicates(path, rows, [os.path.normpath(p.replace("\\", "/")) for p in raw], "normalised path")

    if strip_prefix is not None:
        rel = [_strip(p, strip_prefix, path, line) for line, p, _, _ in rows]
    else:
        parts = [_parts(p) for p in raw]
        k = keep if keep is not None else _fewest_unique(parts)
        if k < 1:
            raise ConfigError(f"keep={k}: expected at least 1 trailing path component")
        rel = ["/".join(pp[-k:]) for pp in parts]
    if root is not None:
        root_abs = os.path.abspath(root)
        source = [_join_inside(root_abs, r, path, line) for r, (line, *_) in zip(rel, rows)]
    else:
        base = path.parent.resolve()
        source = [os.path.abspath(p if os.path.isabs(p) else base / p) for p in raw]

    _no_duplicates(path, rows, rel, "clip id")
    table = ClipTable.build(
        classes, rel, source, kind=kind, num_frames=[r[2] for r in rows], label=[r[3] for r in rows],
        fold=fold, split=SPLIT_NAMES[split.lower()] if split else Split.NONE, name=name or path.stem,
        meta={"list": str(path), "lines": [r[0] for r in rows]},
    ).refuse_repeated_files(at=lambda i: where(path, rows[i][0]), spelled=raw)
    if check_frames:
        bad = frame_count_mismatches(table)
        if bad:
            lines = dict(zip(table.clip_id.tolist(), (r[0] for r in rows)))
            shown = "; ".join(f"{where(path, lines[c])} clip {c}: listed {n}, on disk {d}" for c, n, d in bad[:5])
            raise DataError(f"{path}: {len(bad)} clip(s) have frame counts that differ from the disk: {shown}"
                            f"{' ...' if len(bad) > 5 else ''}")
    return table


def frame_count_mismatches(table: ClipTable) -> list[tuple[str, int, int]]:
    """Clips whose listed ``num_frames`` differ from the image files in their folder.

    Returns:
        (clip_id, listed, on disk) for each differing clip; a missing folder counts 0.
    """
    out = []
    for cid, src, n in zip(table.clip_id.tolist(), table.source.tolist(), table.num_frames.tolist()):
        d = count_frames(src)
        if d != n:
            out.append((cid, int(n), d))
    return out


def load_fold_lists(
    pattern: str | os.PathLike,
    *,
    num_folds: int = 5,
    train_pattern: str | os.PathLike | None = None,
    name: str = "corpus",
    **kw,
) -> ClipTable:
    """Read the test list of each fold into one table with ``fold = k``.

    Args:
        pattern: path with ``{k}`` for the fold number (``lists/DFEW_set_{k}_test.txt``).
        num_folds: folds to read (1..num_folds).
        train_pattern: optional path pattern of the train lists; when given, every train
            list k must hold exactly the clips of the other folds' test lists.
        name: table name. Other keyword arguments go to :func:`load_listfile`.

    Raises:
        DataError: a missing file, a clip in two test lists, or a train list that is not
            the complement of its test list.
    """
    pattern = str(pattern)
    if "{k}" not in pattern:
        raise ConfigError(f"list pattern {pattern!r} needs '{{k}}' where the fold number goes")
    tables = []
    first: dict[str, str] = {}
    at: list[str] = []
    for k in range(1, num_folds + 1):
        f = Path(pattern.format(k=k))
        if not f.is_file():
            raise DataError(f"{f}: fold list not found")
        t = load_listfile(f, fold=k, **kw)
        for cid, line in zip(t.clip_id.tolist(), t.meta["lines"]):
            if cid in first:
                raise DataError(f"{where(f, line)}: clip {cid} is also in {first[cid]}; test lists must not overlap")
            first[cid] = where(f, line)
            at.append(where(f, line))
        tables.append(t)
    # one file under two spellings in two test lists: tested in one fold, trained on in the other
    table = concat(tables, name=name).refuse_repeated_files(at=at.__getitem__)
    if train_pattern is not None:
        test_ids = {k: set(t.clip_id.tolist()) for k, t in enumerate(tables, start=1)}
        for k in range(1, num_folds + 1):
            f = Path(str(train_pattern).format(k=k))
            if not f.is_file():
                raise DataError(f"{f}: fold list not found")
            train = set(load_listfile(f, **kw).clip_id.tolist())
            expected = set().union(*(ids for j, ids in test_ids.items() if j != k))
            if train != expected:
                extra, lacking = sorted(train - expected), sorted(expected - train)
                raise DataError(f"{f}: expected the clips of every test list but fold {k}; "
                                f"{len(extra)} extra (e.g. {extra[:3]}), {len(lacking)} missing (e.g. {lacking[:3]})")
    return table


def load_dfew_lists(folder_or_pattern: str | os.PathLike, *, check_train: bool = True, **kw) -> ClipTable:
    """DFEW's five community test lists (``DFEW_set_{k}_test.txt``) as one table, fold = k.

    Args:
        folder_or_pattern: the folder holding the lists, or a pattern with ``{k}``.
        check_train: also check that ``DFEW_set_{k}_train.txt`` (when present beside the
            test lists) holds exactly the other folds' clips.
        **kw: passed to :func:`load_listfile` (``root``, ``strip_prefix``, ``keep`` ...).
    """
    p = str(folder_or_pattern)
    if "{k}" in p:
        test = p
        train = p.replace("_test", "_train") if "_test" in p else None
    else:
        if not os.path.isdir(p):
            raise DataError(f"{p}: folder of DFEW list files not found")
        test = os.path.join(p, "DFEW_set_{k}_test.txt")
        train = os.path.join(p, "DFEW_set_{k}_train.txt")
    if train is not None and not (check_train and os.path.isfile(train.format(k=1))):
        train = None
    kw.setdefault("classes", BASIC7)
    return load_fold_lists(test, train_pattern=train, name="dfew", **kw)


# ---------------------------------------------------------------------------- helpers
_MAX_FRAMES = 2**31 - 1


def _parse(path: Path, num_classes: int) -> list[tuple[int, str, int, int]]:
    """(line number, path as written, num_frames, label) for each non-blank line."""
    rows = []
    data = read_bytes(path, "list file", limit=MAX_TEXT_BYTES)
    for line, b in enumerate(data.split(b"\n"), start=1):
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{where(path, line)}: not UTF-8 text (byte {b[e.start]:#04x} at column {e.start + 1})") from None
        fields = text.split()
        if not fields:
            continue
        loc = where(path, line)
        if len(fields) != 3:
            raise DataError(f"{loc}: expected 3 fields '<frame folder> <num_frames> <label>', found {len(fields)}: "
                            f"{text.strip()!r}")
        p, n, lab = fields
        try:
            n = int(n)
        except ValueError:
            raise DataError(f"{loc}: frame count {n!r} is not an integer") from None
        if not 0 <= n <= _MAX_FRAMES:  # the table keeps counts as int32: a larger one would wrap
            raise DataError(f"{loc}: frame count {n} is {'negative' if n < 0 else 'beyond any clip'}; "
                            f"expected 0..{_MAX_FRAMES}")
        try:
            lab = int(lab)
        except ValueError:
            raise DataError(f"{loc}: label {lab!r} is not an integer") from None
        if not 0 <= lab < num_classes:
            raise DataError(f"{loc}: label {lab} out of range, expected 0..{num_classes - 1} ({num_classes} classes)")
        rows.append((line, p, n, lab))
    return rows


def _parts(p: str) -> tuple[str, ...]:
    """Path components without the anchor (``/`` or a drive) that a tail must never include."""
    pp = PurePosixPath(p.replace("\\", "/"))
    return pp.parts[1:] if pp.anchor else pp.parts


def _fewest_unique(parts: list[tuple[str, ...]]) -> int:
    """Fewest trailing components that keep all paths distinct (all of them if none does)."""
    longest = max((len(p) for p in parts), default=1)
    for k in range(1, longest + 1):
        tails = {p[-k:] for p in parts}
        if len(tails) == len(parts):
            return k
    return longest  # true duplicates: reported by _no_duplicates with their lines


def _strip(p: str, prefix: str, path: Path, line: int) -> str:
    pp = PurePosixPath(p.replace("\\", "/"))
    pre = PurePosixPath(prefix.replace("\\", "/"))
    try:
        rel = pp.relative_to(pre)
    except ValueError:
        raise DataError(f"{where(path, line)}: path {p!r} does not start with strip_prefix {prefix!r}") from None
    if not rel.parts:
        raise DataError(f"{where(path, line)}: path {p!r} is the strip_prefix itself, expected a clip below it")
    return str(rel)


def _join_inside(root: str, rel: str, path: Path, line: int) -> str:
    if os.path.isabs(rel) or ".." in PurePosixPath(rel).parts:
        raise DataError(f"{where(path, line)}: path {rel!r} would leave the root {root}")
    full = os.path.normpath(os.path.join(root, rel))
    if os.path.commonpath([root, full]) != root:
        raise DataError(f"{where(path, line)}: path {rel!r} would leave the root {root}")
    return full


def _no_duplicates(path: Path, rows, ids, what: str) -> None:
    first: dict[str, int] = {}
    for (line, p, *_), cid in zip(rows, ids):
        if cid in first:
            raise DataError(f"{where(path, line)}: path {p!r} duplicates line {first[cid]} (same {what} {cid!r})")
        first[cid] = line
