"""What makes a folder a run directory (or an evaluation's folder) of dfer's, and the files
dfer writes there: the one home of those judgements, shared by the commands that write
into them (``dfer train``, ``dfer cv``, ``dfer evaluate``)."""

from __future__ import annotations

from pathlib import Path

from dfer.errors import ConfigError
from dfer.io import claim_folder, holds

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


#: the kind of folder of ``dfer evaluate --pretrained --out``
EVALUATION_KIND = "evaluation"


def claim_evaluation_folder(folder, create: bool = True) -> Path:
    """:func:`dfer.io.claim_folder` for ``dfer evaluate --pretrained --out``; one written
    before dfer marked its folders holds the three files an evaluation writes."""
    return claim_folder(folder, EVALUATION_KIND, "dfer evaluate --pretrained",
                        lambda d: holds(d, "results*.json", "predictions*.csv", "confusion*.png"), create=create)
