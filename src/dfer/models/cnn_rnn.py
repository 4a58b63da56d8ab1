"""2DCNN-GRU: per-frame ResNet-18 features, a GRU over time, a linear classifier.

The "2DCNN-GRU" baseline of MIDAS (Kawamura et al., Table 1): each frame goes through a
ResNet-18 (ImageNet-pretrained when asked) to a 512-d pooled feature; a GRU reads the T
features in order; the clip feature is the GRU's LAST hidden state (top layer), i.e. its
state after the last frame (for a bidirectional GRU: that, concatenated with the backward
direction's state after the first frame). Unlike TSM's temporal mean, the result depends
on the order of the frames.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from dfer.errors import ConfigError
from dfer.models.base import ClipClassifier, check_clip
from dfer.models.registry import register_model
from dfer.models.weights import Pretrained, load_backbone


class ResNet18GRU(ClipClassifier):
    """ResNet-18 per frame -> GRU -> last hidden state -> dropout -> linear.

    Attributes:
        backbone: torchvision ResNet-18 with ``fc = nn.Identity()``, (N, 3, H, W) -> (N, 512).
        gru: ``nn.GRU(512, hidden_size, num_layers, batch_first=True)``.
    """

    def __init__(
        self,
        num_classes: int,
        hidden_size: int = 512,
        num_layers: int = 1,
        dropout: float = 0.5,
        bidirectional: bool = False,
    ) -> None:
        directions = 2 if bidirectional else 1
        super().__init__(feature_dim=hidden_size * directions, num_classes=num_classes, dropout=dropout)
        self.backbone = resnet18(weights=None)
        self.backbone.fc = nn.Identity()
        self.gru = nn.GRU(512, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=bidirectional)
        self.directions = directions

    def frame_features(self, clip: torch.Tensor) -> torch.Tensor:
        """Per-frame ResNet-18 features, float ``(B, T, 512)`` from a float ``(B, T, C, H, W)`` clip."""
        b, t = check_clip(clip).shape[:2]
        return self.backbone(clip.flatten(0, 1)).unflatten(0, (b, t))

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """The GRU's last hidden state of its top layer, float ``(B, hidden_size * directions)``."""
        _, h_n = self.gru(self.frame_features(clip))  # h_n: (num_layers * directions, B, hidden)
        return torch.cat(tuple(h_n[-self.directions :]), dim=-1)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


@register_model
def resnet18_gru(
    *,
    num_classes: int,
    pretrained: Pretrained = False,
    hidden_size: int = 512,
    num_layers: int = 1,
    dropout: float = 0.5,
    bidirectional: bool = False,
) -> ResNet18GRU:
    """The 2DCNN-GRU baseline: ResNet-18 frames -> GRU -> last hidden state -> linear.

    Args:
        num_classes: number of output classes.
        pretrained: ``True`` for ImageNet weights on the ResNet-18 (the GRU starts random),
            or a path to a local state dict; see :mod:`dfer.models.weights`.
        hidden_size: GRU hidden size.
        num_layers: stacked GRU layers.
        dropout: dropout rate before the classifier.
        bidirectional: read the frames both ways; the feature doubles in size.
    """
    if not isinstance(bidirectional, bool):
        raise ConfigError(f"bidirectional must be true or false, got {bidirectional!r}")
    model = ResNet18GRU(
        num_classes=num_classes,
        hidden_size=_positive_int("hidden_size", hidden_size),
        num_layers=_positive_int("num_layers", num_layers),
        dropout=dropout,
        bidirectional=bidirectional,
    )
    load_backbone(model.backbone, pretrained, ResNet18_Weights.IMAGENET1K_V1, model_name="resnet18_gru")
    return model
