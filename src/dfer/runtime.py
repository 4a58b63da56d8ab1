"""Process-wide settings that dfer's command line applies once at start (no torch import
here: ``dfer --help`` stays fast)."""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["keep_freed_memory", "MODEL_COMMANDS"]

#: the commands that train or run models, whose steps reuse large activations
MODEL_COMMANDS = frozenset({"train", "evaluate", "demo", "predict", "cv", "reproduce"})

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    A training step or a forward pass allocates its activations afresh each time. glibc
    serves every block over its mmap threshold (128 KiB, growing to 32 MiB) with a new
    mapping and unmaps it when freed, so each step faults every page of its activations in
    again; on the project's 2-core machine that was a fifth of a ResNet-18 training step at
    224 px (docs/results.md). Taking large blocks from the heap, and never trimming it,
    lets each step reuse pages it has touched. The process's resident memory then stays at
    its peak, which a training loop reaches every step anyway; host memory a GPU run
    allocates is small either way.

    Does nothing off glibc (macOS, Windows, musl) and when the user tunes malloc
    (``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_`` or ``glibc.malloc`` tunables in
    ``GLIBC_TUNABLES``: their setting stands). dfer's command line calls it once at the
    start of the commands that run models (:data:`MODEL_COMMANDS`). It cannot be undone in
    the process. Returns whether it took effect.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_MAX_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ \
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    trim = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1))  # the largest the int takes
    mmap = libc.mallopt(_M_MMAP_MAX, ctypes.c_int(0))
    return bool(trim and mmap)
