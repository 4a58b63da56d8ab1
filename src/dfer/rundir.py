"""What makes a folder a run directory of dfer's: the one home of that judgement, shared by
the commands that write into a run (``dfer train``, ``dfer cv``, ``dfer evaluate RUN``)."""

from __future__ import annotations

from pathlib import Path

from dfer.errors import ConfigError
from dfer.io import holds

#: the kind of folder (:func:`dfer.io.claim_folder`) of a run directory
RUN_KIND = "run"


def is_earlier_run(folder: Path) -> bool:
    """A run directory written before dfer marked its folders: its config beside a
    checkpoint, or, killed before its first epoch ended, beside its classes and the disk
    check's cache. A user's config.yaml alone is not a run."""
    return holds(folder, "config.yaml", "checkpoints/*.safetensors") or \
        holds(folder, "config.yaml", "classes.json", "cache/check-*.npz")


#: the files dfer train writes at the top of a run directory (besides checkpoints/ and cache/)
RUN_FILES = ("config.yaml", "classes.json", "metrics.csv", "precision.json")


def evaluation_files(tag: str = "") -> tuple[str, ...]:
    """The files one evaluation writes into a folder: ``results.json``, ``predictions.csv``
    and ``confusion.png`` (with ``tag``: ``results.TAG.json`` ...)."""
    suffix = f".{tag}" if tag else ""
    return f"results{suffix}.json", f"predictions{suffix}.csv", f"confusion{suffix}.png"


def refuse_folders_in_the_way(folder: Path, names: tuple[str, ...], command: str) -> None:
    """A :class:`ConfigError` if one of the files ``command`` will write into ``folder`` is a
    folder (or anything but a file): found before the work, not when its result is written."""
    for name in names:
        path = Path(folder) / name
        if path.exists() and not path.is_file():
            raise ConfigError(f"{path} is not a file, and {command} writes that file: move it away")
