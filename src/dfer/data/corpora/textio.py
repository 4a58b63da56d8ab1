"""Reading the small text files that describe a corpus, with errors that name file:line.

Split files, label files and vote sheets are read whole (they hold at most tens of
thousands of lines; a file over :data:`dfer.io.MAX_TEXT_BYTES`, a FIFO or a device is
refused by name); every problem becomes a :class:`~dfer.errors.DataError` naming the
file and the line, never a ``UnicodeDecodeError`` traceback. The large generic manifest is
streamed by :mod:`dfer.data.corpora.manifest` instead, but decodes through the same helper
when it has to say where a bad byte is.
"""

from __future__ import annotations

import os

import numpy as np

from dfer.emotions import canonical
from dfer.errors import DataError, where
from dfer.io import MAX_TEXT_BYTES, read_bytes


def decode_utf8(data: bytes, path: str | os.PathLike) -> str:
    """Decode UTF-8 (a leading BOM is dropped); a bad byte or NUL names its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{where(path, line)}: bytes that are not UTF-8 ({data[e.start:e.start + 4]!r}); "
                        f"expected a UTF-8 text file") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    nul = text.find("\x00")
    if nul >= 0:
        raise DataError(f"{where(path, text.count(chr(10), 0, nul) + 1)}: NUL byte in a text file; "
                        f"expected UTF-8 text")
    return text


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """Whole UTF-8 text of ``path`` (see :func:`decode_utf8`); a FIFO, a device or a file
    over :data:`dfer.io.MAX_TEXT_BYTES` is refused by name, never read."""
    return decode_utf8(read_bytes(path, what, limit=MAX_TEXT_BYTES), path)


def numbered_lines(path: str | os.PathLike, what: str = "file") -> list[tuple[int, str]]:
    """``(line number, line)`` for every non-blank line of a UTF-8 text file (1-based)."""
    text = read_text(path, what)
    return [(i, s) for i, s in enumerate(text.splitlines(), 1) if s.strip()]


def label_index(token: str, classes: tuple[str, ...], path=None, line: int | None = None, *,
                allow_index: bool = True) -> int:
    """Index in ``classes`` of a label written as an emotion name or a 0-based index.

    Raises:
        DataError: (prefixed with ``path:line`` when a path is given) if the name is
            unknown, not in ``classes``, or the index is out of range.
    """
    at = f"{where(path, line)}: " if path is not None else ""
    tok = token.strip()
    if allow_index and tok.lstrip("-").isdigit():
        k = int(tok)
        if not 0 <= k < len(classes):
            raise DataError(f"{at}label index {k} out of range; expected 0..{len(classes) - 1} "
                            f"for classes {list(classes)}")
        return k
    try:
        name = canonical(tok)
    except DataError:
        raise DataError(f"{at}unknown class name {tok!r}; expected one of {list(classes)}") from None
    if name not in classes:
        raise DataError(f"{at}class {tok!r} is not one of the classes {list(classes)}")
    return classes.index(name)


def map_unique(values: np.ndarray, fn, on_error) -> np.ndarray:
    """Apply ``fn`` to each distinct value of a string column and broadcast the results.

    Vectorised replacement of a per-row loop: ``fn`` runs once per distinct value. If
    ``fn`` raises :class:`DataError` for a value, ``on_error(row, message)`` is called with
    the first row holding it (so the caller can name the line) and must raise.
    """
    uniq, inverse = np.unique(values, return_inverse=True)
    out = []
    for k, u in enumerate(uniq):
        try:
            out.append(fn(str(u)))
        except DataError as e:
            on_error(int(np.flatnonzero(inverse == k)[0]), str(e))
            raise  # pragma: no cover - on_error raises
    return np.asarray(out)[inverse.reshape(-1)] if len(values) else np.asarray(out)


def inside(path: str, root: str) -> bool:
    """Whether normalised ``path`` lies in (or is) the folder ``root``."""
    root = os.path.normpath(root)
    p = os.path.normpath(path)
    return p == root or p.startswith(root.rstrip(os.sep) + os.sep)
