"""Inference over a table of clips: the one loop that evaluation, per-epoch validation and
the robust learner's agreement pass share, on one process or sharded over a torchrun job.

Each process predicts its shard (rows ``rank, rank + world, ...``) in eval mode under the
training run's autocast dtype (:func:`dfer.distributed.autocast_dtype`); every process then
holds the predictions of all rows. ``dfer predict`` classifies the windows of one video
with :func:`clip_probabilities`, the same per-batch step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from dfer.data.transforms import to_model_input
from dfer.distributed import DistInfo, unwrap
from dfer.models import TSMResNet18

__all__ = ["Predictions", "shard_rows", "predict_loader", "clip_probabilities", "clip_and_frame_logits",
           "channels_last", "fold_batchnorm"]


def channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (in place) with every 2-D convolution's weight in channels-last layout.

    oneDNN on the CPU and cuDNN under autocast run channels-last convolutions faster, and a
    convolution's output takes its weight's layout, so the activations of a 2-D network
    follow from the first layer on; 3-D convolutions are left as they are. The outputs
    equal the contiguous model's up to float rounding (another summation order).
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return model


_CONV_BN = ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d))


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    # a convolution whose class has its own forward may not be a plain convolution
    return any(isinstance(conv, c) and type(conv).forward is c.forward and type(bn) is b for c, b in _CONV_BN) and \
        bn.track_running_stats and bn.running_mean is not None and bn.num_features == conv.out_channels


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` (in place) with each BatchNorm that directly follows a convolution folded
    into it, for inference: the convolution takes the normalisation's scale into its weight
    and its shift into its bias, and the BatchNorm becomes an identity. About a tenth of a
    ResNet-18 forward pass on the CPU is the BatchNorms' passes over the activations.

    Folded are the pairs whose order is certain: neighbours in an ``nn.Sequential`` (a
    torchvision ResNet's downsample, a 3-D ResNet's stem and branches) and torchvision's
    ResNet stem and blocks (``conv1 -> bn1``, ``conv2 -> bn2``, ``conv3 -> bn3``, which
    dfer's TSM block keeps). The outputs equal the unfolded model's in eval mode up to
    float rounding; the model is for inference from then on (it puts the model in eval
    mode: a folded BatchNorm cannot train, nor update running statistics).
    """
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = module._modules[a], module._modules[b]
                if _foldable(conv, bn):
                    module._modules[a] = fuse_conv_bn_eval(conv, bn)
                    module._modules[b] = nn.Identity()
        if isinstance(module, (ResNet, BasicBlock, Bottleneck)):
            for i in ("1", "2", "3"):
                conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
                if conv is not None and bn is not None and _foldable(conv, bn):
                    setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                    setattr(module, f"bn{i}", nn.Identity())
    return model


def shard_rows(num_rows: int, dist_info: DistInfo | None) -> np.ndarray:
    """The rows of a table this process predicts (all of them outside a torchrun job)."""
    if dist_info is None or not dist_info.enabled:
        return np.arange(num_rows)
    return np.arange(dist_info.rank, num_rows, dist_info.world_size)


@torch.no_grad()
def clip_and_frame_logits(model, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Clip logits (B, C) and, where the model can give them, per-frame logits (B, T, C).

    Models with ``frame_logits`` (``rdfer_resnet18``) give both; TSM (whose clip logits are
    the mean of its per-frame logits) is read through ``frame_features``; other models give
    clip logits only (None).
    """
    if hasattr(model, "frame_logits"):
        return model.frame_logits(clip)
    if isinstance(model, TSMResNet18):
        ff = model.frame_features(clip)
        return model.classifier(ff.mean(dim=1)), model.classifier(ff)
    return model(clip), None


@torch.inference_mode()
def clip_probabilities(model, clip: torch.Tensor, amp_dtype: torch.dtype | None = None, *,
                       frames: bool = False, dtype: torch.dtype = torch.float32
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax of a batch: ``clip`` (B, T, C, H, W) or (B, K, T, C, H, W) (K clips each) ->
    (B, K, classes) on the CPU, and with ``frames`` the per-frame softmax (B, K, T, classes)
    (None for a model without per-frame logits). The softmax is taken in ``dtype``
    (``dfer predict`` reports float64 distributions)."""
    b, k = clip.shape[0], clip.shape[1] if clip.ndim == 6 else 1
    flat = clip.flatten(0, 1) if clip.ndim == 6 else clip
    with torch.autocast(clip.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits, flogits = clip_and_frame_logits(model, flat) if frames else (model(flat), None)
    probs = torch.softmax(logits.to(dtype), dim=-1).view(b, k, -1).cpu()
    if flogits is None:
        return probs, None
    return probs, torch.softmax(flogits.to(dtype), dim=-1).view(b, k, flat.shape[1], -1).cpu()


@dataclass
class Predictions:
    """What :func:`predict_loader` returns: for each predicted row (``rows``, into the table),
    clip probabilities (N, K, C) and optionally per-frame ones (N, K, T, C), as numpy
    float32 (``probs`` is None when no row was predicted)."""

    rows: np.ndarray
    probs: np.ndarray | None
    frame_probs: np.ndarray | None


def predict_loader(model, loader, shard: np.ndarray, device: torch.device, amp_dtype: torch.dtype | None,
                   dist_info: DistInfo | None, *, frames: bool = False, gather: bool = True) -> Predictions:
    """Predict every batch of ``loader`` (a dataset over ``table.take(shard)``) and, with
    ``gather``, collect the shards of all processes (rows in the order the processes hold
    them); without it, this process's shard only (the caller gathers more with it).

    In a torchrun job the DDP wrapper (whose forward may sync buffers, a collective) is
    bypassed, since shards differ in length, and every rank uses rank 0's weights and
    BatchNorm statistics, the ones the checkpoint holds (after a training step a rank keeps
    the running statistics of its own last batch). The model's train/eval mode is restored.
    """
    enabled = dist_info is not None and dist_info.enabled
    net = unwrap(model)
    if enabled:
        for buf in net.buffers():
            dist.broadcast(buf.data, src=0)
    was_training = net.training
    net.eval()
    rows, probs, fprobs = [], [], []
    try:
        for batch in loader:
            p, fp = clip_probabilities(net, to_model_input(batch["clip"], device), amp_dtype, frames=frames)
            probs.append(p.numpy())
            if fp is not None:
                fprobs.append(fp.numpy())
            rows.append(shard[batch["index"].numpy()])
    finally:
        net.train(was_training)
    out = Predictions(np.concatenate(rows) if rows else np.zeros(0, np.int64),
                      np.concatenate(probs) if probs else None, np.concatenate(fprobs) if fprobs else None)
    if enabled and gather:
        gathered = [None] * dist_info.world_size
        dist.all_gather_object(gathered, out)
        parts = [g for g in gathered if g.probs is not None]
        out = Predictions(np.concatenate([g.rows for g in gathered]),
                          np.concatenate([g.probs for g in parts]) if parts else None,
                          np.concatenate([g.frame_probs for g in parts])
                          if parts and parts[0].frame_probs is not None else None)
    return out
