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
- ``metrics``: FER+ Valid figures measured on the exported file, for the card.

This module reads the file; :func:`dfer.pretrained.model.build_model` makes the network of
it, :mod:`dfer.pretrained.export` writes a new one from a finished run
(``python -m dfer.pretrained RUN_DIR``). Used by ``dfer predict`` without ``--run``
(:func:`dfer.load_pretrained`), by ``model.pretrained: ferplus`` for the video models
(:func:`dfer.models.weights.trunk_state`), and by ``dfer evaluate --pretrained``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from dfer.errors import ConfigError

__all__ = ["NAME", "weights_path", "read_pretrained", "pretrained_info"]

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
    if not path.is_file():
        raise ConfigError(f"the FER+ model that ships with dfer is missing ({path} not found); {_REINSTALL}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {})[_META_KEY])
            state = {k: _widen(f.get_tensor(k)) for k in f.keys()}
        for key in ("model", "classes", "size", "grey", "face_crop", "mean", "std"):
            meta[key]  # noqa: B018 - a KeyError names what is missing
        if not 0 < float(meta["face_crop"]) <= 1:
            raise ValueError(f"face_crop {meta['face_crop']!r} is not a fraction in (0, 1]")
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise ConfigError(f"the FER+ model that ships with dfer is damaged ({path}: {reason}); {_REINSTALL}") from None
    return state, meta


def _widen(t: torch.Tensor) -> torch.Tensor:
    """fp16 as shipped -> float32; integer buffers (``num_batches_tracked``) stay as they are."""
    return t.float() if t.is_floating_point() else t


def pretrained_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The metadata of the shipped model (see the module docstring), without reading the weights."""
    from safetensors import SafetensorError, safe_open

    path = Path(path) if path is not None else weights_path()
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return json.loads((f.metadata() or {})[_META_KEY])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):
        return read_pretrained(path)[1]  # raises the one-line message of a broken install
