"""Model registry: ``register_model``, ``create_model``, ``list_models``.

Builders are plain functions ``fn(*, num_classes, pretrained=False, **options)`` whose
options are keyword-only and typed; ``create_model`` checks the name and the options
against the builder's signature so that a typo in a config file ends in one
:class:`~dfer.errors.ConfigError` line rather than a ``TypeError`` deep inside a model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from dfer.errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Decorator: register ``fn`` under ``fn.__name__`` and return it unchanged.

    Raises:
        ValueError: a model of that name is already registered, or ``fn`` does not take
            ``num_classes`` and ``pretrained`` as keyword-only parameters.
    """
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].__module__})")
    params = inspect.signature(fn).parameters
    for required in ("num_classes", "pretrained"):
        if required not in params or params[required].kind is not inspect.Parameter.KEYWORD_ONLY:
            raise ValueError(f"model builder {name!r} must take {required!r} as a keyword-only parameter")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_MODELS)


def model_options(name: str) -> dict[str, Any]:
    """The options of model ``name`` (besides num_classes/pretrained) with their defaults."""
    fn = _builder(name)
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.name not in ("num_classes", "pretrained")
    }


def _builder(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int, pretrained: bool | str = False, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`, e.g. ``"tsm_resnet18"``.
        num_classes: number of output classes K.
        pretrained: ``False`` (random init), ``True`` (torchvision's weights for the
            backbone) or a path to a local state dict (see :mod:`dfer.models.weights`).
        **kwargs: the builder's options, e.g. ``shift_div=8, dropout=0.5``.

    Returns:
        A module mapping float ``(B, T, C, H, W)`` clips to logits ``(B, num_classes)``.

    Raises:
        ConfigError: unknown ``name``, unknown options, or an invalid value.
    """
    fn = _builder(name)
    accepted = set(model_options(name))
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(
            f"model {name!r} got unknown option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(accepted)) or 'none'}"
        )
    return fn(num_classes=num_classes, pretrained=pretrained, **kwargs)


def create_model_for_weights(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """:func:`create_model` (random init, no downloaded weights) for a model whose weights
    are loaded next: its initialisation leaves the caller's torch random stream as it was,
    so loading a model never changes what a seeded program draws afterwards."""
    state = torch.get_rng_state()
    try:
        return create_model(name, num_classes, pretrained=False, **kwargs)
    finally:
        torch.set_rng_state(state)
