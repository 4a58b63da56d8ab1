"""Errors a user can act on.

Every problem with the user's data or configuration raises :class:`DfeError` (or a
subclass) with a message that names the file, the line or clip id, what was expected and
what was found. The CLI turns these into one line on stderr and exit code 2; everything
else is a bug in dfer and keeps its traceback.
"""

from __future__ import annotations

import os


class DfeError(Exception):
    """Base class of the errors caused by user input (data, config, arguments)."""

    exit_code = 2

    def __init__(self, *args):
        # A DataLoader worker's error reaches the main process rebuilt from its whole
        # traceback ("Caught DataError in DataLoader worker process 0. Original Traceback
        # ... dfer.errors.DataError: <message>"): keep the one-line message, as if the main
        # process had raised it.
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith("Caught "):
            prefix = f"{type(self).__module__}.{type(self).__qualname__}: "
            head, sep, message = args[0].rpartition(prefix)
            if sep and "\nOriginal Traceback" in head:
                args = (message.strip(),)
        super().__init__(*args)


class DataError(DfeError):
    """A corpus, list file, manifest, vote sheet or media file is missing or malformed."""


class ConfigError(DfeError):
    """A configuration file or override is malformed or inconsistent."""


def where(path: str | os.PathLike, line: int | None = None) -> str:
    """Format a location as ``path`` or ``path:line`` for error messages."""
    return f"{os.fspath(path)}:{line}" if line is not None else os.fspath(path)


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to ``limit`` characters: the part of a
    library's error that fits in dfer's one-line messages."""
    text = str(e).strip().splitlines()
    return text[0][:limit] if text else ""
