"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Mapping
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
        try:
            os.replace(tmp, path)
        except IsADirectoryError:
            raise DataError(f"{path}: a folder is where dfer writes this file; move it away") from None
    finally:
        tmp.unlink(missing_ok=True)


def make_folder(folder: Path, command: str) -> None:
    """``folder`` and its parents made; a file on the way is a :class:`ConfigError` naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        on_way = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise ConfigError(f"{on_way} is a file where {command} makes the folder {folder}: choose another") from None


#: the lock file of a folder that one dfer process writes at a time (run, cv, preprocess OUT)
LOCK_NAME = ".lock"


@contextlib.contextmanager
def exclusive_folder(folder: str | os.PathLike, command: str, kind: str | None = None,
                     earlier: Callable[[Path], bool] | None = None):
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs.

    With ``kind``, the folder must be dfer's (:func:`claim_folder`, with ``earlier``): it is
    checked before the lock is taken and marked once it is held, so neither a folder of the
    user's nor one another process is writing gets anything from this one.

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
    if kind is not None:
        claim_folder(folder, kind, command, earlier, create=False)
    make_folder(folder, command)
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
        if kind is not None:
            claim_folder(folder, kind, command, earlier)
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


#: the mark dfer leaves in every folder it writes, naming what kind of folder it is
MARK_NAME = ".dfer"


def single_component(value: str, setting: str) -> str:
    """``value`` if it is one path component (a folder or file name); else a
    :class:`ConfigError` naming ``setting``. A name the user gives (a run's ``name``, an
    evaluation's ``--tag``) becomes part of a path, so it must not lead out of the folder
    it names something in."""
    if (not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\\" in value
            or "\0" in value):
        raise ConfigError(f"{setting} {value!r} is not a single file or folder name (no '/', '\\', NUL, "
                          f"'.' or '..'); give a plain name")
    return value


def holds(folder: str | os.PathLike, *patterns: str) -> bool:
    """True if ``folder`` holds something matching every one of the glob ``patterns``
    (relative to it, e.g. ``checkpoints/*.safetensors``)."""
    folder = Path(folder)
    return all(next(iter(folder.glob(p)), None) is not None for p in patterns)


def claim_folder(folder: str | os.PathLike, kind: str, command: str,
                 earlier: Callable[[Path], bool] | None = None, *, create: bool = True) -> Path:
    """The one gate every command passes before it writes into ``folder``.

    dfer writes only into a folder it made: a missing or empty one (its lock aside), one
    that carries dfer's mark (``.dfer``) of the same ``kind``, or, written before folders
    were marked, one that ``earlier(folder)`` recognises as the work of an earlier dfer of
    this kind. Anything else is refused with a :class:`ConfigError` naming ``folder`` and
    one of its files, before anything is written there. With ``create`` (the default) the
    folder is then made and marked; without, it is only checked (to refuse before a long
    computation whose results go there). Returns the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder; {command} writes a folder there: choose another")
    mark = folder / MARK_NAME
    try:
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        found = mark.read_text(encoding="utf-8", errors="replace").split() if MARK_NAME in names else None
    except OSError as e:
        raise ConfigError(f"{folder}: cannot read the folder {command} would write ({e.strerror or e})") from None
    if found is not None:
        if found[:1] != ["dfer"] or len(found) != 2:
            raise ConfigError(f"{folder}: its {MARK_NAME} is not dfer's mark; {command} does not write there: "
                              f"choose another")
        if found[1] != kind:
            raise ConfigError(f"{folder} is a dfer {found[1]} folder, not a {kind} folder; {command} does not "
                              f"write there: choose another")
        return folder
    foreign = [n for n in names if n != LOCK_NAME]
    if foreign and not (earlier is not None and earlier(folder)):
        raise ConfigError(f"{folder} holds files that dfer did not write (e.g. {foreign[0]!r}); {command} writes "
                          f"only into a new or empty folder or one of its own: choose another")
    if create:
        try:
            make_folder(folder, command)
        except OSError as e:  # a file in the way above it, no permission
            raise ConfigError(f"{folder}: cannot make the folder {command} writes ({e.strerror or e})") from None
        write_text_atomic(mark, f"dfer {kind}\n")
    return folder


def claim_file(path: str | os.PathLike, command: str, ours: Callable[[Path], bool], *,
               overwrite: bool = False, flag: str | None = None) -> Path:
    """The gate every command passes before it writes a file the user named (a table, a
    list, a model file): the file counterpart of :func:`claim_folder`.

    dfer writes ``path`` when nothing is there, when ``ours(path)`` recognises what is
    there as a file ``command`` wrote (by its content: a header, a mark, metadata only it
    writes), or when the user said so (``overwrite``, given by the option ``flag``).
    Anything else, a file of the user's or anything but a regular file (a folder, a FIFO),
    is refused with a :class:`ConfigError` naming it, before any work. Returns the path.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return path
    if not is_regular_file(path):
        raise ConfigError(f"{path} is not a file, and {command} writes a file there: choose another")
    if overwrite or ours(path):
        return path
    how = f"give {flag} to replace it" if flag else "remove it"
    raise ConfigError(f"{path} exists and was not written by {command}; choose another, or {how}")


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


#: the largest text file (list file, manifest, label or vote sheet) dfer reads: a
#: 1,000,000-clip manifest is about 60 MB, so a bigger file is not a corpus description
MAX_TEXT_BYTES = 512 * 2**20


def file_kind(mode: int) -> str:
    """What a ``stat`` mode is, for messages: "a file", "a folder", "a FIFO (named pipe)" ..."""
    for test, name in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "neither a file nor a folder"


def _article(what: str) -> str:
    return f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"


def regular_file(path: str | os.PathLike, what: str = "file") -> os.stat_result:
    """The ``stat`` of ``path`` (links followed) when it is a regular file; otherwise a
    :class:`DataError` naming it and what lies there. A FIFO or a device is refused by
    name before anything opens it (opening a FIFO waits for a writer that never comes)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{os.fspath(path)}: {what} not found") from None
    except OSError as e:
        raise DataError(f"{os.fspath(path)}: cannot read {what}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{os.fspath(path)}: expected {_article(what)}, found {file_kind(st.st_mode)}")
    return st


def read_bytes(path: str | os.PathLike, what: str = "file", limit: int | None = None) -> bytes:
    """Bytes of ``path``; :class:`DataError` if it is missing, not a regular file (a folder,
    FIFO, device: refused without waiting on it), unreadable, or larger than ``limit``."""
    p = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO returns at once (and fstat then refuses it) instead of
        # waiting for a writer; it changes nothing for a regular file
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise DataError(f"{p}: expected {_article(what)}, found a folder") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read {what}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise DataError(f"{p}: expected {_article(what)}, found {file_kind(mode)}")
    with open(fd, "rb", closefd=True) as f:
        try:
            data = f.read() if limit is None else f.read(limit + 1)
        except OSError as e:
            raise DataError(f"{p}: cannot read {what}: {e.strerror or e}") from None
    if limit is not None and len(data) > limit:
        raise DataError(f"{p}: {what} is larger than {limit / 2**20:.0f} MiB; expected a text file of at most "
                        f"that size (is this the right file?)")
    return data


def is_regular_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file (links followed; :func:`regular_file` judges):
    what a reader of a file dfer wrote may open. A FIFO or a device would block the reader
    or never end."""
    try:
        regular_file(path)
    except (DataError, ValueError):
        return False
    return True


def first_non_finite(tensors: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor of ``tensors`` that holds a NaN or an
    infinity (None when every one is finite): weights read from a file are checked with it
    before a model is built on them."""
    import torch

    for name, t in tensors.items():
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None
