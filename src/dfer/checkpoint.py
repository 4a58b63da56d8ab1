"""Checkpoints of dfer train: safetensors files holding the model, the optimiser, the AMP
scaler, the mixer's and the global random streams and RDFER's state, with the run's state
(epoch, step, config, ``finished``) as metadata and a JSON copy of that state beside them.
Nothing in a checkpoint is ever unpickled; a damaged or foreign file is one line."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dfer.distributed import unwrap
from dfer.errors import ConfigError, first_line
from dfer.io import atomic_path, first_non_finite, is_regular_file, write_text_atomic


def save_checkpoint(path: Path, model, optimizer, scaler, mixer, state: dict, robust=None) -> None:
    """One safetensors file (weights, optimiser buffers, RNG states) + a JSON sidecar.

    The safetensors file is written to a temporary name and renamed, so a crash never
    leaves a half-written checkpoint; its metadata carries the JSON state as well, so the
    sidecar is informational.
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for k, v in unwrap(model).state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    opt = optimizer.state_dict()
    for pid, st in opt["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{name}"] = v.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    if mixer is not None:
        tensors["rng.mixer"] = mixer.state_dict()["rng_state"]
    if robust is not None:
        for k, v in robust.state_dict().items():
            tensors[f"robust.{k}"] = v.detach().cpu().contiguous()
    meta = dict(state)
    meta["optim_param_groups"] = opt["param_groups"]
    meta["optim_scalars"] = {str(pid): {n: v for n, v in st.items() if not torch.is_tensor(v)}
                             for pid, st in opt["state"].items()}
    meta["scaler"] = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
    meta["numpy_rng"] = None
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"dfer_state": json.dumps(meta)})
    write_text_atomic(path.with_suffix(".json"), json.dumps(
        {k: v for k, v in meta.items() if k not in ("optim_param_groups", "optim_scalars")}, indent=1, default=str))


def _damaged(path: Path, e: BaseException, what: str = "is not a readable dfer checkpoint") -> ConfigError:
    return ConfigError(f"{path}: {what} ({type(e).__name__}: {first_line(e)}); it is damaged or was not written by "
                       f"dfer train (--restart trains the run again from scratch)")


def read_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(state metadata, tensors) of a checkpoint of dfer train; one line naming the file on
    a truncated, foreign or damaged one, or one whose weights are not all finite.
    Safetensors holds tensors and strings only: nothing in a checkpoint is ever unpickled."""
    from safetensors.torch import load_file

    meta = load_checkpoint_meta(path)
    try:
        tensors = load_file(str(path))
    except Exception as e:  # SafetensorError on a truncated file, OSError
        raise _damaged(path, e) from None
    bad = first_non_finite({k: v for k, v in tensors.items() if k.startswith("model.")})
    if bad is not None:
        raise ConfigError(f"{path}: weight tensor {bad.removeprefix('model.')} holds NaN or infinite values; the "
                          f"run diverged or the file is damaged (--restart trains the run again from scratch)")
    return meta, tensors


def load_checkpoint(path: Path, model, optimizer=None, scaler=None, mixer=None, map_location="cpu",
                    robust=None) -> dict:
    meta, tensors = read_checkpoint(path)
    try:
        return _restore(meta, tensors, model, optimizer, scaler, mixer, robust)
    except ConfigError:
        raise
    except Exception as e:  # tensors that do not fit the model or optimiser: a checkpoint of another run
        raise _damaged(path, e, "does not fit this run's model and optimiser") from None


def _restore(meta: dict, tensors: dict, model, optimizer, scaler, mixer, robust) -> dict:
    msd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    unwrap(model).load_state_dict(msd)
    if optimizer is not None:
        state: dict = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = v
        for pid, scalars in meta.get("optim_scalars", {}).items():
            state.setdefault(int(pid), {}).update(scalars)
        optimizer.load_state_dict({"state": state, "param_groups": meta["optim_param_groups"]})
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    if mixer is not None and "rng.mixer" in tensors:
        mixer.load_state_dict({"rng_state": tensors["rng.mixer"]})
    if robust is not None:
        robust.load_state_dict({k[len("robust."):]: v for k, v in tensors.items() if k.startswith("robust.")})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    return meta


def load_checkpoint_meta(path: Path) -> dict:
    """The state metadata of checkpoint ``path``; one line naming the file when it is not a
    regular file (a FIFO would block the reader for ever), damaged or foreign."""
    from safetensors import safe_open

    if not is_regular_file(path):
        raise ConfigError(f"{path}: not a regular file; a checkpoint of dfer train is one (--restart trains the "
                          f"run again from scratch)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {})["dfer_state"])
    except Exception as e:  # SafetensorError, KeyError (no dfer state), JSON errors, OSError
        raise _damaged(path, e) from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: its dfer state is {type(meta).__name__}, not a mapping; it is damaged "
                          f"(--restart trains the run again from scratch)")
    return meta


def _refuser(path: Path, meta: dict):
    def refuse(field: str, expected: str) -> ConfigError:
        found = repr(meta[field]) if field in meta else "missing"
        return ConfigError(f"{path}: its state's {field} is {found:.60}, expected {expected}; it is damaged or not "
                           f"this run's (--restart trains the run again from scratch)")
    return refuse


def _epoch_and_step(path: Path, meta: dict, epochs: int, steps_per_epoch: int | None) -> tuple[int, int]:
    """The ``epoch`` and ``step`` of a checkpoint's state, checked: a whole number of
    finished epochs in 1..epochs, and its epochs times the steps of each (any whole
    number of steps per epoch, the same for every epoch, when ``steps_per_epoch`` is None)."""
    refuse = _refuser(path, meta)
    epoch, step = meta.get("epoch"), meta.get("step")
    if type(epoch) is not int or not 1 <= epoch <= epochs:
        raise refuse("epoch", f"a whole number of finished epochs, 1..{epochs} (optim.epochs)")
    if steps_per_epoch is None:
        if type(step) is not int or step < epoch or step % epoch:
            raise refuse("step", f"a whole number of optimiser steps for each of its {epoch} epoch(s)")
    elif type(step) is not int or step != epoch * steps_per_epoch:
        raise refuse("step", f"{epoch * steps_per_epoch}: {epoch} epoch(s) of {steps_per_epoch} optimiser steps "
                             f"(this run's training clips over optim.batch_size)")
    return epoch, step


def _is_uar(x) -> bool:
    return type(x) in (int, float) and 0 <= x <= 1


def resume_point(path: Path, meta: dict, epochs: int, steps_per_epoch: int | None) -> tuple[int, int, float]:
    """(epoch, step, best validation UAR) to resume from, out of the state ``meta`` of
    checkpoint ``path`` (a ``last`` checkpoint), for a run of ``epochs`` epochs of
    ``steps_per_epoch`` optimiser steps (None: not known without the data, e.g. when a
    finished run is evaluated; then the same whole number for every epoch).

    The state is what dfer train writes after each epoch: ``epoch`` in 1..epochs, ``step``
    its epochs times the steps of each, ``best`` -1 (none yet) or a UAR in [0, 1],
    ``finished`` a boolean. Anything else would resume at a wrong place (an epoch beyond
    the run's ends it unfinished as if finished) and is refused.

    Raises:
        ConfigError: one line naming the file and the field.
    """
    refuse = _refuser(path, meta)
    epoch, step = _epoch_and_step(path, meta, epochs, steps_per_epoch)
    best = meta.get("best", -1.0)
    if type(best) not in (int, float) or not (best == -1 or _is_uar(best)):
        raise refuse("best", "-1 (no validation yet) or a UAR in [0, 1]")
    if type(meta.get("finished", False)) is not bool:
        raise refuse("finished", "true or false")
    return epoch, step, float(best)


def best_point(path: Path, meta: dict, epochs: int, last: tuple[int, int, float] | None) -> tuple[int, int, float]:
    """(epoch, step, validation UAR) of a ``best`` checkpoint's state ``meta``, checked
    against the run: ``epoch`` in 1..epochs, ``step`` its epochs of the run's steps per
    epoch and ``val_uar`` a UAR in [0, 1]; with ``last``, the run's last checkpoint's
    (epoch, step, best) as :func:`resume_point` read them, the steps per epoch are the
    last checkpoint's, and a best of an epoch the last checkpoint has passed is the best
    UAR it records. Only the epoch right after the last checkpoint's (its last checkpoint
    cut off by a kill) may be later than that.

    Raises:
        ConfigError: one line naming the file and the field.
    """
    refuse = _refuser(path, meta)
    steps_per_epoch = None if last is None else last[1] // last[0]
    epoch, step = _epoch_and_step(path, meta, epochs, steps_per_epoch)
    uar = meta.get("val_uar")
    if not _is_uar(uar):
        raise refuse("val_uar", "the validation UAR it was chosen for, in [0, 1]")
    if last is not None:
        last_epoch, _, last_best = last
        if epoch > last_epoch + 1:
            raise refuse("epoch", f"at most {last_epoch + 1}: the last checkpoint is of epoch {last_epoch}")
        if epoch <= last_epoch and uar != last_best:
            raise refuse("val_uar", f"{last_best}, the best validation UAR the last checkpoint records")
    return epoch, step, float(uar)


def mark_finished(path: Path) -> None:
    """Mark the run of checkpoint ``path`` finished (its final evaluation written)."""
    meta = load_checkpoint_meta(path)
    meta["finished"] = True
    _rewrite_meta(path, meta)


def _rewrite_meta(path: Path, meta: dict) -> None:
    """Replace the state metadata of a checkpoint, its tensors as they are."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt", device="cpu") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"dfer_state": json.dumps(meta)})
