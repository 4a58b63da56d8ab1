"""A run directory of ``dfer train``: what makes a folder one (or an evaluation's folder),
the files dfer writes there, the readers of those files, and loading a model for
inference from a run, from a bare checkpoint of ``dfer train`` or from the model that
ships with dfer. The one home of those judgements: ``dfer train``, ``dfer cv``, ``dfer
evaluate``, ``dfer predict`` and ``python -m dfer.pretrained`` go through it.

A run directory holds::

    config.yaml  classes.json  metrics.csv  precision.json   written when training starts
    checkpoints/last.safetensors (+ .json)                  after every epoch
    checkpoints/best.safetensors (+ .json)                  eval.select: best_val, a better validation
    robust.csv  robust_samples.csv                          robust.enabled, after every epoch
    results.json  predictions.csv  confusion.png           the test evaluation (results.TAG.json ...)
    cache/  skipped_*_clips.csv  tb/  .dfer  .lock
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from dfer.checkpoint import best_point, load_checkpoint, load_checkpoint_meta, resume_point
from dfer.config import RunConfig, load_config
from dfer.emotions import resolve_classes
from dfer.errors import ConfigError, DataError, DfeError, first_line, where
from dfer.io import claim_folder, holds, is_regular_file
from dfer.models import create_model_for_weights
from dfer.pretrained import damaged, read_pretrained, weights_path

#: the resolved config of a run (:func:`dfer.config.dump_config`)
CONFIG_FILE = "config.yaml"
#: the class names in the classifier's order, a JSON list
CLASSES_FILE = "classes.json"
#: one row per epoch (loss, validation, speed)
METRICS_FILE = "metrics.csv"
#: the precision the run chose (:mod:`dfer.precision`)
PRECISION_FILE = "precision.json"
#: the test evaluation's figures (:func:`read_results`)
RESULTS_FILE = "results.json"
#: RDFER's row per epoch (:func:`dfer.robust.learner.read_robust_log`)
ROBUST_FILE = "robust.csv"
#: the folder of the run's checkpoints
CHECKPOINTS = "checkpoints"
#: the disk check's results (:func:`dfer.data.check.check_table`), reused when a run resumes
CACHE_DIR = "cache"
#: the checkpoints a run keeps: after every epoch, and at its best validation
CHECKPOINT_NAMES = ("last", "best")


def checkpoint_path(run_dir: str | os.PathLike, which: str = "last") -> Path:
    """``run_dir/checkpoints/<which>.safetensors``, ``which`` one of :data:`CHECKPOINT_NAMES`."""
    if which not in CHECKPOINT_NAMES:
        raise ConfigError(f"a run's checkpoint is 'last' or 'best', got {which!r}")
    return Path(run_dir) / CHECKPOINTS / f"{which}.safetensors"


def selected_checkpoint(cfg: RunConfig) -> str:
    """The checkpoint a run's ``eval.select`` chose: ``best`` for ``best_val``, else ``last``."""
    return "best" if cfg.eval.select == "best_val" else "last"


#: the kind of folder (:func:`dfer.io.claim_folder`) of a run directory
RUN_KIND = "run"


def is_earlier_run(folder: Path) -> bool:
    """A run directory written before dfer marked its folders: its config beside a
    checkpoint, or, killed before its first epoch ended, beside its classes and the disk
    check's cache. A user's config.yaml alone is not a run."""
    return holds(folder, CONFIG_FILE, f"{CHECKPOINTS}/*.safetensors") or \
        holds(folder, CONFIG_FILE, CLASSES_FILE, f"{CACHE_DIR}/check-*.npz")


#: the files dfer train writes at the top of a run directory (besides checkpoints/ and cache/)
RUN_FILES = (CONFIG_FILE, CLASSES_FILE, METRICS_FILE, PRECISION_FILE)


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


# ---------------------------------------------------------------------- the run's files


def read_classes(path: Path) -> tuple[str, ...]:
    """The class names a run was trained with (``classes.json``), checked."""
    if not path.is_file():
        raise ConfigError(f"{path.parent}: no {path.name}; the run never started training")
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({first_line(e)}); it is damaged") from None
    if (not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes)
            or len(set(classes)) != len(classes)):
        raise ConfigError(f"{path}: expected a list of two or more distinct class names, got {classes!r:.120}")
    return tuple(classes)


def read_results(path: Path) -> dict:
    """A run's ``results.json``, checked: an object with the class names and numeric (or
    null) UAR and WAR; one line naming the file otherwise."""
    try:
        res = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({first_line(e)}); it is damaged") from None
    ok = (isinstance(res, dict) and isinstance(res.get("classes"), list)
          and all(isinstance(res.get(k), (int, float, type(None))) and not isinstance(res.get(k), bool)
                  for k in ("uar", "war")))
    if not ok:
        raise DataError(f"{path}: not the results of a dfer run (expected an object with classes, uar and war)")
    return res


def read_epoch_log(path: Path, fields: Sequence[str], epochs_done: int,
                   cells: Mapping[str, tuple[float, float, bool]] | None = None) -> tuple[bytes, list[bytes], bool]:
    """The rows of the epochs done of a per-epoch CSV log of a run (``metrics.csv``,
    ``robust.csv``), checked before a resumed run keeps them as they are.

    Every line must be dfer's: the header ``fields``, as many cells in each row, ``epoch``
    a whole number, every other cell empty or a finite number, within the range
    ``cells[field]`` gives, ``(lowest, highest, whole)``, where it gives one. A last line
    without its line end is an append cut short by a kill, of an epoch not checkpointed,
    and is left out.

    Returns:
        (the header line, the lines of the epochs 1..``epochs_done``, whether the file
        holds anything else: later epochs or a cut line), lines as bytes with their ends.

    Raises:
        ConfigError: naming the file and line: a file that is not dfer's (not a regular
            file, not text, empty, another header, a row of other cells) is never replaced.
    """
    def refuse(line: int | None, what: str) -> ConfigError:
        return ConfigError(f"{where(path, line)}: {what}; the file is damaged (delete it to resume without the "
                           f"earlier rows, or --restart)")

    if not is_regular_file(path):
        raise refuse(None, "not a regular file")
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines.pop()  # cut short by a kill mid-append: an epoch after the checkpoint
    if not lines:
        raise refuse(None, f"{'empty' if not data else 'holds no whole line'}, but the checkpoint is after epoch "
                           f"{epochs_done}, whose rows it held")
    header, ranges, kept = ",".join(fields), cells or {}, []
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise refuse(number, "not UTF-8 text") from None
        row = next(csv.reader([text.rstrip("\r\n")]), [])
        if number == 1:
            if row != list(fields):
                raise refuse(1, f"the header is {text.strip()!r:.80}, expected {header!r}")
            continue
        if len(row) != len(fields):
            raise refuse(number, f"{len(row)} cells, expected {len(fields)} ({header})")
        try:
            epoch = int(row[0])
        except ValueError:
            raise refuse(number, f"epoch {row[0]!r:.40} is not an integer") from None
        for name, cell in zip(fields[1:], row[1:]):
            lo, hi, whole = ranges.get(name, (-math.inf, math.inf, False))
            try:
                value = float(cell or 0)
            except ValueError:
                raise refuse(number, f"{name} {cell!r:.40} is not a number") from None
            if not math.isfinite(value):
                raise refuse(number, f"{name} {cell!r:.40} is not a finite number")
            if not (lo <= value <= hi and (not whole or value == int(value))):
                kind = "a whole number" if whole else "a number"
                raise refuse(number, f"{name} {cell!r:.40} is not {kind} in [{lo:g}, {hi:g}]")
        if epoch <= epochs_done:
            kept.append(raw)
    return lines[0], kept, len(kept) != len(lines) - 1 or len(lines) != len(data.splitlines())


def check_states(run_dir: Path, which: str, cfg: RunConfig) -> None:
    """Check the state of the run's ``which`` checkpoint against the run's config (epoch,
    step, best UAR, as :func:`dfer.checkpoint.resume_point` and
    :func:`dfer.checkpoint.best_point` read them) and, for ``best``, against its last
    checkpoint; one line naming the file and the field otherwise."""
    epochs = cfg.optim.epochs
    last_path = checkpoint_path(run_dir, "last")
    last = resume_point(last_path, load_checkpoint_meta(last_path), epochs, None) if last_path.is_file() else None
    if which == "best":
        path = checkpoint_path(run_dir, "best")
        best_point(path, load_checkpoint_meta(path), epochs, last)


# ---------------------------------------------------------------------- loading a model


def load_run(run_dir: str | os.PathLike, *, which: str | None = None, device: str | torch.device = "cpu"
             ) -> tuple[nn.Module, RunConfig, tuple[str, ...]]:
    """(model in eval mode, config, classes) of a finished or interrupted run.

    ``which`` is ``last`` or ``best`` (default: what the run's ``eval.select`` chose). The
    checkpoint's state is checked against the run (:func:`check_states`) before its
    weights are read.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: run directory not found")
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} is not a dfer run directory (no {CONFIG_FILE})")
    cfg = load_config(cfg_path)
    classes = read_classes(run_dir / CLASSES_FILE)
    which = which or selected_checkpoint(cfg)
    ckpt = checkpoint_path(run_dir, which)
    if not ckpt.is_file():
        raise ConfigError(f"{run_dir}: no checkpoint {ckpt.name}")
    check_states(run_dir, which, cfg)
    model = create_model_for_weights(cfg.model.name, len(classes), dropout=cfg.model.dropout, **cfg.model.kwargs)
    load_checkpoint(ckpt, model)
    return model.to(device).eval(), cfg, classes


def load_checkpoint_file(path: str | os.PathLike, model_name: str, classes: str | tuple[str, ...],
                         device: str | torch.device = "cpu") -> tuple[nn.Module, tuple[str, ...]]:
    """(model in eval mode, class names) of a bare checkpoint of ``dfer train``, for the
    model ``model_name`` over ``classes`` (a class set's name or the names)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint file not found")
    class_names = tuple(resolve_classes(classes))
    model = create_model_for_weights(model_name, len(class_names))
    try:
        load_checkpoint(path, model)
    except Exception as e:
        raise ConfigError(f"{path}: not a dfer checkpoint for {model_name} with {len(class_names)} classes "
                          f"({type(e).__name__}: {first_line(e)})") from None
    return model.to(device).eval(), class_names


def load_shipped(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """(model in eval mode on ``device``, metadata) of the shipped model (:mod:`dfer.pretrained`
    reads its file; ``path`` default :func:`dfer.pretrained.weights_path`).

    Raises:
        ConfigError: the file is missing or damaged, names a model or options dfer does not
            have, holds weights of another shape, or a normalisation (``mean``, ``std``) of
            another length than the model's input channels; one line that says how to reinstall.
    """
    state, meta = read_pretrained(path)
    path = path if path is not None else weights_path()
    try:
        model = create_model_for_weights(meta["model"], len(meta["classes"]), dropout=0.0, **meta.get("kwargs", {}))
    except (DfeError, TypeError, ValueError) as e:  # an unknown model or option, an option of a wrong type
        raise damaged(path, ValueError(f"model {meta['model']!r} with kwargs {meta.get('kwargs', {})!r:.80} cannot "
                                       f"be built: {e}")) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise damaged(path, ValueError(f"its weights do not fit {meta['model']} ({str(e).splitlines()[0]})")) from None
    channels = next(m.in_channels for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    for key in ("mean", "std"):
        if len(meta[key]) != channels:  # a shorter one would be broadcast over the channels
            raise damaged(path, ValueError(f"{key} {meta[key]!r:.60} has {len(meta[key])} value(s), the model's "
                                           f"input has {channels} channels"))
    return model.to(device).eval(), meta
