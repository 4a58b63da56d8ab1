"""What makes a folder a run directory of dfer's: the one home of that judgement, shared by
the commands that write into a run (``dfer train``, ``dfer cv``, ``dfer evaluate RUN``)."""

from __future__ import annotations

from pathlib import Path

from dfer.io import holds

#: the kind of folder (:func:`dfer.io.claim_folder`) of a run directory
RUN_KIND = "run"


def is_earlier_run(folder: Path) -> bool:
    """A run directory written before dfer marked its folders: its config beside a
    checkpoint, or, killed before its first epoch ended, beside its classes and the disk
    check's cache. A user's config.yaml alone is not a run."""
    return holds(folder, "config.yaml", "checkpoints/*.safetensors") or \
        holds(folder, "config.yaml", "classes.json", "cache/check-*.npz")
