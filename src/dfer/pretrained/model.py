"""The network of the shipped face-expression model (:mod:`dfer.pretrained` reads its file)."""

from __future__ import annotations

import os

import torch
from torch import nn

from dfer.errors import DfeError
from dfer.models import create_model_for_weights
from dfer.pretrained import damaged, read_pretrained, weights_path

__all__ = ["build_model"]


def build_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """(model in eval mode on ``device``, metadata) of the shipped model.

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
