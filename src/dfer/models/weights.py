"""Pretrained weights for the model backbones, with errors a user can act on offline.

``pretrained`` in every builder is one of:

- ``False``: random initialisation;
- ``True``: torchvision's weights enum for the backbone (ImageNet for the 2D ResNet-18,
  as in MIDAS section 4.3; Kinetics-400 for R3D-18). The file is read from the torch hub
  cache, ``torch.hub.get_dir()/checkpoints/<file>``, and downloaded there when missing;
  when the download fails (no network) a :class:`~dfer.errors.ConfigError` names the file,
  the directory to put it in and the URL to fetch it from on a machine that is online;
- ``"ferplus"``: the ResNet-18 trunk of the face-expression model that ships inside dfer
  (:mod:`dfer.pretrained`: trained on FER+'s grey faces, which it sees as three equal
  channels, at 64 px; a colour clip is fine to fine-tune on, and any input size works);
  with ``model.pretrained_classifier: true`` (and that model's eight classes) its
  classifier too (:func:`load_pretrained_classifier`): training fine-tunes the shipped model;
- a path to a local state dict (``.pth``/``.pt`` via ``torch.load``, or ``.safetensors``):
  a torchvision-layout backbone (``conv1.weight``, ..., ``fc.weight``) or a dfer model
  (``backbone.conv1.weight``, ..., ``classifier.weight``). Only the backbone is loaded;
  the source's classifier (``fc.*`` / ``classifier.*``) is dropped because its number of
  classes need not match, and the model keeps its freshly initialised classifier — unless the
  file is a dfer model file (written by ``python -m dfer.pretrained``, its classes recorded)
  and ``model.pretrained_classifier: true``: then training fine-tunes that model whole.
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import WeightsEnum

from dfer.errors import ConfigError
from dfer.io import first_non_finite, is_regular_file
from dfer.pretrained import is_shipped_file, read_pretrained

Pretrained = bool | str | os.PathLike
#: ``pretrained="ferplus"``: the ResNet-18 trunk of the face-expression model that ships
#: with dfer (trained on FER+'s grey 48-px faces; see :mod:`dfer.pretrained`)
FERPLUS = "ferplus"

# Keys of a classifier head, dropped from a source state dict because the number of classes
# of the source (1000 for ImageNet, 400 for Kinetics, K for a dfer run) rarely matches.
_HEAD_PREFIXES = ("fc.", "classifier.")
# Containers used by common training scripts around the state dict itself.
_CONTAINER_KEYS = ("state_dict", "model", "model_state", "model_state_dict")


def cache_path(weights: WeightsEnum) -> Path:
    """Where torch hub keeps the file of ``weights``: ``<hub dir>/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def fetch_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """Read the state dict of a torchvision weights enum, downloading it when not cached.

    Args:
        weights: e.g. ``ResNet18_Weights.IMAGENET1K_V1``.

    Returns:
        The state dict, tensors on the CPU.

    Raises:
        ConfigError: the file is not cached and cannot be downloaded, or cannot be read.
    """
    path = cache_path(weights)
    if path.is_file():
        return _read(path)
    try:
        # Looked up on torch.hub at call time (torchvision binds its own copy at import),
        # so that tests can replace the download with a failing stub.
        return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=False, weights_only=True)
    except (OSError, http.client.HTTPException) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(
            f"pretrained weights {weights} are not in the cache and could not be downloaded ({reason}): "
            f"expected file {path.name} in {path.parent}; fetch {weights.url} on a machine that is online "
            f"and copy it to {path}"
        ) from None


def read_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a local state dict file, unwrapping ``{"state_dict": ...}``-style containers.

    A ``module.`` prefix (left by DistributedDataParallel) is removed.

    Raises:
        ConfigError: the file is missing, unreadable, or holds no state dict.
    """
    path = Path(path)
    if not is_regular_file(path):
        raise ConfigError(f"{path}: pretrained weights file not found" if not path.exists() else
                          f"{path}: pretrained weights must be a regular file")
    state: Any = _read(path)
    for key in _CONTAINER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: expected a state dict (parameter name -> tensor), found {type(state).__name__}")
    bad = first_non_finite(state)
    if bad is not None:
        raise ConfigError(f"{path}: weight tensor {bad} holds NaN or infinite values; replace the file")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _read(path: Path) -> Any:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on a corrupt or foreign file
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ConfigError(f"{path}: cannot read weights ({reason}); delete or replace the file") from None


def backbone_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reduce a source state dict to backbone keys: strip ``backbone.``, drop head keys.

    A dfer model's state dict (keys ``backbone.*``) keeps only its backbone; a torchvision
    model's state dict loses ``fc.*``.
    """
    if any(k.startswith("backbone.") for k in state):
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}


def load_backbone(backbone: nn.Module, pretrained: Pretrained, weights: WeightsEnum, *, model_name: str) -> None:
    """Load pretrained weights into ``backbone`` in place (no-op when ``pretrained`` is False).

    Args:
        backbone: the torchvision network whose head (``fc``) was replaced by ``nn.Identity``.
        pretrained: ``False``, ``True`` (use ``weights``), ``"ferplus"`` (the trunk of
            dfer's shipped FER+ model; 2D ResNet-18 backbones only) or a path to a local
            state dict.
        weights: the torchvision weights enum to use for ``pretrained=True``.
        model_name: the dfer model's name, for error messages.

    Raises:
        ConfigError: the weights cannot be found or read, or do not fit the backbone.
    """
    if pretrained is False or pretrained is None:
        return
    if pretrained is True:
        source, state = str(weights), fetch_state_dict(weights)
    elif pretrained == FERPLUS:
        from torchvision.models import ResNet

        if not isinstance(backbone, ResNet):  # checked before the file is read: no fix to the install helps
            raise ConfigError(f"pretrained: {FERPLUS} is the 2D ResNet-18 trunk of dfer's FER+ face model and does "
                              f"not fit {model_name}; use it with a 2D ResNet-18 model (tsm_resnet18, resnet18_gru, "
                              f"rdfer_resnet18), or pretrained: true for {weights}")
        source, state = "dfer's FER+ face-expression trunk", trunk_state()
    elif isinstance(pretrained, (str, os.PathLike)):
        source, state = os.fspath(pretrained), read_state_dict_file(pretrained)
    else:
        raise ConfigError(f"pretrained must be true, false or a path to a state dict, got {pretrained!r}")
    state = backbone_state(state)
    expected = backbone.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
                parts.append(f"{len(keys)} {label} ({shown})")
        raise ConfigError(f"{source}: weights do not fit the backbone of {model_name}: {'; '.join(parts)}")
    backbone.load_state_dict(state, strict=True)


def load_pretrained_classifier(model: nn.Module, classes: tuple[str, ...] | list[str],
                               pretrained: Pretrained = FERPLUS) -> bool:
    """Give ``model`` the classifier of a dfer model file when it predicts exactly that file's
    classes, in its order, from features of the same size (``model.pretrained_classifier:
    true``: the whole model, fine-tuned). Returns whether it did.

    Args:
        pretrained: ``"ferplus"`` (the model that ships with dfer) or the path of a model file
            written by ``python -m dfer.pretrained`` (e.g. a longer run's, to fine-tune further).

    Raises:
        ConfigError: the path is not a dfer model file (no classes recorded, so no classifier
            to take), or the file cannot be read.
    """
    path = None if pretrained == FERPLUS else Path(pretrained)
    if path is not None and path.is_file() and not is_shipped_file(path):  # a missing file: read_pretrained says so
        raise ConfigError(f"{path}: model.pretrained_classifier takes the classifier of a dfer model file (one "
                          f"written by python -m dfer.pretrained, its classes recorded); this file is not one: "
                          f"leave pretrained_classifier false to take its trunk alone")
    state, meta = read_pretrained(path)
    head = getattr(model, "classifier", None)
    weight, bias = state.get("classifier.weight"), state.get("classifier.bias")
    if (not isinstance(head, nn.Linear) or weight is None or bias is None
            or list(classes) != list(meta.get("classes", [])) or tuple(head.weight.shape) != tuple(weight.shape)):
        return False
    with torch.no_grad():
        head.weight.copy_(weight.float())
        head.bias.copy_(bias.float())
    return True


def trunk_state(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The shipped FER+ model's ResNet-18 trunk (:mod:`dfer.pretrained`) in torchvision's keys
    (``conv1.weight``, ...), without its classifier."""
    return backbone_state(read_pretrained(path)[0])
