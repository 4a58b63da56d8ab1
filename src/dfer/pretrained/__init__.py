"""The face-expression model that ships with dfer: a ResNet-18 trained on FER+'s votes.

One file inside the package, ``ferplus_resnet18.safetensors`` (fp16 weights of a dfer
``tsm_resnet18`` with the shift off, i.e. a plain ResNet-18 over one frame, and its
classifier over FER+'s eight classes), so ``pip install`` carries it and nothing is ever
downloaded. Its safetensors metadata (key ``dfer_pretrained``, JSON) says how to feed it:

- ``model``, ``kwargs``: the dfer model to build;
- ``classes``: the class names in output order;
- ``size``: the input side (the 48-px faces were upsampled to it);
- ``num_frames``: frames ``dfer predict`` samples per window (their features are averaged);
- ``grey``: it saw grey faces (FER2013's), stacked into three equal channels;
- ``face_crop``: the centred fraction of an aligned 256x256 face (``dfer preprocess``'s
  template) that matches FER2013's tighter framing (see ``MODEL_CARD.md``);
- ``mean``, ``std``: the normalisation;
- ``metrics``: FER+ Valid figures measured on the exported file, for the card;
- ``prior``, ``prior_correction``, ``temperature``, ``tta`` (optional): how its logits
  become its answer (:class:`dfer.calibration.OutputRule`): the class prior of its
  training data, the strength of the correction that divides it out, the temperature and
  the test-time augmentation; absent in older files (no correction, no augmentation).

This module reads the file; :func:`dfer.rundir.load_shipped` makes the network of it,
:mod:`dfer.pretrained.export` writes a new one from a finished run (``python -m
dfer.pretrained RUN_DIR``). Used by ``dfer predict`` without ``--run``
(:func:`dfer.load_pretrained`), by ``model.pretrained: ferplus`` for the video models
(:func:`dfer.models.weights.trunk_state`), and by ``dfer evaluate --pretrained``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from dfer.calibration import TTA
from dfer.emotions import canonical
from dfer.errors import ConfigError, DfeError
from dfer.io import first_non_finite, is_regular_file

__all__ = ["NAME", "weights_path", "read_pretrained", "pretrained_info", "is_shipped_file"]

NAME = "ferplus"
WEIGHTS_FILE = "ferplus_resnet18.safetensors"
_META_KEY = "dfer_pretrained"
_REINSTALL = ("reinstall dfer (pip install --force-reinstall --no-deps with the dfer package you installed; in a "
              "clone: git checkout -- src/dfer/pretrained)")


def weights_path() -> Path:
    """Where the shipped weights lie: beside this module (``DFER_PRETRAINED`` overrides it)."""
    return Path(os.environ.get("DFER_PRETRAINED") or Path(__file__).with_name(WEIGHTS_FILE))


def read_pretrained(path: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The shipped state dict (float32, keys of the dfer model) and its metadata.

    Raises:
        ConfigError: the file is missing or damaged (a broken install), in one line that
            says how to reinstall.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path) if path is not None else weights_path()
    if not is_regular_file(path):
        what = "is not a regular file" if os.path.lexists(path) else "not found"
        if not _installed(path):
            raise ConfigError(f"{path}: the model file {what}")
        raise ConfigError(f"the FER+ model that ships with dfer is missing ({path} {what}); {_REINSTALL}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = _checked_meta(json.loads((f.metadata() or {})[_META_KEY]))
            state = {k: _widen(f.get_tensor(k)) for k in f.keys()}
        bad = first_non_finite(state)
        if bad is not None:
            raise ValueError(f"weight tensor {bad} holds NaN or infinite values")
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise damaged(path, e) from None
    return state, meta


def is_shipped_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a model file of dfer's (safetensors with its ``dfer_pretrained``
    metadata), damaged weights or not: one ``python -m dfer.pretrained`` may replace."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return _META_KEY in (f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False


def damaged(path: Path, e: BaseException) -> ConfigError:
    """The one line of a model file that does not read as one: the file, what is wrong, and how
    to mend it (reinstall dfer for the file it ships; export a user's file again)."""
    reason = " ".join(str(e).split())[:200] or type(e).__name__
    if not _installed(path):
        return ConfigError(f"{path}: this dfer model file is damaged ({reason}); write it again with python -m "
                           f"dfer.pretrained RUN")
    return ConfigError(f"the FER+ model that ships with dfer is damaged ({path}: {reason}); {_REINSTALL}")


def _installed(path: Path) -> bool:
    """Whether ``path`` is the model file dfer answers with (:func:`weights_path`), which a
    reinstall mends, rather than a user's own model file."""
    try:
        return Path(path).resolve() == weights_path().resolve()
    except OSError:
        return False


#: the input sides a shipped model may ask for (its faces are upsampled to it)
SIZES = range(8, 1025)
#: frames per window ``dfer predict`` may sample for it
NUM_FRAMES = range(1, 257)


def _checked_meta(meta: Any) -> dict[str, Any]:
    """The metadata of a shipped file (see the module docstring), every field of the type and
    range dfer reads it with; ValueError/KeyError naming the field otherwise. The lengths of
    ``mean`` and ``std`` are checked against the model's input channels when it is built
    (:func:`dfer.rundir.load_shipped`)."""
    def number(x) -> bool:
        return type(x) in (int, float) and math.isfinite(x)

    def numbers(x) -> bool:
        return isinstance(x, list) and len(x) > 0 and all(number(v) for v in x)

    if not isinstance(meta, dict):
        raise ValueError(f"its {_META_KEY} metadata is {type(meta).__name__}, not a mapping")
    for key in ("model", "classes", "size", "grey", "face_crop", "mean", "std"):
        meta[key]  # noqa: B018 - a KeyError names what is missing
    classes = meta["classes"]
    checks = (
        ("model", isinstance(meta["model"], str) and meta["model"], "a model name"),
        ("kwargs", isinstance(meta.get("kwargs", {}), dict) and all(isinstance(k, str) for k in meta.get("kwargs", {})),
         "a mapping of the model's options"),
        ("classes", isinstance(classes, list) and len(classes) >= 2 and all(_emotion(c) for c in classes)
         and len(set(classes)) == len(classes), "a list of two or more distinct emotion names"),
        ("size", type(meta["size"]) is int and meta["size"] in SIZES, f"a whole number of pixels, {SIZES.start}.."
                                                                       f"{SIZES.stop - 1}"),
        ("num_frames", type(meta.get("num_frames", 1)) is int and meta.get("num_frames", 1) in NUM_FRAMES,
         f"a whole number of frames, {NUM_FRAMES.start}..{NUM_FRAMES.stop - 1}"),
        ("grey", type(meta["grey"]) is bool, "true or false"),
        ("face_crop", number(meta["face_crop"]) and 0 < meta["face_crop"] <= 1, "a fraction in (0, 1]"),
        ("mean", numbers(meta["mean"]) and all(0 <= v <= 1 for v in meta["mean"]),
         "a list of per-channel means in [0, 1]"),
        ("std", numbers(meta["std"]) and all(v > 0 for v in meta["std"]), "a list of positive per-channel stds"),
        ("metrics", isinstance(meta.get("metrics", {}), dict), "a mapping"),
        ("prior", meta.get("prior") is None or (numbers(meta["prior"]) and isinstance(classes, list)
                                                and len(meta["prior"]) == len(classes)
                                                and all(v > 0 for v in meta["prior"])
                                                and abs(sum(meta["prior"]) - 1) <= 1e-3),
         "one positive number per class, summing to 1"),
        ("prior_correction", number(meta.get("prior_correction", 0)) and 0 <= meta.get("prior_correction", 0) <= 2
         and (meta.get("prior_correction", 0) == 0 or meta.get("prior") is not None), "in [0, 2], with a prior"),
        ("temperature", number(meta.get("temperature", 1)) and 0 < meta.get("temperature", 1) <= 100,
         "in (0, 100]"),
        ("tta", meta.get("tta", "none") in TTA, f"one of {', '.join(TTA)}"),
    )
    for key, ok, expected in checks:
        if not ok:
            raise ValueError(f"{key} {meta.get(key)!r:.60} is not {expected}")
    return meta


def _emotion(name: Any) -> bool:
    """Whether ``name`` is a canonical emotion name (``happy``, not ``Happiness``)."""
    try:
        return isinstance(name, str) and canonical(name) == name
    except DfeError:
        return False


def _widen(t: torch.Tensor) -> torch.Tensor:
    """fp16 as shipped -> float32; integer buffers (``num_batches_tracked``) stay as they are."""
    return t.float() if t.is_floating_point() else t


def pretrained_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The metadata of the shipped model (see the module docstring), without reading the weights."""
    from safetensors import SafetensorError, safe_open

    path = Path(path) if path is not None else weights_path()
    try:
        if not is_regular_file(path):
            raise OSError(f"{path} is not a regular file")
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return _checked_meta(json.loads((f.metadata() or {})[_META_KEY]))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):
        return read_pretrained(path)[1]  # raises the one-line message of a broken install
