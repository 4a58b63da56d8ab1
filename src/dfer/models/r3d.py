"""R3D-18: torchvision's 3D ResNet-18 (Tran et al., "A Closer Look at Spatiotemporal
Convolutions for Action Recognition", CVPR 2018), the 3D-CNN baseline of MIDAS Table 1.

dfer's clips are ``(B, T, C, H, W)``; 3D convolutions want ``(B, C, T, H, W)``, so the
model permutes internally. The Kinetics-400 weights were trained on 112x112 crops with
their own mean/std (``R3D_18_Weights.KINETICS400_V1.transforms()``); dfer feeds
ImageNet-normalised clips, which fine-tuning absorbs.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.video import R3D_18_Weights, r3d_18 as tv_r3d_18

from dfer.models.base import ClipClassifier, check_clip
from dfer.models.registry import register_model
from dfer.models.weights import Pretrained, load_backbone


class R3D18(ClipClassifier):
    """torchvision R3D-18 with the head replaced by dropout + linear.

    Attributes:
        backbone: ``torchvision.models.video.r3d_18`` with ``fc = nn.Identity()``,
            (B, C, T, H, W) -> (B, 512).
    """

    def __init__(self, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__(feature_dim=512, num_classes=num_classes, dropout=dropout)
        self.backbone = tv_r3d_18(weights=None)
        self.backbone.fc = nn.Identity()

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """Spatio-temporally pooled feature, float ``(B, 512)`` from float ``(B, T, C, H, W)``."""
        return self.backbone(check_clip(clip).transpose(1, 2))


@register_model
def r3d_18(*, num_classes: int, pretrained: Pretrained = False, dropout: float = 0.5) -> R3D18:
    """R3D-18 on ``(B, T, C, H, W)`` clips.

    Args:
        num_classes: number of output classes.
        pretrained: ``True`` for Kinetics-400 weights (``R3D_18_Weights.KINETICS400_V1``),
            or a path to a local state dict; see :mod:`dfer.models.weights`.
        dropout: dropout rate before the classifier.
    """
    model = R3D18(num_classes=num_classes, dropout=dropout)
    load_backbone(model.backbone, pretrained, R3D_18_Weights.KINETICS400_V1, model_name="r3d_18")
    return model
