"""The model ``dfer predict`` applies, and its frame pipeline: dfer's shipped FER+ model,
a run directory of ``dfer train`` or a bare checkpoint, loaded for inference."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from dfer.calibration import OutputRule, answering, as_prior
from dfer.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms
from dfer.distributed import resolve_device
from dfer.errors import ConfigError
from dfer.inference import channels_last, fold_batchnorm
from dfer.pretrained import NAME, weights_path
from dfer.rundir import load_checkpoint_file, load_run, load_shipped, selected_checkpoint

__all__ = ["ModelBundle", "load_model", "load_pretrained", "input_transform"]


@dataclass
class ModelBundle:
    """A model ready for inference and what it expects.

    Attributes:
        model: module in eval mode mapping (B, T, 3, size, size) float32 to logits (B, C).
        classes: the C class names.
        size: input side in pixels.
        num_frames: T.
        device: where the model lives.
        source: what was loaded (for the report).
        grey: the model saw grey faces: frames are turned grey (three equal channels).
        face_crop: centred fraction of the aligned face to keep (1.0: the whole face).
        mean, std: the normalisation the model was trained with (None: ImageNet's).
        rule: how the logits become the answer (prior correction, temperature, flip
            test-time augmentation), already applied by ``model``'s forward pass.
    """

    model: torch.nn.Module
    classes: tuple[str, ...]
    size: int
    num_frames: int
    device: torch.device
    source: dict = field(default_factory=dict)
    grey: bool = False
    face_crop: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    rule: OutputRule = field(default_factory=OutputRule)


def load_model(*, run: str | None = None, which: str | None = None, checkpoint: str | None = None,
               pretrained: bool | None = None, model_name: str = "tsm_resnet18", classes: str = "basic7",
               size: int | None = None, num_frames: int | None = None, device: str = "auto",
               prior_correction: float | None = None, tta: str | None = None) -> ModelBundle:
    """Load a model: dfer's shipped FER+ model, a run directory or a bare checkpoint file
    (each read by :mod:`dfer.rundir`, the one home of those files).

    The model comes for inference: in eval mode, its BatchNorms folded into the
    convolutions before them (:func:`dfer.inference.fold_batchnorm`) and its 2-D
    convolutions in channels-last layout (:func:`dfer.inference.channels_last`): faster,
    the outputs equal up to float rounding.

    Args:
        run: run directory of ``dfer train`` (config.yaml, classes.json, checkpoints/).
        which: ``last`` or ``best`` (default: the run's own selection rule).
        checkpoint: a ``.safetensors`` checkpoint of ``dfer train`` (with ``model_name``
            and ``classes``; ``size`` default 224, ``num_frames`` default 8).
        pretrained: the model that ships with dfer (:mod:`dfer.pretrained`); the default
            when neither ``run`` nor ``checkpoint`` is given. Its classes, size, frames,
            grey input and face crop come from the file's metadata.
        size, num_frames: override the model's input size / frames per window.
        prior_correction, tta: override how the logits become the answer
            (:class:`dfer.calibration.OutputRule`; default: the shipped file's rule, none
            for a run or a checkpoint). A prior correction needs the training class prior,
            which only the shipped file records.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: not a run directory, missing or unreadable checkpoint, a checkpoint
            that does not fit the model, bad sizes, a missing or damaged shipped model.
    """
    dev = resolve_device(device)
    given = [name for name, v in (("--run", run), ("--checkpoint", checkpoint)) if v is not None]
    if len(given) > 1 or (given and pretrained):
        raise ConfigError(f"give one model: {' and '.join(given + (['the shipped model'] if pretrained else []))} "
                          f"exclude each other")
    if not given:
        if pretrained is False:
            raise ConfigError("pretrained=False needs a model: give run= or checkpoint=")
        bundle = _load_pretrained_bundle(dev, size, num_frames)
    elif run is not None:
        run_dir = Path(run)
        model, cfg, run_classes = load_run(run_dir, which=which, device=dev)  # one line on a damaged file
        bundle = ModelBundle(model, tuple(run_classes), int(size or cfg.data.size),
                             int(num_frames or cfg.data.num_frames), dev,
                             {"run": str(run_dir), "which": which or selected_checkpoint(cfg), "model": cfg.model.name},
                             grey=bool(cfg.data.grey), face_crop=float(cfg.data.face_crop))
    else:
        model, class_names = load_checkpoint_file(checkpoint, model_name, classes, device=dev)
        bundle = ModelBundle(model, class_names, int(size or 224), int(num_frames or 8), dev,
                             {"checkpoint": str(Path(checkpoint)), "model": model_name})
    if bundle.size < 8:
        raise ConfigError(f"--size must be >= 8, got {bundle.size}")
    if bundle.num_frames < 1:
        raise ConfigError(f"--num-frames must be >= 1, got {bundle.num_frames}")
    bundle.rule = _output_rule(bundle, prior_correction, tta)
    bundle.source.update(size=bundle.size, num_frames=bundle.num_frames, answer=bundle.rule.describe())
    # faster convolutions, the same outputs up to float rounding
    channels_last(fold_batchnorm(bundle.model))
    bundle.model = answering(bundle.model, bundle.rule).to(bundle.device)  # the prior's buffer beside the weights
    return bundle


def _output_rule(bundle: ModelBundle, prior_correction: float | None, tta: str | None) -> OutputRule:
    """The bundle's own rule with the caller's overrides; one line for an impossible one."""
    rule = bundle.rule
    if prior_correction and rule.prior is None:
        raise ConfigError("--prior-correction needs the class prior of the model's training data, which this model "
                          "does not record (a shipped file written with --prior-correction does; a run or a checkpoint "
                          "does not)")
    try:
        return replace(rule, prior_correction=rule.prior_correction if prior_correction is None else prior_correction,
                       tta=rule.tta if tta is None else tta)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _load_pretrained_bundle(device: torch.device, size: int | None, num_frames: int | None) -> ModelBundle:
    path = weights_path()
    model, meta = load_shipped(path, device=device)  # raises, saying how to reinstall, on a broken file
    face_crop = float(meta["face_crop"])
    source = {"pretrained": NAME, "name": "dfer FER+ ResNet-18",
              "description": "dfer's shipped face-expression model: a ResNet-18 over one grey face, trained on "
                             "FER+ (8 classes)",
              "file": str(path), "model": meta["model"], "trained_by": meta.get("trained_by"),
              "metrics": meta.get("metrics") or {}, "grey": bool(meta["grey"]), "face_crop": face_crop}
    rule = OutputRule(prior=as_prior(meta.get("prior")), prior_correction=float(meta.get("prior_correction", 0.0)),
                      temperature=float(meta.get("temperature", 1.0)), tta=meta.get("tta", "none"))
    return ModelBundle(model, tuple(meta["classes"]), int(size or meta["size"]),
                       int(num_frames or meta.get("num_frames") or 1), device, source, grey=bool(meta["grey"]),
                       face_crop=face_crop, mean=tuple(meta["mean"]), std=tuple(meta["std"]), rule=rule)


def load_pretrained(device: str = "auto") -> ModelBundle:
    """dfer's shipped face-expression model, ready for :func:`predict_video`.

    A ResNet-18 over one grey face trained on FER+ (classes neutral, happy, surprise, sad,
    angry, disgust, fear, contempt); it lies inside the package, nothing is downloaded.
    Load it once and pass it to every :func:`predict_video` call. The bundle's model is
    for inference (its BatchNorms are folded into the convolutions, see :func:`load_model`);
    to fine-tune the weights, train from them with ``model.pretrained: ferplus``.

    Args:
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        :class:`ModelBundle` with ``grey=True`` and the file's ``face_crop``.

    Raises:
        ConfigError: the shipped file is missing or damaged (the message says how to
            reinstall), or ``device`` is not available.

    Example:
        >>> import dfer
        >>> model = dfer.load_pretrained(device="cpu")
        >>> model.classes[:3]
        ('neutral', 'happy', 'surprise')
    """
    return load_model(pretrained=True, device=device)


def input_transform(bundle: ModelBundle, *, face_crop: bool = True):
    """The bundle's frame pipeline: uint8 (T, H, W, 3) -> normalised float32 (T, 3, size, size).

    The test-time transform of training (:func:`dfer.data.transforms.build_transforms`,
    ``train=False``) with the bundle's framing: the centred ``face_crop`` of the aligned
    face (``face_crop=False`` skips it: images that are already tight crops, like FER+'s)
    and the grey conversion, for a bundle that asks for them. A model trained by
    ``dfer train`` gets its run's own ``data.face_crop`` and ``data.grey``.
    """
    return build_transforms(train=False, size=bundle.size, mean=bundle.mean or IMAGENET_MEAN,
                            std=bundle.std or IMAGENET_STD, face_crop=bundle.face_crop if face_crop else 1.0,
                            grey=bundle.grey)
