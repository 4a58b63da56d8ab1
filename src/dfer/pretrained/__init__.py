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

Used by ``dfer predict`` without ``--run`` (:func:`dfer.load_pretrained`), by
``model.pretrained: ferplus`` for the video models (:func:`trunk_state`), and by
``dfer evaluate --pretrained``. Write a new one from a finished run with
``python -m dfer.pretrained RUN_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from dfer.errors import ConfigError

__all__ = ["NAME", "weights_path", "read_pretrained", "pretrained_info", "build_model", "trunk_state",
           "export_run"]

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


def build_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """(model in eval mode on ``device``, metadata) of the shipped model."""
    from dfer.models import create_model

    state, meta = read_pretrained(path)
    rng = torch.get_rng_state()
    try:  # building initialises weights that are then overwritten: leave the caller's stream alone
        model = create_model(meta["model"], num_classes=len(meta["classes"]), pretrained=False,
                             dropout=0.0, **meta.get("kwargs", {}))
    finally:
        torch.set_rng_state(rng)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"the FER+ model that ships with dfer does not fit {meta['model']} "
                          f"({str(e).splitlines()[0]}); {_REINSTALL}") from None
    return model.to(device).eval(), meta


def trunk_state(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The shipped ResNet-18 trunk in torchvision's keys (``conv1.weight``, ...), no classifier."""
    from dfer.models.weights import backbone_state

    return backbone_state(read_pretrained(path)[0])


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, face_crop: float = 1.0,
               num_frames: int = 8, metrics: dict | None = None) -> Path:
    """Write a finished ``dfer train`` run of one-frame grey faces as the shipped file (fp16).

    Args:
        run_dir: the run (its ``config.yaml``, ``classes.json``, last checkpoint).
        out: the file to write (default :func:`weights_path`).
        face_crop: see the module docstring.
        num_frames: frames ``dfer predict`` samples per window; the model averages their
            features (it was trained on single frames, so any number works).
        metrics: figures to record (default: the run's ``results.json``).
    """
    from safetensors.torch import save_file

    from dfer.evaluate import load_run
    from dfer.io import atomic_path

    run_dir = Path(run_dir)
    model, cfg, classes = load_run(run_dir, which="last", device=torch.device("cpu"))
    if cfg.data.num_frames != 1 or not 0 < face_crop <= 1 or num_frames < 1:
        raise ConfigError(f"{run_dir}: the shipped model is a one-frame face model with a face crop in (0, 1]; "
                          f"this run has data.num_frames={cfg.data.num_frames} (face_crop {face_crop}, "
                          f"num_frames {num_frames})")
    if metrics is None and (run_dir / "results.json").is_file():
        res = json.loads((run_dir / "results.json").read_text())
        metrics = {k: res.get(k) for k in ("war", "uar", "kl_to_votes", "ece", "per_class_recall", "num_clips")}
        metrics["split"] = cfg.data.source.test_split
    meta = {"model": cfg.model.name, "kwargs": dict(cfg.model.kwargs), "classes": list(classes),
            "size": int(cfg.data.size), "num_frames": int(num_frames), "grey": True,
            "face_crop": float(face_crop), "mean": list(_norm()[0]), "std": list(_norm()[1]),
            "metrics": metrics or {}, "trained_by": f"dfer train, run {run_dir.name}"}
    state = {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in model.state_dict().items()}
    out = Path(out) if out is not None else weights_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={_META_KEY: json.dumps(meta)})
        os.chmod(tmp, 0o644)  # package data: readable by every user of an installed dfer
    return out


def _norm():
    from dfer.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    return IMAGENET_MEAN, IMAGENET_STD


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dfer.pretrained",
                                description="write a finished FER+ run as dfer's shipped model")
    p.add_argument("run_dir")
    p.add_argument("--out", help=f"file to write (default: {weights_path()})")
    p.add_argument("--face-crop", type=float, required=True,
                   help="centred fraction of the aligned 256x256 face that matches the training framing")
    p.add_argument("--num-frames", type=int, default=8, help="frames per window for dfer predict (default 8)")
    args = p.parse_args(argv)
    try:
        print(export_run(args.run_dir, args.out, face_crop=args.face_crop, num_frames=args.num_frames))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
