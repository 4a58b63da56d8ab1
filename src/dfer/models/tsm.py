"""TSM-ResNet-18: ResNet-18 with a temporal shift in the residual branch of every block.

MIDAS (Kawamura et al., section 4.3) trains "the temporal shifted module (TSM) with the
ResNet-18 backbone", ImageNet-pretrained, on eight frames per clip. TSM (Lin, Gan, Han,
"TSM: Temporal Shift Module for Efficient Video Understanding", ICCV 2019, section 3)
shifts part of the channels along time so that 2D convolutions mix neighbouring frames at
no extra cost. Conventions, following the official code:

- shift: of C channels, the first ``C // shift_div`` take the value of the NEXT frame
  (``out[t] = x[t + 1]``), the next ``C // shift_div`` the value of the PREVIOUS frame
  (``out[t] = x[t - 1]``), the rest are unchanged; positions shifted in from outside the
  clip are zero;
- placement "residual shift" (``blockres``): inside every BasicBlock the shift is applied
  to the input of ``conv1`` only; the identity (or downsample) path sees the unshifted
  input, so the block keeps the spatial features of each frame;
- consensus: each frame's globally pooled 512-d feature is averaged over T, then dropout
  and the linear classifier are applied once per clip. The official code applies the
  classifier per frame and averages the logits; for a linear classifier the two are equal
  in eval mode, and differ in training only in that one dropout mask is drawn per clip.

The network never stores the number of frames: T is read from each input's shape and
passed down explicitly to every shift, so the same model runs on clips of any length and
nothing is shared between concurrent forwards (safe under DDP and threads).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.resnet import BasicBlock

from dfer.errors import ConfigError
from dfer.models.base import ClipClassifier, check_clip
from dfer.models.registry import register_model
from dfer.models.weights import Pretrained, load_backbone


def temporal_shift(x: torch.Tensor, shift_div: int | None = 8) -> torch.Tensor:
    """Shift channel groups of a clip by one frame along time (TSM, official convention).

    Args:
        x: ``(..., T, C, H, W)``, any dtype; leading dimensions (usually B) are kept.
        shift_div: ``C // shift_div`` channels move each way. ``None`` or ``0`` turns the
            shift off (returns ``x`` itself); otherwise it must be an integer >= 2. If
            ``C < shift_div`` no channel moves.

    Returns:
        A new tensor, same shape and dtype as ``x``: channels ``[0, f)`` at time t hold
        ``x[t + 1]`` (zero at t = T - 1), channels ``[f, 2f)`` hold ``x[t - 1]`` (zero at
        t = 0), channels ``[2f, C)`` hold ``x[t]``, with ``f = C // shift_div``.
        ``x`` is not modified.
    """
    if x.dim() < 4:
        raise ValueError(f"Expected a clip of shape (..., T, C, H, W), got {tuple(x.shape)}")
    if not shift_div:
        return x
    if isinstance(shift_div, bool) or not isinstance(shift_div, int) or shift_div < 2:
        raise ValueError(f"shift_div must be None, 0 (no shift) or an integer >= 2, got {shift_div!r}")
    fold = x.shape[-3] // shift_div
    if fold == 0:
        return x
    return _TemporalShift.apply(x, fold, False)


def _shift_copy(x: torch.Tensor, fold: int, reverse: bool) -> torch.Tensor:
    """The shift as one pass over ``x`` into a new tensor of its layout (no autograd).

    ``reverse=False`` is the TSM shift; ``reverse=True`` moves both groups the other way,
    which is the shift's adjoint (its backward)."""
    out = torch.empty_like(x)
    ahead, behind = (slice(1, None), slice(None, -1))[:: -1 if reverse else 1]
    first, last = (x.shape[-4] - 1, 0) if not reverse else (0, x.shape[-4] - 1)
    nxt, prv, rest = slice(0, fold), slice(fold, 2 * fold), slice(2 * fold, None)
    out[..., behind, nxt, :, :] = x[..., ahead, nxt, :, :]  # group 0 takes the next frame
    out[..., first, nxt, :, :] = 0
    out[..., ahead, prv, :, :] = x[..., behind, prv, :, :]  # group 1 takes the previous frame
    out[..., last, prv, :, :] = 0
    out[..., rest, :, :] = x[..., rest, :, :]
    return out


class _TemporalShift(torch.autograd.Function):
    """The shift with a hand-written backward: it is a permutation of positions (with
    zeros shifted in), so the gradient is the reverse shift of the output's gradient, one
    pass again; autograd's own gradient of three slices and a ``cat`` would build three
    zero tensors of the input's size and add them."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fold: int, reverse: bool) -> torch.Tensor:
        ctx.fold, ctx.reverse = fold, reverse
        return _shift_copy(x, fold, reverse)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _TemporalShift.apply(grad, ctx.fold, not ctx.reverse), None, None


def temporal_shift_frames(x: torch.Tensor, num_frames: int, shift_div: int | None = 8) -> torch.Tensor:
    """:func:`temporal_shift` for frames flattened as ``(B * T, C, H, W)``.

    Args:
        x: ``(B * num_frames, C, H, W)``, the frames of each clip consecutive.
        num_frames: T, the frames per clip.
        shift_div: as in :func:`temporal_shift`.

    Returns:
        ``(B * num_frames, C, H, W)``.
    """
    if x.dim() != 4 or num_frames < 1 or x.shape[0] % num_frames:
        raise ValueError(
            f"Expected frames of shape (B * T, C, H, W) with T={num_frames}, got {tuple(x.shape)}"
        )
    if not shift_div:
        return x
    return temporal_shift(x.unflatten(0, (-1, num_frames)), shift_div).flatten(0, 1)


def residual_shift_block(block: BasicBlock, x: torch.Tensor, num_frames: int, shift_div: int | None) -> torch.Tensor:
    """Run a torchvision BasicBlock with the shift in its residual branch.

    ``relu(bn2(conv2(relu(bn1(conv1(shift(x)))))) + downsample(x))``; with the shift off
    this is exactly ``block(x)``.

    Args:
        block: a ``torchvision.models.resnet.BasicBlock`` (its weights are used as they are).
        x: frames ``(B * num_frames, C, H, W)``.
        num_frames: T.
        shift_div: as in :func:`temporal_shift`.

    Returns:
        ``(B * num_frames, C', H', W')``.
    """
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(temporal_shift_frames(x, num_frames, shift_div))))
    out = block.bn2(block.conv2(out))
    out += identity  # in place, as torchvision's BasicBlock: no extra activation-sized buffer
    return block.relu(out)


class TSMResNet18(ClipClassifier):
    """ResNet-18 with residual temporal shifts and average consensus over frames.

    Attributes:
        backbone: a torchvision ResNet-18 with ``fc = nn.Identity()``; its state dict has
            torchvision's keys, so ImageNet weights load unchanged. Calling it directly
            runs the per-frame network WITHOUT shifts (a TSN).
        shift_div: as in :func:`temporal_shift`; ``None``/``0`` makes the model a TSN.
    """

    def __init__(self, num_classes: int, shift_div: int | None = 8, dropout: float = 0.5) -> None:
        super().__init__(feature_dim=512, num_classes=num_classes, dropout=dropout)
        self.shift_div = shift_div
        self.backbone = resnet18(weights=None)
        self.backbone.fc = nn.Identity()

    def frame_features(self, clip: torch.Tensor) -> torch.Tensor:
        """Per-frame pooled features (after the shifts have mixed neighbouring frames).

        Args:
            clip: float ``(B, T, C, H, W)``.

        Returns:
            float ``(B, T, 512)``.
        """
        b, t = check_clip(clip).shape[:2]
        net = self.backbone
        x = net.maxpool(net.relu(net.bn1(net.conv1(clip.flatten(0, 1)))))
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in layer:
                x = residual_shift_block(block, x, t, self.shift_div)
        return net.avgpool(x).flatten(1).unflatten(0, (b, t))

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """Clip feature: the mean over T of :meth:`frame_features`, float ``(B, 512)``."""
        return self.frame_features(clip).mean(dim=1)

    def extra_repr(self) -> str:
        return f"shift_div={self.shift_div}, num_classes={self.num_classes}"


@register_model
def tsm_resnet18(
    *,
    num_classes: int,
    pretrained: Pretrained = False,
    shift_div: int | None = 8,
    dropout: float = 0.5,
) -> TSMResNet18:
    """TSM-ResNet-18, the MIDAS backbone (residual shift of 1/8 + 1/8 channels).

    Args:
        num_classes: number of output classes.
        pretrained: ``True`` for ImageNet weights (``ResNet18_Weights.IMAGENET1K_V1``),
            or a path to a local state dict; see :mod:`dfer.models.weights`.
        shift_div: ``C // shift_div`` channels shift each way; ``None`` or ``0`` = no shift
            (the model is then a TSN: per-frame ResNet-18 + temporal mean).
        dropout: dropout rate before the classifier (0.5 in MIDAS).
    """
    if shift_div is not None and (isinstance(shift_div, bool) or not isinstance(shift_div, int) or shift_div == 1 or shift_div < 0):
        raise ConfigError(f"shift_div must be 0 or null (no shift) or an integer >= 2, got {shift_div!r}")
    model = TSMResNet18(num_classes=num_classes, shift_div=shift_div or None, dropout=dropout)
    load_backbone(model.backbone, pretrained, ResNet18_Weights.IMAGENET1K_V1, model_name="tsm_resnet18")
    return model
