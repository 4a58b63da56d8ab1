"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

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
        f.seek(0)
        pid, _, holder = f.read().strip().partition(" ")
        f.close()
        raise ConfigError(f"{folder}: another {holder or 'dfer process'} (pid {pid or 'unknown'}) is writing here; "
                          f"wait for it to end, or write elsewhere") from None
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
