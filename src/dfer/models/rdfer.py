"""RDFER dual-stream hierarchical network on a ResNet-18 trunk (``rdfer_resnet18``).

RDFER (Liu, Wang, Shen, arXiv:2502.16129, abstract): "RDFER employs two sequence models
with the objective of disentangling short-term facial movements and long-term emotional
changes." The paper's layers are not public; the design here (docs/rdfer.md, part 3):

* trunk: ImageNet-layout ResNet-18 on every frame -> ``(B, T, 512)``;
* the T frames are cut into S = ceil(T / L) snippets of L consecutive frames (the last one
  padded by repeating its last frame); the key-expression sampler draws exactly such
  snippets around key moments (``robust.sampler=key`` with ``snippet_frames`` = L);
* short-term stream: a GRU over the L frames of each snippet (facial movement), its last
  hidden state ``h^s`` (B, S, H);
* long-term stream: a bidirectional GRU over the S snippet states (emotional change over
  the video), output ``h^l`` (B, S, H) at every snippet;
* fusion per snippet ``f = x̄ + W [h^s; h^l] + b`` (B, S, 512), with ``x̄`` the mean trunk
  feature of the snippet's frames and ``W``, ``b`` initialised to zero: the network starts as
  TSN (the mean trunk feature) and the streams' contribution grows as W learns, so the trunk
  always receives the classifier's gradient (without the residual, trained from scratch at
  32 px, the network stayed on the majority class; docs/rdfer.md); clip feature = mean over S.

Since the classifier is linear, the clip logits are the mean of the snippet logits
``classifier(f_s)``; :meth:`RDFERResNet18.frame_logits` returns both, which the robust
learner uses as its per-frame key-expression evidence.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from dfer.errors import ConfigError
from dfer.models.base import ClipClassifier, check_clip
from dfer.models.registry import register_model
from dfer.models.weights import Pretrained, load_backbone


class RDFERResNet18(ClipClassifier):
    """ResNet-18 per frame -> short-term GRU per snippet -> long-term BiGRU over snippets -> fusion.

    Attributes:
        backbone: torchvision ResNet-18, ``fc = nn.Identity()``.
        snippet_frames: L, consecutive frames per short-term snippet.
        short: ``nn.GRU(512, H)``; long: ``nn.GRU(H, H // 2, bidirectional=True)``;
        fuse: ``nn.Linear(2 H, 512)``, zero at initialisation, added to the snippet's mean
            trunk feature.
    """

    def __init__(self, num_classes: int, snippet_frames: int = 2, hidden_size: int = 256,
                 dropout: float = 0.5) -> None:
        super().__init__(feature_dim=512, num_classes=num_classes, dropout=dropout)
        self.snippet_frames = snippet_frames
        self.backbone = resnet18(weights=None)
        self.backbone.fc = nn.Identity()
        self.short = nn.GRU(512, hidden_size, batch_first=True)
        self.long = nn.GRU(hidden_size, hidden_size // 2, batch_first=True, bidirectional=True)
        self.fuse = nn.Linear(hidden_size + 2 * (hidden_size // 2), 512)
        nn.init.zeros_(self.fuse.weight)  # start as TSN; the streams' share is learnt
        nn.init.zeros_(self.fuse.bias)

    def snippet_features(self, clip: torch.Tensor) -> torch.Tensor:
        """Fused per-snippet features.

        Args:
            clip: float ``(B, T, C, H, W)``.

        Returns:
            float ``(B, S, 512)`` with ``S = ceil(T / snippet_frames)``.
        """
        b, t = check_clip(clip).shape[:2]
        x = self.backbone(clip.flatten(0, 1)).unflatten(0, (b, t))  # (B, T, 512)
        L = min(self.snippet_frames, t)
        s = -(-t // L)
        if s * L > t:  # the last snippet is short: repeat its last frame
            x = torch.cat((x, x[:, -1:].expand(b, s * L - t, x.shape[-1])), dim=1)
        snippets = x.reshape(b, s, L, x.shape[-1])
        _, h_short = self.short(snippets.flatten(0, 1))  # (1, B*S, H)
        h_short = h_short[-1].view(b, s, -1)
        h_long, _ = self.long(h_short)  # (B, S, H)
        # residual fusion: the snippet's appearance plus what the two streams add to it
        return snippets.mean(dim=2) + self.fuse(torch.cat((h_short, h_long), dim=-1))

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """Clip feature: the mean over snippets of :meth:`snippet_features`, float ``(B, 512)``."""
        return self.snippet_features(clip).mean(dim=1)

    def frame_logits(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip logits ``(B, K)`` (as :meth:`forward` in eval mode) and per-frame logits
        ``(B, T, K)``: every frame gets its snippet's logits."""
        t = clip.shape[1]
        f = self.snippet_features(clip)
        per_snippet = self.classifier(f)  # (B, S, K)
        L = min(self.snippet_frames, t)
        frames = per_snippet.repeat_interleave(L, dim=1)[:, :t]
        return self.classifier(f.mean(dim=1)), frames

    def extra_repr(self) -> str:
        return f"snippet_frames={self.snippet_frames}, num_classes={self.num_classes}"


@register_model
def rdfer_resnet18(
    *,
    num_classes: int,
    pretrained: Pretrained = False,
    snippet_frames: int = 2,
    hidden_size: int = 256,
    dropout: float = 0.5,
) -> RDFERResNet18:
    """RDFER's dual-stream hierarchical network on a ResNet-18 trunk.

    Args:
        num_classes: number of output classes.
        pretrained: ``True`` for ImageNet weights on the trunk (the GRUs start random), or
            a path to a local state dict; see :mod:`dfer.models.weights`.
        snippet_frames: L, consecutive frames per short-term snippet (1 makes the
            short-term stream a per-frame projection).
        hidden_size: H, GRU width (even).
        dropout: dropout rate before the classifier.
    """
    for name, v in (("snippet_frames", snippet_frames), ("hidden_size", hidden_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    if hidden_size % 2:
        raise ConfigError(f"hidden_size must be even (the long-term GRU is bidirectional), got {hidden_size}")
    model = RDFERResNet18(num_classes=num_classes, snippet_frames=snippet_frames, hidden_size=hidden_size,
                          dropout=dropout)
    load_backbone(model.backbone, pretrained, ResNet18_Weights.IMAGENET1K_V1, model_name="rdfer_resnet18")
    return model
