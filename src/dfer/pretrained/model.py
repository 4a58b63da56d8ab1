"""The network of the shipped face-expression model (:mod:`dfer.pretrained` reads its file)."""

from __future__ import annotations

import os

import torch

from dfer.errors import ConfigError
from dfer.models import create_model_for_weights
from dfer.pretrained import _REINSTALL, read_pretrained

__all__ = ["build_model"]


def build_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """(model in eval mode on ``device``, metadata) of the shipped model."""
    state, meta = read_pretrained(path)
    model = create_model_for_weights(meta["model"], len(meta["classes"]), dropout=0.0, **meta.get("kwargs", {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"the FER+ model that ships with dfer does not fit {meta['model']} "
                          f"({str(e).splitlines()[0]}); {_REINSTALL}") from None
    return model.to(device).eval(), meta
