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


class DataError(DfeError):
    """A corpus, list file, manifest, vote sheet or media file is missing or malformed."""


class ConfigError(DfeError):
    """A configuration file or override is malformed or inconsistent."""


def where(path: str | os.PathLike, line: int | None = None) -> str:
    """Format a location as ``path`` or ``path:line`` for error messages."""
    return f"{os.fspath(path)}:{line}" if line is not None else os.fspath(path)
