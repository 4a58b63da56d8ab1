"""ClipTable: the one index every corpus adapter produces.

A table is columnar (one numpy array per field, never one Python object per clip) so that
a million-clip manifest stays small and fast to slice. Nothing downstream of an adapter
knows which corpus a table came from.

Fields, one row per clip:

- ``clip_id``: unique id within the table (str).
- ``source``: absolute path of the frame folder, video file or still image (str).
- ``kind``: :class:`ClipKind` code (uint8).
- ``num_frames``: frames available (int32; 0 = not yet known, e.g. an unprobed video).
- ``votes``: (N, C) float32 annotator votes or probabilities; a row of NaN = no votes.
- ``label``: hard label index into ``classes`` (int16; -1 = none).
- ``fold``: index of the cross-validation test fold the clip belongs to (int8; 0 = none).
- ``split``: :class:`Split` code (uint8): which fixed split the clip belongs to.
- ``group``: subject / scene / movie id (str; "" = none). Folds never split a group.
- ``multi_hot``: optional (N, C) bool compound labels (MAFW).

Soft labels are votes normalised by their row sum (not by a fixed number of annotators);
adapters that know the number of annotators check it and report rows that differ.
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dfer.emotions import label_map
from dfer.errors import DataError
from dfer.io import atomic_path
from dfer.targets import soft_labels


class ClipKind(enum.IntEnum):
    FRAMES = 0  # a folder of image files, one per frame
    VIDEO = 1  # a video file decoded with PyAV
    IMAGE = 2  # a still image: a clip of one frame


class Split(enum.IntEnum):
    NONE = 0
    TRAIN = 1
    VAL = 2
    TEST = 3


SPLIT_NAMES = {"": Split.NONE, "none": Split.NONE, "train": Split.TRAIN, "training": Split.TRAIN,
               "val": Split.VAL, "valid": Split.VAL, "validation": Split.VAL,
               "test": Split.TEST, "testing": Split.TEST}

#: the one list of media kinds dfer reads: the corpus readers, preprocess and predict
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

#: rules for the hard label of a clip whose top votes tie (``data.ties``)
TIES = ("drop", "first", "random")


def kind_of_path(path: str) -> ClipKind:
    """Guess a clip's kind from its path: a video or image extension, else a frame folder."""
    ext = os.path.splitext(path)[1].lower()
    if ext in VIDEO_EXTENSIONS:
        return ClipKind.VIDEO
    if ext in IMAGE_EXTENSIONS:
        return ClipKind.IMAGE
    return ClipKind.FRAMES


def real_paths(paths) -> np.ndarray:
    """The file each path really is: :func:`os.path.realpath`, symlinks and ``..`` followed
    as the system follows them when it opens the path. Two sources are one clip exactly
    when their real paths are equal, however they were spelled (``./c01``, ``a//c01``,
    ``a/../a/c01``, absolute, a link to it); this is the one place that says so.

    Each distinct folder is resolved once and listed once (to see which of its entries
    are links), so a million clips in a few folders cost a few system calls, not millions.
    A path that does not exist is normalised as far as the disk allows.

    Returns:
        (N,) str array, absolute.
    """
    paths = np.asarray(paths, dtype=str).reshape(-1)
    folders: dict[str, tuple[str, frozenset]] = {}
    out = []
    for p in paths.tolist():
        # joined, not abspath'd: a lexical normpath would take `link/..` for the folder above `link`
        head, tail = os.path.split(p if os.path.isabs(p) else os.path.join(os.getcwd(), p))
        if tail in ("", ".", ".."):
            out.append(os.path.realpath(p))
            continue
        found = folders.get(head)
        if found is None:
            real = os.path.realpath(head)
            try:
                with os.scandir(real) as it:
                    links = frozenset(e.name for e in it if e.is_symlink())
            except OSError:
                links = frozenset()
            found = folders[head] = (real, links)
        real, links = found
        out.append(os.path.realpath(os.path.join(real, tail)) if tail in links else os.path.join(real, tail))
    return np.asarray(out, dtype=str) if out else np.zeros(0, dtype=str)


def first_repeat(values: np.ndarray) -> tuple[int, int] | None:
    """``(i, j)``, ``i < j``: the first row ``j`` (in sorted order of the values) whose value
    row ``i`` holds too, or None when all values differ. Sort-based, for millions of rows."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    s = values[order]
    dup = np.flatnonzero(s[1:] == s[:-1])
    if not dup.size:
        return None
    return int(order[dup[0]]), int(order[dup[0] + 1])


@dataclass(frozen=True, eq=False)
class ClipTable:
    """Columnar index of clips. Build with :meth:`build`; select rows with :meth:`take`."""

    classes: tuple[str, ...]
    clip_id: np.ndarray
    source: np.ndarray
    kind: np.ndarray
    num_frames: np.ndarray
    votes: np.ndarray
    label: np.ndarray
    fold: np.ndarray
    split: np.ndarray
    group: np.ndarray
    multi_hot: np.ndarray | None = None
    name: str = "corpus"
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        classes: tuple[str, ...],
        clip_id,
        source,
        *,
        kind=None,
        num_frames=None,
        votes=None,
        label=None,
        fold=None,
        split=None,
        group=None,
        multi_hot=None,
        name: str = "corpus",
        meta: dict | None = None,
        validate: bool = True,
    ) -> "ClipTable":
        """Build a table from columns; missing columns get their 'none' value.

        Args:
            classes: class names, canonical (see :mod:`dfer.emotions`).
            clip_id, source: sequences of str, length N.
            kind: ClipKind codes, or None to guess from each source's extension.
            votes: (N, C) votes/probabilities, NaN rows for clips without votes.
            label: hard labels (-1 = none). Other columns as in the module docstring.
        """
        clip_id = np.asarray(clip_id, dtype=str)
        n = len(clip_id)
        source = np.asarray(source, dtype=str)
        C = len(classes)
        if kind is None:
            kind = np.fromiter((kind_of_path(s) for s in source), dtype=np.uint8, count=n)
        table = cls(
            classes=tuple(classes),
            clip_id=clip_id,
            source=source,
            kind=_col(kind, n, np.uint8, 0),
            num_frames=_col(num_frames, n, np.int32, 0),
            votes=(np.full((n, C), np.nan, np.float32) if votes is None
                   else np.asarray(votes, dtype=np.float32).reshape(n, C)),
            label=_col(label, n, np.int16, -1),
            fold=_col(fold, n, np.int8, 0),
            split=_col(split, n, np.uint8, 0),
            group=np.full(n, "", dtype=str) if group is None else np.asarray(group, dtype=str),
            multi_hot=None if multi_hot is None else np.asarray(multi_hot, dtype=bool).reshape(n, C),
            name=name,
            meta=dict(meta or {}),
        )
        if validate:
            table.validate()
        return table

    def validate(self) -> None:
        """Check invariants; raise :class:`DataError` naming the offending clip ids."""
        n = len(self)
        C = len(self.classes)
        for col in ("source", "kind", "num_frames", "label", "fold", "split", "group"):
            if len(getattr(self, col)) != n:
                raise DataError(f"{self.name}: column {col!r} has {len(getattr(self, col))} rows, expected {n}")
        if self.votes.shape != (n, C):
            raise DataError(f"{self.name}: votes have shape {self.votes.shape}, expected {(n, C)}")
        if n == 0:
            return
        uniq, counts = np.unique(self.clip_id, return_counts=True)
        if len(uniq) != n:
            dup = uniq[counts > 1][:5]
            raise DataError(f"{self.name}: duplicate clip ids {_ids(dup)}")
        bad = (self.label < -1) | (self.label >= C)
        if bad.any():
            raise DataError(f"{self.name}: clip {self.clip_id[bad][0]!r} has label {int(self.label[bad][0])}, "
                            f"expected -1..{C - 1}")
        has = ~np.isnan(self.votes).all(axis=1)
        v = self.votes[has]
        if v.size:
            partial_nan = np.isnan(v).any(axis=1)
            infinite = np.isinf(v).any(axis=1)
            neg = (v < 0).any(axis=1)
            zero = np.nan_to_num(v, posinf=0.0).sum(axis=1, dtype=np.float64) <= 0
            for mask, what in ((partial_nan, "NaN votes"), (infinite, "infinite votes"), (neg, "negative votes"),
                               (zero, "votes that are all zero")):
                if mask.any():
                    ids = self.clip_id[has][mask][:5]
                    raise DataError(f"{self.name}: {int(mask.sum())} clip(s) have {what}, e.g. {_ids(ids)}")

    def refuse_repeated_files(self, at=None, spelled=None) -> "ClipTable":
        """This table, once no two of its clips are one file (:func:`real_paths`).

        A clip listed twice under two spellings (or two folds) would be trained on and
        then scored as a test clip; that is refused, naming both.

        Args:
            at: row -> where the row comes from, for the message (``file:line``); default
                the clip id.
            spelled: (N,) the paths as the user wrote them, for the message; default the
                sources.

        Raises:
            DataError: ``<at(j)>: '<path j>' is the same clip as <at(i)> ...``.
        """
        if self.meta.get("files_distinct") or len(self) < 2:
            return self
        real = real_paths(self.source)
        pair = first_repeat(real)
        if pair is not None:
            i, j = pair
            at = at or (lambda k: f"{self.name}: clip {str(self.clip_id[k])!r}")
            spelled = self.source if spelled is None else spelled
            raise DataError(f"{at(j)}: {str(spelled[j])!r} is the same clip as {at(i)} ({str(spelled[i])!r}): both "
                            f"are {real[j]}; a clip listed twice could be trained on and tested on, list it once")
        self.meta["files_distinct"] = True  # rows taken from it stay distinct: not checked again
        return self

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.clip_id)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_votes(self) -> np.ndarray:
        """(N,) bool: which clips carry annotator votes."""
        return ~np.isnan(self.votes).any(axis=1)

    def soft_labels(self) -> np.ndarray:
        """(N, C) float32 rows that sum to 1: votes / row sum, or one-hot of the label.

        Raises:
            DataError: if a clip has neither votes nor a hard label.
        """
        missing = ~self.has_votes & (self.label < 0)
        if missing.any():
            raise DataError(f"{self.name}: clips {_ids(self.clip_id[missing][:5])} have neither votes nor a label")
        return soft_labels(self.votes, self.label)  # votes / row sum, in float64 (dfer.targets)

    def hard_labels(self) -> np.ndarray:
        """(N,) int64 hard labels: the given label, else the majority vote (-1 on a tie)."""
        lab = self.label.astype(np.int64)
        need = (lab < 0) & self.has_votes
        if need.any():
            v = self.votes[need]
            top = v.max(axis=1, keepdims=True)
            tie = (v == top).sum(axis=1) > 1
            lab[np.flatnonzero(need)] = np.where(tie, -1, v.argmax(axis=1))
        return lab

    def resolve_labels(self, ties: str | None, seed: int = 0, where: str = "", *,
                       required: bool = True) -> "ClipTable":
        """This table with every clip's hard label decided, or an error that says how.

        A clip with a given label keeps it; otherwise its label is the class with the most
        votes. Where the top votes tie, ``ties`` (one of :data:`TIES`) decides: ``"drop"``
        leaves the clip out, ``"first"`` takes the first tied class in class order,
        ``"random"`` a tied class drawn with ``seed`` (the same clip gets the same draw in
        any subset of the table). With ``ties`` None a tied clip keeps label -1 (no hard
        label: it counts only in the divergences to the votes) unless ``required``.

        Raises:
            DataError: ``ties`` is None, ``required`` and some clip ties, or a clip has
                neither votes nor a label; the message gives the count, an example clip
                and the setting.
        """
        at = where or self.name
        none = (self.label < 0) & ~self.has_votes
        if none.any():
            raise DataError(f"{at}: {int(none.sum())} clip(s) have neither a label nor votes (e.g. "
                            f"{_ids(self.clip_id[none][:3])}); leave them out of the corpus or give them a label")
        lab = self.label.astype(np.int64)
        need = lab < 0
        v = self.votes[need]
        top = v == v.max(axis=1, keepdims=True)
        tied = top.sum(axis=1) > 1
        if ties not in (None,) + TIES:
            raise DataError(f"data.ties must be drop, first or random, got {ties!r}")
        if ties is None and not required:
            pick = np.where(tied, -1, v.argmax(axis=1))
            lab[np.flatnonzero(need)] = pick
            return self.with_columns(label=lab.astype(np.int16))
        if tied.any() and ties is None:
            raise DataError(f"{at}: {int(tied.sum())} clip(s) have a tie for the most votes (e.g. "
                            f"{_ids(self.clip_id[need][tied][:3])}); set data.ties=drop, first or random to "
                            f"decide their hard label")
        pick = v.argmax(axis=1)
        if ties == "random" and tied.any():
            ids = self.clip_id[need][tied]
            for k, (cid, row) in enumerate(zip(ids, top[tied])):
                draw = int.from_bytes(hashlib.sha256(f"{seed}:{cid}".encode()).digest()[:8], "little")
                options = np.flatnonzero(row)
                pick[np.flatnonzero(tied)[k]] = options[draw % len(options)]
        lab[np.flatnonzero(need)] = pick
        out = self.with_columns(label=lab.astype(np.int16))
        if ties == "drop" and tied.any():
            keep = np.ones(len(self), bool)
            keep[np.flatnonzero(need)[tied]] = False
            out = out.take(keep)
        return out

    def take(self, index) -> "ClipTable":
        """Rows ``index`` (bool mask or integer indices) as a new table."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return replace(
            self,
            clip_id=self.clip_id[idx], source=self.source[idx], kind=self.kind[idx],
            num_frames=self.num_frames[idx], votes=self.votes[idx], label=self.label[idx],
            fold=self.fold[idx], split=self.split[idx], group=self.group[idx],
            multi_hot=None if self.multi_hot is None else self.multi_hot[idx],
            meta=dict(self.meta),
        )

    def folds(self) -> list[int]:
        """The cross-validation folds present (sorted, without 0)."""
        return sorted(int(f) for f in np.unique(self.fold) if f > 0)

    def fold_split(self, fold: int) -> tuple["ClipTable", "ClipTable"]:
        """(train, test) for cross-validation fold ``fold``: test = clips of that fold,
        train = clips of every other fold. Clips without a fold are in neither."""
        present = self.folds()
        if fold not in present:
            raise DataError(f"{self.name}: fold {fold} not in the table; folds present: {present}")
        return self.take((self.fold > 0) & (self.fold != fold)), self.take(self.fold == fold)

    def split_part(self, split: Split | str) -> "ClipTable":
        """Clips of one fixed split (``"train"``, ``"val"``, ``"test"``)."""
        if isinstance(split, str) and split not in SPLIT_NAMES:
            raise DataError(f"{self.name}: split {split!r} unknown; expected train, val or test")
        code = SPLIT_NAMES[split] if isinstance(split, str) else Split(split)
        return self.take(self.split == code)

    def with_columns(self, **columns) -> "ClipTable":
        """A copy with some columns replaced (validated)."""
        meta = dict(columns.pop("meta", self.meta))
        if "source" in columns:
            meta.pop("files_distinct", None)
        t = replace(self, meta=meta, **columns)
        t.validate()
        return t

    def to_classes(self, classes: tuple[str, ...]) -> "ClipTable":
        """The same clips with votes and labels re-indexed to ``classes``, by name.

        Votes for a class that ``classes`` lacks are dropped only if they are all zero;
        a clip whose hard label has no place in ``classes`` is an error (never a silent
        relabel).
        """
        classes = tuple(classes)
        if classes == self.classes:
            return self
        m = label_map(self.classes, classes)
        missing = [self.classes[i] for i in np.flatnonzero(m < 0)]
        lab = self.label.astype(np.int64)
        bad = (lab >= 0) & (m[np.clip(lab, 0, None)] < 0)
        if bad.any():
            raise DataError(f"{self.name}: {int(bad.sum())} clip(s) are labelled {missing} which the classes "
                            f"{list(classes)} lack, e.g. {_ids(self.clip_id[bad][:3])}")
        votes = np.full((len(self), len(classes)), np.nan, np.float32)
        has = self.has_votes
        if missing and has.any():
            lost = np.nan_to_num(self.votes[has][:, m < 0]).sum(axis=1) > 0
            if lost.any():
                raise DataError(f"{self.name}: {int(lost.sum())} clip(s) have votes for {missing}, which the "
                                f"classes {list(classes)} lack, e.g. {_ids(self.clip_id[has][lost][:3])}")
        keep = np.flatnonzero(m >= 0)
        votes[np.ix_(has, m[keep])] = self.votes[np.ix_(has, keep)]
        votes[has] = np.nan_to_num(votes[has])
        new_label = np.where(lab >= 0, m[np.clip(lab, 0, None)], -1).astype(np.int16)
        mh = None
        if self.multi_hot is not None:
            mh = np.zeros((len(self), len(classes)), bool)
            mh[:, m[keep]] = self.multi_hot[:, keep]
        return replace(self, classes=classes, votes=votes, label=new_label, multi_hot=mh, meta=dict(self.meta))

    def class_counts(self) -> np.ndarray:
        """(C,) clips per hard label (clips without one are not counted)."""
        lab = self.hard_labels()
        return np.bincount(lab[lab >= 0], minlength=self.num_classes)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the table to a ``.npz`` file (atomically)."""
        path = Path(path)
        arrays = {k: getattr(self, k) for k in
                  ("clip_id", "source", "kind", "num_frames", "votes", "label", "fold", "split", "group")}
        if self.multi_hot is not None:
            arrays["multi_hot"] = self.multi_hot
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, classes=np.asarray(self.classes), name=np.asarray(self.name), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "ClipTable":
        with np.load(path, allow_pickle=False) as z:
            kw = {k: z[k] for k in z.files if k not in ("classes", "name")}
            return cls(classes=tuple(str(c) for c in z["classes"]), name=str(z["name"]),
                       multi_hot=kw.pop("multi_hot", None), **kw)

    def __repr__(self) -> str:
        return (f"ClipTable(name={self.name!r}, clips={len(self)}, classes={len(self.classes)}, "
                f"with_votes={int(self.has_votes.sum())}, folds={self.folds()})")


def shared_file(a: ClipTable, b: ClipTable) -> tuple[int, int, str] | None:
    """``(i, j, real path)``: a clip of ``a`` (row i) that is the same file as a clip of
    ``b`` (row j), or None when the two share none (:func:`real_paths`)."""
    ra, rb = real_paths(a.source), real_paths(b.source)
    both, ia, ib = np.intersect1d(ra, rb, return_indices=True)
    if not both.size:
        return None
    return int(ia[0]), int(ib[0]), str(both[0])


def concat(tables: list[ClipTable], name: str | None = None) -> ClipTable:
    """Stack tables that share one class set."""
    if not tables:
        raise ValueError("concat needs at least one table")
    classes = tables[0].classes
    for t in tables[1:]:
        if t.classes != classes:
            raise DataError(f"cannot concatenate tables with classes {classes} and {t.classes}")
    cat = lambda k: np.concatenate([getattr(t, k) for t in tables])  # noqa: E731
    mh = None
    if any(t.multi_hot is not None for t in tables):
        mh = np.concatenate([t.multi_hot if t.multi_hot is not None else np.zeros((len(t), len(classes)), bool)
                             for t in tables])
    return ClipTable.build(
        classes, cat("clip_id"), cat("source"), kind=cat("kind"), num_frames=cat("num_frames"),
        votes=cat("votes"), label=cat("label"), fold=cat("fold"), split=cat("split"), group=cat("group"),
        multi_hot=mh, name=name or tables[0].name,
    )


def _ids(ids) -> list[str]:
    """Clip ids as plain strings for messages (numpy 2 prints np.str_('x') otherwise)."""
    return [str(i) for i in ids]


def _col(values, n: int, dtype, fill) -> np.ndarray:
    if values is None:
        return np.full(n, fill, dtype=dtype)
    arr = np.asarray(values)
    if arr.ndim == 0:
        return np.full(n, arr, dtype=dtype)
    return arr.astype(dtype, copy=False)
