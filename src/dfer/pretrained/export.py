"""Write a finished ``dfer train`` run of one-frame grey faces as dfer's shipped model file::

    python -m dfer.pretrained RUN_DIR --face-crop 0.65 [--out FILE] [--overwrite] [--num-frames 8] \
        [--prior-correction TAU] [--temperature T] [--tta flip] [--no-prior]

``--out`` replaces a model file of dfer's (the shipped one by default); any other file is
refused in one line, exit 2, unless ``--overwrite`` is given.

The file records the class prior of the run's training data (the mean of its training
targets, every copy of a repeated source counted), so that a prior correction can be
applied or changed later (``dfer predict --prior-correction``); ``--prior-correction``,
``--temperature`` and ``--tta`` set the rule it answers with by default
(:class:`dfer.calibration.OutputRule`). Computing the prior reads the run's training
corpus; where it is not at hand, ``--no-prior`` writes the file without one (a prior
correction is then refused for it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from dfer.calibration import TTA, OutputRule, class_prior
from dfer.config import arg
from dfer.data.splits import build_splits
from dfer.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dfer.errors import ConfigError, DfeError
from dfer.io import atomic_path, claim_file, make_folder
from dfer.pretrained import _META_KEY, is_shipped_file, weights_path
from dfer.rundir import RESULTS_FILE, load_run, read_results

__all__ = ["export_run", "main"]


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, face_crop: float = 1.0,
               num_frames: int = 8, metrics: dict | None = None, prior_correction: float = 0.0,
               temperature: float = 1.0, tta: str = "none", prior: np.ndarray | None = None,
               record_prior: bool = True,
               overwrite: bool = False) -> Path:
    """Write a finished ``dfer train`` run of one-frame grey faces as the shipped file (fp16).

    Args:
        run_dir: the run (its ``config.yaml``, ``classes.json``, last checkpoint).
        out: the file to write (default :func:`weights_path`): a new one or a model file of
            dfer's (:func:`dfer.pretrained.is_shipped_file`), any file with ``overwrite``.
        face_crop: see the module docstring.
        num_frames: frames ``dfer predict`` samples per window; the model averages their
            features (it was trained on single frames, so any number works).
        metrics: figures to record (default: the run's ``results.json``).
        prior_correction, temperature, tta: the rule the file answers with by default
            (:class:`dfer.calibration.OutputRule`).
        prior: the class prior to record (default: computed from the run's training
            data, which reads the training corpus).
        record_prior: False writes no prior (and then allows no prior correction).
    """
    run_dir = Path(run_dir)
    out = claim_file(out if out is not None else weights_path(), "python -m dfer.pretrained", is_shipped_file,
                     overwrite=overwrite, flag="--overwrite")
    model, cfg, classes = load_run(run_dir, which="last", device=torch.device("cpu"))
    if cfg.data.num_frames != 1 or not 0 < face_crop <= 1 or num_frames < 1:
        raise ConfigError(f"{run_dir}: the shipped model is a one-frame face model with a face crop in (0, 1]; "
                          f"this run has data.num_frames={cfg.data.num_frames} (face_crop {face_crop}, "
                          f"num_frames {num_frames})")
    if metrics is None and (run_dir / RESULTS_FILE).is_file():
        res = read_results(run_dir / RESULTS_FILE)
        metrics = {k: res.get(k) for k in ("war", "uar", "kl_to_votes", "ece", "per_class_recall", "num_clips")}
        metrics["split"] = cfg.data.source.test_split
    if prior is None and record_prior:
        try:
            prior = training_prior(cfg)
        except DfeError as e:
            raise ConfigError(f"{run_dir}: the class prior of its training data cannot be computed ({e}); give "
                              f"--no-prior to write the file without one") from None
    try:
        rule = OutputRule(prior=tuple(float(v) for v in prior) if record_prior else None,
                          prior_correction=prior_correction, temperature=temperature, tta=tta)
    except ValueError as e:
        raise ConfigError(f"{run_dir}: {e}") from None
    if rule.prior is not None and len(rule.prior) != len(classes):
        raise ConfigError(f"{run_dir}: a prior of {len(rule.prior)} classes for a model of {len(classes)}")
    meta = {"model": cfg.model.name, "kwargs": dict(cfg.model.kwargs), "classes": list(classes),
            "size": int(cfg.data.size), "num_frames": int(num_frames), "grey": True,
            "face_crop": float(face_crop), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "metrics": metrics or {}, "trained_by": f"dfer train, run {run_dir.name}",
            **rule.describe()}
    state = {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in model.state_dict().items()}
    make_folder(out.parent, "python -m dfer.pretrained")
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={_META_KEY: json.dumps(meta)})
        os.chmod(tmp, 0o644)  # package data: readable by every user of an installed dfer
    return out


def training_prior(cfg) -> np.ndarray:
    """The class prior of a run's training data: the mean of its training targets (vote
    distributions, or one-hot labels), every copy of a repeated source counted."""
    train = build_splits(cfg).train.resolve_labels(cfg.data.ties, cfg.seed, "training clips", required=False)
    try:
        return class_prior(train.soft_labels())
    except ValueError as e:
        raise ConfigError(f"the training data of {cfg.name}: {e}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dfer.pretrained",
                                description="write a finished FER+ run as dfer's shipped model")
    p.add_argument("run_dir")
    p.add_argument("--out", help=f"file to write: a new one or a model file of dfer's (default: {weights_path()})")
    p.add_argument("--overwrite", action="store_true", help="replace --out even if it is not a model file of dfer's")
    p.add_argument("--face-crop", type=float, required=True,
                   help="centred fraction of the aligned 256x256 face that matches the training framing")
    p.add_argument("--num-frames", type=int, default=8, help="frames per window for dfer predict (default 8)")
    p.add_argument("--prior-correction", type=arg(float, range="[0, 2]"), default=0.0,
                   help="strength of the correction dividing the training class prior out of the answer (default 0)")
    p.add_argument("--temperature", type=arg(float, range="(0, 100]"), default=1.0,
                   help="temperature of the answer's softmax (default 1)")
    p.add_argument("--no-prior", action="store_true",
                   help="write no training class prior (its corpus is not at hand); no prior correction then")
    p.add_argument("--tta", choices=TTA, default="none", help="test-time augmentation (default none)")
    args = p.parse_args(argv)
    try:
        print(export_run(args.run_dir, args.out, face_crop=args.face_crop, num_frames=args.num_frames,
                         prior_correction=args.prior_correction, temperature=args.temperature, tta=args.tta,
                         record_prior=not args.no_prior,
                         overwrite=args.overwrite))
    except DfeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
