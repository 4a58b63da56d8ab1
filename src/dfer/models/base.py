"""What every dfer clip classifier shares: input checks, the dropout + linear head.

A model maps a clip batch ``(B, T, C, H, W)`` (float, ImageNet-normalised) to logits
``(B, num_classes)``. Subclasses implement only :meth:`ClipClassifier.features`, the pooled
clip feature before dropout; the head is ``classifier(dropout(features(clip)))``, with
dropout 0.5 as in MIDAS (Kawamura et al., section 4.3). Keeping the head apart lets other
parts of dfer (RDFER, prediction, linear probes) reuse the feature and the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from dfer.errors import ConfigError


def check_clip(clip: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """Validate a batched clip and return it unchanged.

    Args:
        clip: float tensor ``(B, T, C, H, W)``.
        channels: the number of colour channels the model expects.

    Returns:
        ``clip`` itself.

    Raises:
        TypeError: ``clip`` is not a floating-point tensor.
        ValueError: ``clip`` is not 5-D, has the wrong number of channels or an empty axis.
    """
    if not isinstance(clip, torch.Tensor):
        raise TypeError(f"Expected a torch.Tensor clip of shape (B, T, C, H, W), got {type(clip).__name__}")
    if clip.dim() != 5:
        raise ValueError(f"Expected a batched clip of shape (B, T, C, H, W), got {tuple(clip.shape)}")
    if not clip.is_floating_point():
        raise TypeError(f"Expected a float clip (normalised), got dtype {clip.dtype}")
    if clip.shape[2] != channels:
        raise ValueError(
            f"Expected a batched clip of shape (B, T, C, H, W) with C={channels}, got {tuple(clip.shape)}"
        )
    if clip.numel() == 0:
        raise ValueError(f"Expected a non-empty clip of shape (B, T, C, H, W), got {tuple(clip.shape)}")
    return clip


def check_num_classes(num_classes: int) -> int:
    """Return ``num_classes`` if it is a positive int, else raise :class:`ConfigError`."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return num_classes


def check_dropout(dropout: float) -> float:
    """Return ``dropout`` as float if it lies in [0, 1), else raise :class:`ConfigError`."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


class ClipClassifier(nn.Module):
    """Base class: ``logits = classifier(dropout(features(clip)))``.

    Attributes:
        num_classes: number of output classes K.
        feature_dim: size D of :meth:`features`.
        dropout: ``nn.Dropout`` applied to the feature in training only.
        classifier: ``nn.Linear(D, K)``.
    """

    def __init__(self, feature_dim: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.feature_dim = feature_dim
        self.dropout = nn.Dropout(check_dropout(dropout))
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """Pooled clip feature before dropout.

        Args:
            clip: float ``(B, T, C, H, W)``.

        Returns:
            float ``(B, feature_dim)``.
        """
        raise NotImplementedError

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """Classify a batch of clips.

        Args:
            clip: float ``(B, T, C, H, W)``, ImageNet-normalised; T may differ between calls.

        Returns:
            float logits ``(B, num_classes)``.
        """
        return self.classifier(self.dropout(self.features(check_clip(clip))))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised ``nn.Linear(D, num_classes)``.

        The new layer is placed on the old one's device and dtype, so this works after
        ``.to(device)``.
        """
        old = self.classifier
        self.num_classes = check_num_classes(num_classes)
        self.classifier = nn.Linear(self.feature_dim, num_classes, device=old.weight.device, dtype=old.weight.dtype)
