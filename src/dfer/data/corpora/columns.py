"""Delimited text (CSV, TSV, JSON lines) -> numpy columns, fast and with line numbers.

The generic manifest must turn a million rows into a :class:`~dfer.data.table.ClipTable`
in seconds, so a row is never a Python object here. For the common case (UTF-8, no
quote characters) the file is tokenised as one ``uint8`` array: newline and delimiter
positions come from ``np.flatnonzero``, the cell count of every row is checked at once,
text cells are gathered into fixed-width byte arrays and decoded, and numeric cells of the
form ``123`` / ``0.25`` are parsed by digit arithmetic (an exact integer mantissa divided
by a power of ten, i.e. the correctly rounded value). Any other numeric cell (exponent,
sign, ``nan``, spaces, empty) goes through Python's ``float`` one by one, and a file with
quotes goes through the :mod:`csv` module: same results, slower.

Every problem raises :class:`~dfer.errors.DataError` naming ``file:line``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable

import numpy as np

from dfer.data.corpora.textio import decode_utf8
from dfer.io import MAX_TEXT_BYTES, read_bytes
from dfer.errors import DataError, where

_CHUNK = 1 << 16
_WS = np.array([ord(" "), ord("\t"), ord("\r")], np.uint8)


@dataclass
class RawColumns:
    """A delimited file read column by column.

    Attributes:
        path: the file.
        header: column names as written (stripped).
        cols: text column name -> (N,) str array, cells stripped of surrounding blanks.
        num: numeric column name -> (N,) float32 array (0 where the cell is empty).
        empty: numeric column name -> (N,) bool, which cells were empty.
        lines: (N,) int64 1-based line number of every data row.
    """

    path: Path
    header: list[str]
    cols: dict[str, np.ndarray] = field(default_factory=dict)
    num: dict[str, np.ndarray] = field(default_factory=dict)
    empty: dict[str, np.ndarray] = field(default_factory=dict)
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n(self) -> int:
        return len(self.lines)

    def line(self, row: int) -> int:
        return int(self.lines[row])

    def fail(self, row: int, message: str):
        """Raise :class:`DataError` at data row ``row``."""
        raise DataError(f"{where(self.path, self.line(row))}: {message}")

    def cell(self, name: str, row: int) -> str:
        """The cell as text (for messages)."""
        if name in self.cols:
            return str(self.cols[name][row])
        return "" if self.empty[name][row] else f"{self.num[name][row]:g}"


def read_columns(
    path: str | os.PathLike,
    *,
    numeric: Callable[[list[str]], set[str]] = lambda header: set(),
    delimiter: str | None = None,
    what: str = "manifest",
    unnamed_first: str | None = None,
) -> RawColumns:
    """Read a delimited file with a header row, or JSON lines, into columns.

    Args:
        path: ``.jsonl``/``.json``/``.ndjson`` = one JSON object per line (keys of the first
            object are the header); anything else is delimited text with a header row:
            the delimiter is ``delimiter``, else tab or comma if the header has one, else
            runs of blanks.
        numeric: given the header, the names of the columns to parse as numbers.
        what: what the file is, for messages.
        unnamed_first: the name to give a first column whose header cell is empty (R's
            ``write.csv`` leaves its row-name column unnamed); None: an empty name fails.

    Raises:
        DataError: naming file:line for a missing file, one that is not a regular file or
            is larger than :data:`dfer.io.MAX_TEXT_BYTES`, non-UTF-8 bytes, a NUL byte, a
            row whose cell count differs from the header's, a duplicated or empty header
            name, a numeric cell that is not a number, malformed JSON.
    """
    p = Path(path)
    data = read_bytes(p, what, limit=MAX_TEXT_BYTES)
    if not data.isascii():
        decode_utf8(data, p)  # raises naming the line of the first bad byte
    if b"\x00" in data:
        decode_utf8(data, p)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl(p, data, numeric, what, unnamed_first)
    first = next((ln for ln in data[:1 << 16].split(b"\n") if ln.strip()), b"")
    if delimiter is None:
        delimiter = "\t" if b"\t" in first else "," if b"," in first or p.suffix.lower() == ".csv" else " "
    if delimiter != " " and b'"' not in data and b"\r" not in data.replace(b"\r\n", b"\n"):
        return _read_fast(p, data, delimiter, numeric, what, unnamed_first)
    return _read_csv(p, data.decode("utf-8"), delimiter, numeric, what, unnamed_first)


def _check_header(p: Path, header: list[str], line: int, unnamed_first: str | None) -> None:
    if header and not header[0] and unnamed_first:
        header[0] = unnamed_first
    seen = set()
    for h in header:
        if not h:
            raise DataError(f"{where(p, line)}: empty column name in the header {header}")
        if h.lower() in seen:
            raise DataError(f"{where(p, line)}: column {h!r} appears twice in the header")
        seen.add(h.lower())


# ---------------------------------------------------------------------------- fast path
def _read_fast(p: Path, data: bytes, delimiter: str, numeric, what: str, unnamed_first: str | None) -> RawColumns:
    ascii_ = data.isascii()
    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == 10)
    start = np.concatenate(([0], nl + 1))
    end = np.concatenate((nl, [len(buf)]))
    if len(buf):
        end = end - ((end > start) & (buf[np.maximum(end - 1, 0)] == 13))
    # an empty line is not a row (as in the csv path); a line of blanks is a row of one cell
    keep = np.flatnonzero(end > start)
    if keep.size == 0:
        raise DataError(f"{p}: empty {what}; expected a header row")
    h = int(keep[0])
    header = [c.strip() for c in data[start[h]:end[h]].decode("utf-8").split(delimiter)]
    _check_header(p, header, h + 1, unnamed_first)
    rows = keep[1:]
    start, end = start[rows], end[rows]
    raw = RawColumns(p, header, lines=rows + 1)
    dpos = np.flatnonzero(buf == ord(delimiter))
    first = np.searchsorted(dpos, start)
    count = np.searchsorted(dpos, end) - first
    ncol = len(header)
    bad = np.flatnonzero(count != ncol - 1)
    if bad.size:
        i = int(bad[0])
        raw.fail(i, f"{count[i] + 1} cells, expected {ncol} (header: {delimiter.join(header)})")
    want = numeric(header)
    for k, name in enumerate(header):
        s = start if k == 0 else dpos[first + (k - 1)] + 1
        e = end if k == ncol - 1 else dpos[first + k]
        if name in want:
            raw.num[name], raw.empty[name] = _numbers(buf, s, e, raw, name, ascii_)
        else:
            raw.cols[name] = _strings(buf, s, e, ascii_)
    return raw


def _gather(buf: np.ndarray, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, W) uint8 bytes of the cells [s, e) zero-padded, and the (n, W) valid mask."""
    length = e - s
    w = max(int(length.max(initial=0)), 1)
    pos = np.arange(w)
    valid = pos < length[:, None]
    g = buf[np.minimum(s[:, None] + pos, len(buf) - 1)] if len(buf) else np.zeros((len(s), w), np.uint8)
    return np.where(valid, g, 0).astype(np.uint8), valid


def _strings(buf: np.ndarray, s: np.ndarray, e: np.ndarray, ascii_: bool) -> np.ndarray:
    parts = []
    for a in range(0, len(s), _CHUNK):
        sa, ea = s[a:a + _CHUNK], e[a:a + _CHUNK]
        g, _ = _gather(buf, sa, ea)
        if ascii_:
            # an ASCII byte is its own code point: widen to UCS-4 instead of decoding
            u = np.ascontiguousarray(g, dtype=np.uint32).view(f"U{g.shape[1]}").reshape(-1)
        else:
            u = np.strings.decode(np.ascontiguousarray(g).view(f"S{g.shape[1]}").reshape(-1), "utf-8")
        # strip only when some cell starts or ends with a blank (rare; strip copies)
        ends = buf[np.concatenate((sa, ea - 1))[np.concatenate((ea > sa, ea > sa))]] if len(buf) else buf
        parts.append(np.strings.strip(u) if np.isin(ends, _WS).any() else u)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=str)


def _numbers(buf, s, e, raw: RawColumns, name: str, ascii_: bool) -> tuple[np.ndarray, np.ndarray]:
    n = len(s)
    out = np.zeros(n, np.float32)
    empty = np.zeros(n, bool)
    slow: list[np.ndarray] = []
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        g, valid = _gather(buf, s[a:b], e[a:b])
        digit = (g >= 48) & (g <= 57) & valid
        dot = (g == 46) & valid
        ndig = digit.sum(axis=1)
        simple = ((digit | dot | ~valid).all(axis=1) & (dot.sum(axis=1) <= 1) & (ndig > 0) & (ndig <= 15))
        # digits after the dot: the exponent of the power of ten to divide by
        frac = np.where(dot.any(axis=1), (digit & (np.cumsum(dot, axis=1) > 0)).sum(axis=1), 0)
        # place value of each digit in the integer mantissa (dot removed)
        place = np.cumsum(digit[:, ::-1], axis=1)[:, ::-1] - 1
        mant = np.where(digit, (g.astype(np.int64) - 48) * 10 ** np.clip(place, 0, 18), 0).sum(axis=1)
        out[a:b] = mant / 10.0 ** frac
        slow.append(np.flatnonzero(~simple) + a)
    idx = np.concatenate(slow) if slow else np.zeros(0, np.int64)
    if idx.size:
        cells = _strings(buf, s[idx], e[idx], ascii_).tolist()
        for i, c in zip(idx.tolist(), cells):
            if not c:
                empty[i] = True
                continue
            try:
                out[i] = float(c)
            except ValueError:
                raw.fail(i, f"{name} {c!r} is not a number")
    return out, empty


# ---------------------------------------------------------------------------- slow paths
def _blank(row: list[str]) -> bool:
    return not row


def _read_csv(p: Path, text: str, delimiter: str, numeric, what: str, unnamed_first: str | None) -> RawColumns:
    if delimiter == " ":
        reader = ([c for c in ln.split()] for ln in io.StringIO(text))
        rows_lines = ((r, i) for i, r in enumerate(reader, 1))
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)

        def numbered():
            prev = 0
            try:
                for r in reader:
                    yield r, prev + 1
                    prev = reader.line_num
            except csv.Error as e:
                raise DataError(f"{where(p, reader.line_num)}: {e}") from None

        rows_lines = numbered()
    rows_lines = ((r, i) for r, i in rows_lines if not _blank(r))
    try:
        header, hline = next(rows_lines)
    except StopIteration:
        raise DataError(f"{p}: empty {what}; expected a header row") from None
    header = [c.strip() for c in header]
    _check_header(p, header, hline, unnamed_first)
    cells: list[list[str]] = [[] for _ in header]
    lines: list[int] = []
    ncol = len(header)
    raw = RawColumns(p, header)
    while True:
        chunk = list(islice(rows_lines, _CHUNK))
        if not chunk:
            break
        for r, i in chunk:
            if len(r) != ncol:
                raise DataError(f"{where(p, i)}: {len(r)} cells, expected {ncol} (header: {delimiter.join(header)})")
        lines.extend(i for _, i in chunk)
        for k, col in enumerate(zip(*(r for r, _ in chunk))):
            cells[k].extend(col)
    raw.lines = np.asarray(lines, np.int64)
    _fill(raw, cells, numeric(header))
    return raw


def _fill(raw: RawColumns, cells: list[list[str]], want: set[str]) -> None:
    for name, col in zip(raw.header, cells):
        col = [c.strip() for c in col]
        if name not in want:
            raw.cols[name] = np.array(col, dtype=str) if col else np.zeros(0, dtype=str)
            continue
        out = np.zeros(len(col), np.float32)
        empty = np.zeros(len(col), bool)
        for i, c in enumerate(col):
            if not c:
                empty[i] = True
                continue
            try:
                out[i] = float(c)
            except ValueError:
                raw.fail(i, f"{name} {c!r} is not a number")
        raw.num[name], raw.empty[name] = out, empty


def _read_jsonl(p: Path, data: bytes, numeric, what: str, unnamed_first: str | None) -> RawColumns:
    rows: list[tuple[int, dict]] = []
    for i, s in enumerate(data.decode("utf-8").split("\n"), 1):
        if not s.strip():
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            raise DataError(f"{where(p, i)}: malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where(p, i)}: expected one JSON object per line, found {type(obj).__name__}")
        rows.append((i, obj))
    if not rows:
        raise DataError(f"{p}: empty {what}; expected one JSON object per line")
    header = [str(k).strip() for k in rows[0][1]]
    _check_header(p, header, rows[0][0], unnamed_first)
    keys = list(rows[0][1])
    known = set(keys)
    cells: list[list[str]] = [[] for _ in keys]
    for i, obj in rows:
        extra = [k for k in obj if k not in known]
        if extra:
            raise DataError(f"{where(p, i)}: keys {extra} are not in the first line's keys {keys}")
        for k, key in enumerate(keys):
            v = obj.get(key)
            if isinstance(v, bool) or isinstance(v, (list, dict)):
                raise DataError(f"{where(p, i)}: {key!r} is {json.dumps(v)}; expected a string, a number or null")
            cells[k].append("" if v is None else str(v))
    raw = RawColumns(p, header, lines=np.array([i for i, _ in rows], np.int64))
    _fill(raw, cells, numeric(header))
    return raw
