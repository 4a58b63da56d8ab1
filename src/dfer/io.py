"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dfer.errors import ConfigError, DataError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The temporary name carries the process id, so two writers never share it; on an
    exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: the lock file of a folder that one dfer process writes at a time (run, cv, preprocess OUT)
LOCK_NAME = ".lock"


@contextlib.contextmanager
def exclusive_folder(folder: str | os.PathLike, command: str):
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs.

    The lock is ``flock`` on ``folder/.lock``, released by the kernel when the process
    ends however it ends, so a killed run never leaves a stale lock. The holder writes its
    pid there; a second process gets one line naming that pid (a :class:`ConfigError`).
    The process that holds it may enter it again (``dfer cv`` locks its folds, then trains
    each).
    """
    import fcntl

    folder = Path(folder)
    key = folder.resolve()
    if key in _HELD:
        yield folder
        return
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / LOCK_NAME, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _held(folder, f, "wait for it to end, or write elsewhere") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {command}\n")
        f.flush()
        _HELD[key] = f
        yield folder
    finally:
        _HELD.pop(key, None)
        if not f.closed:  # closed here only in a forked child, which never held the lock
            f.seek(0)
            f.truncate()  # a finished writer leaves an empty lock (a killed one, its pid)
            f.close()


_HELD: dict[Path, object] = {}  # folder -> its open lock file, for the locks this process holds


def _held(folder: Path, f, advice: str) -> ConfigError:
    """The one line of a folder whose lock another process holds (closes ``f``, the lock
    file, after reading the holder's pid from it)."""
    f.seek(0)
    pid, _, holder = f.read().strip().partition(" ")
    f.close()
    return ConfigError(f"{folder}: another {holder or 'dfer process'} (pid {pid or 'unknown'}) is writing here; "
                       f"{advice}")


@contextlib.contextmanager
def shared_folder(folder: str | os.PathLike, command: str):
    """Hold a shared lock on ``folder`` while the block runs: for a command that reads what
    the folder's writer made and writes beside it (``dfer evaluate`` into a run). Such
    readers share it with each other, never with the writer: while a ``dfer train`` holds
    the folder (:func:`exclusive_folder`) a reader stops at once with one line naming its
    pid, and no writer starts while a reader is in the block. A folder that does not exist
    has no writer (the reader says it is missing)."""
    import fcntl

    folder = Path(folder)
    key = folder.resolve()
    if key in _HELD or not folder.is_dir():
        yield folder
        return
    f = open(folder / LOCK_NAME, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _held(folder, f, f"{command} reads a run once its writer has ended") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {command}\n")  # for the message of a writer that finds it held
        f.flush()
        _HELD[key] = f
        yield folder
    finally:
        _HELD.pop(key, None)
        f.close()  # the pid stays: another reader may still hold the lock


def _drop_inherited_locks() -> None:
    """In a forked child (a DataLoader worker), close the lock files inherited from the
    parent: ``flock`` belongs to the open file, so a child keeping it open would hold the
    parent's lock after the parent is killed, until the child too has gone."""
    for f in _HELD.values():
        f.close()
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


def refuse_foreign_folder(folder: str | os.PathLike, marks: tuple[str, ...], command: str) -> None:
    """Raise a :class:`ConfigError` if ``folder`` holds anything but none of ``marks`` (the
    names dfer writes first there): dfer never writes into, or deletes from, a folder it did
    not make. A missing or empty folder (the lock file aside) is fine."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    names = {p.name for p in folder.iterdir()} - {LOCK_NAME}
    if names and not names & set(marks):
        example = sorted(names)[0]
        raise ConfigError(f"{folder} holds files that {command} did not write (e.g. {example!r}) and none of "
                          f"{', '.join(marks)}: it writes only into a new folder or one of its own; choose "
                          f"another name or out_dir")


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """Bytes of ``path``; :class:`DataError` if it is missing or not a readable file."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise DataError(f"{p}: expected {'an' if what[:1] in 'aeiou' else 'a'} {what}, found a folder") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read {what}: {e.strerror or e}") from None


def regular_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file (links followed): what a reader of a file dfer
    wrote may open. A FIFO or a device would block the reader or never end."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def first_non_finite(tensors: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor of ``tensors`` that holds a NaN or an
    infinity (None when every one is finite): weights read from a file are checked with it
    before a model is built on them."""
    import torch

    for name, t in tensors.items():
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None
