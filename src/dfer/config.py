"""Run configuration: dataclasses, their YAML form, and command-line overrides.
Kept as one module: every setting of a run is declared here beside the others, and read
and checked by the same code.

A YAML recipe is only the serialised form of :class:`RunConfig`; overrides given on the
command line (``optim.lr=0.01 data.fold=3``) go through the same path, so a value means
the same thing wherever it is set. The resolved config is written next to every run.

Every setting is declared once, beside its field: its type (the annotation), the values
it accepts (:func:`setting`: an interval, choices, a pattern, a largest sane value), and
the rules that tie settings together live in the ``check`` method of the class that
holds them. :func:`load_config` runs all of them before anything is read from disk, so a
bad value is one line naming the setting, never a failure after the corpus has loaded.

Defaults follow the MIDAS paper, section 4.3: TSM ResNet-18, 8 segments, 224x224, SGD
lr 0.02 momentum 0.9, cosine decay, 450 epochs, batch 8, dropout 0.5, alpha 0.4.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import numbers
import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from dfer.data.corpora.registry import check_options
from dfer.data.table import SPLIT_NAMES, TIES
from dfer.emotions import resolve_classes
from dfer.errors import ConfigError, DfeError

LABEL_MODES = ("hard", "soft", "midas", "midas-hard", "mixup")
#: the label modes that mix pairs of clips (their runs carry mixing.alpha in their names)
MIXING_LABEL_MODES = ("midas", "midas-hard", "mixup")
#: the values of optim.precision (dfer.precision explains each)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: normalisations of a mixed target (dfer.mixing explains each)
NORMALISE_MODES = ("none", "softmax", "renormalise")
#: one λ per clip or one per batch
LAM_PER = ("sample", "batch")
#: RDFER's treatment of the clips it judges noisy, and its training-frame samplers
NOISY_POLICIES = ("downweight", "correct")
SAMPLERS = ("segment", "key")

# Largest sane values. Past them a setting cannot fit in memory (one uint8 clip of
# 1024 frames of 1024x1024 is 3 GiB) or is surely a typo, and fails at once rather than
# after the corpus has been read, or deep inside torch.
#: frame side in pixels (data.size, dfer predict --size, dfer preprocess --size)
MAX_SIZE = 1024
#: frames per clip (data.num_frames, dfer predict --num-frames)
MAX_FRAMES = 1024
#: threads and processes (threads, data.num_workers, --threads and --workers of the commands)
MAX_THREADS = 1024
#: clips per batch (optim.batch_size, eval.batch_size, --batch-size)
MAX_BATCH = 65536
#: learning rate: a step of 1e308 overflows float32 parameters; 1e3 already diverges at once
MAX_LR = 1e3


# ---------------------------------------------------------------------- declaring a setting
_INTERVAL = re.compile(r"([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])")


@dataclass(frozen=True)
class Accepts:
    """The values one setting accepts; :func:`setting` declares it beside the field.

    Attributes:
        range: an interval of numbers, ``"[0, 1)"``, ``"(0, inf)"``, or a tuple of them (a
            value inside any one is accepted); a list setting applies it to each item.
        choices: the values allowed (None is allowed too where the annotation allows it).
        pattern: a regular expression the whole text must match.
        limit: the largest sane value (see :data:`MAX_SIZE` ...), beyond the range where
            a value means something.
        expect: how the error states what is accepted, where the above do not say it well.
    """

    range: str | tuple[str, ...] | None = None
    choices: tuple | None = None
    pattern: str | None = None
    limit: float | None = None
    expect: str | None = None

    def check(self, name: str, value: Any) -> None:
        """Raise :class:`ConfigError` ``"<name> must be <what>, got <value>"`` if ``value`` is not accepted."""
        if value is None:  # null: the annotation (checked when the config was read) allows it
            return
        items = value if isinstance(value, (list, tuple)) else [value]
        if self.choices is not None and value not in self.choices:
            self._refuse(name, value, _either([str(c) for c in self.choices]))
        if self.pattern is not None and not (isinstance(value, str) and re.fullmatch(self.pattern, value)):
            self._refuse(name, value, f"text matching {self.pattern}")
        if self.range is not None:
            intervals = (self.range,) if isinstance(self.range, str) else self.range
            for v in items:
                if (isinstance(v, bool) or not isinstance(v, numbers.Real)
                        or not any(_inside(v, interval) for interval in intervals)):
                    self._refuse(name, value, _either([_describe(interval) for interval in intervals]))
        if self.limit is not None and any(isinstance(v, numbers.Real) and v > self.limit for v in items):
            raise ConfigError(f"{name} must be at most {self.limit:g}, got {value!r}: a larger value cannot fit in "
                              f"memory or is a typo")

    def _refuse(self, name: str, value: Any, what: str) -> typing.NoReturn:
        raise ConfigError(f"{name} must be {self.expect or what}, got {value!r}")


def setting(default: Any = MISSING, *, factory: Any = MISSING, option: str | None = None, **accepts: Any) -> Any:
    """A dataclass field with what it accepts: ``lr: float = setting(0.02, range="(0, inf)", limit=MAX_LR)``.

    ``option`` names a command's setting on the command line where the name is not the
    field's own with dashes (``smooth_window`` is ``--smooth``); see :func:`check_settings`."""
    metadata = {"accepts": Accepts(**accepts), **({"option": option} if option else {})}
    return field(default=default, default_factory=factory, metadata=metadata)


def option_name(f: dataclasses.Field) -> str:
    """The command-line option of a command's setting: its declared ``option``, else
    ``--`` and the field's name with dashes."""
    return f.metadata.get("option") or "--" + f.name.replace("_", "-")


def _bounds(interval: str) -> tuple[float, float, bool, bool, str, str]:
    m = _INTERVAL.fullmatch(interval)
    if m is None:
        raise ValueError(f"not an interval: {interval!r}")
    return float(m[2]), float(m[3]), m[1] == "[", m[4] == "]", m[2], m[3]


def _inside(value: float, interval: str) -> bool:
    lo, hi, lo_closed, hi_closed, _, _ = _bounds(interval)
    if not math.isfinite(value):
        return False
    return (lo <= value if lo_closed else lo < value) and (value <= hi if hi_closed else value < hi)


def _describe(interval: str) -> str:
    lo, hi, lo_closed, hi_closed, lo_text, hi_text = _bounds(interval)
    if math.isinf(hi):
        return f"{'>=' if lo_closed else '>'} {lo_text}"
    if math.isinf(lo):
        return f"{'<=' if hi_closed else '<'} {hi_text}"
    return f"in {interval}"


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def check_settings(cfg: Any, where: str = "", *, options: bool = False) -> Any:
    """Check every declared setting of dataclass ``cfg`` and of the sections in it, then the
    rules of each class that holds a ``check(where)`` (inner sections first); return ``cfg``.

    ``options``: ``cfg`` holds a command's settings, each named by its command-line option
    (:func:`option_name`: ``--detect-every``) rather than by its dotted path.

    Raises:
        ConfigError: the first setting not accepted, named by its dotted path (or option).
    """
    for f in fields(cfg):
        value, name = getattr(cfg, f.name), option_name(f) if options else f"{where}{f.name}"
        if dataclasses.is_dataclass(value):
            check_settings(value, f"{name}.", options=options)
        elif isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
            for i, v in enumerate(value):
                check_settings(v, f"{name}[{i}].", options=options)
        elif "accepts" in f.metadata:
            f.metadata["accepts"].check(name, value)
    rules = getattr(cfg, "check", None)
    if rules is not None:
        rules(where)
    return cfg


def arg(kind: type = int, **accepts: Any):
    """An argparse ``type=`` for a numeric command-line option, declared as a setting is:
    ``p.add_argument("--size", type=arg(int, range="[8, inf)", limit=MAX_SIZE))``. A bad
    value is argparse's one-line error (exit 2) that says what is accepted."""
    rule = Accepts(**accepts)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            rule.check("the value", value)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("the value ")) from None
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def _split_names(where: str, src: "SourceConfig", keys: tuple[str, ...]) -> None:
    for key in keys:
        value = getattr(src, key)
        if value is not None and (value != "all" or key == "val_split") and value not in SPLIT_NAMES:
            raise ConfigError(f"{where}{key} {value!r} unknown; expected train, val, test or all")


# ---------------------------------------------------------------------- the settings
@dataclass
class SourceConfig:
    """Where clips come from: a corpus adapter (``kind``) pointed at ``root``.

    ``options`` are passed to the adapter (e.g. ``frames: clip_224x224_16f`` for DFEW,
    ``strip_prefix`` for a list file); their names and types are the adapter's, checked
    when the config is read. ``fold`` selects the cross-validation fold whose clips are the
    test set (the others train); with ``fold: null`` the adapter's fixed ``split`` column is
    used instead (FERV39K train/test, AFEW train/val).
    """

    kind: str = "dfew"
    root: str = ""
    options: dict = field(default_factory=dict)
    fold: int | None = setting(1, range="[1, inf)", expect=">= 1, or null for the corpus's fixed split")
    train_split: str = "train"
    test_split: str = "test"
    #: an adapter's fixed split to validate and select on (FER+ Valid), instead of a
    #: fraction held out from the training clips
    val_split: str | None = None

    def check(self, where: str) -> None:
        check_options(self.kind, self.options, f"{where}kind", f"{where}options")
        _split_names(where, self, ("train_split", "test_split", "val_split"))


@dataclass
class TrainSourceConfig(SourceConfig):
    """A further corpus whose clips only ever train (``data.train_sources``): its training
    part (the folds other than ``fold``, or ``train_split``; ``fold: null`` and
    ``train_split: all`` for all of it) joins the main source's training clips, mapped into
    the run's classes by emotion name (a class the corpus lacks is simply never its
    target), ``repeat`` times over (a small corpus beside a large one)."""

    fold: int | None = setting(None, range="[1, inf)", expect=">= 1, or null for the corpus's fixed split")
    repeat: int = setting(1, range="[1, inf)", limit=1000)


@dataclass
class DataConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    #: optional different test corpus (cross-dataset: train on DFEW, test on AFEW).
    test_source: SourceConfig | None = None
    #: further corpora that only train (e.g. FER+'s stills beside acted video clips)
    train_sources: list[TrainSourceConfig] = field(default_factory=list)
    #: copies of the main source's training clips per epoch (a small corpus beside a large
    #: one in data.train_sources)
    repeat: int = setting(1, range="[1, inf)", limit=1000)
    #: a class set (basic7, ferplus8, ...) or emotion names separated by commas
    classes: str = "basic7"
    num_frames: int = setting(8, range="[1, inf)", limit=MAX_FRAMES)
    size: int = setting(224, range="[8, inf)", limit=MAX_SIZE)
    #: training crop: scale (TSN multi-scale crop of ``scales``, for video frames) | pad
    #: (random translation by ``pad`` pixels at the frame's own scale, for small still faces)
    crop: str = setting("scale", choices=("scale", "pad"))
    scales: list[float] = setting(factory=lambda: [1.0, 0.875, 0.75, 0.66], range="(0, 1]",
                                  expect="fractions in (0, 1]")
    pad: int = setting(4, range="[0, inf)", limit=MAX_SIZE)
    flip: bool = True
    #: training only, each off at 0 (docs/still-faces.md): probability of random erasing, one
    #: rectangle per clip filled with the normalisation's mean colour (zero as the model sees it)
    erase: float = setting(0.0, range="[0, 1]", expect="a probability in [0, 1]")
    #: area of the erased rectangle, [low, high] fractions of the frame (dfer.data.augment.ERASE_SCALE)
    erase_scale: list[float] = setting(factory=lambda: [0.02, 0.25], range="(0, 1]",
                                       expect="two fractions in (0, 1], low <= high")
    #: largest rotation in degrees (angle uniform in [-rotate, rotate])
    rotate: float = setting(0.0, range="[0, 180]", expect="degrees in [0, 180]")
    #: largest relative change of scale (scale uniform in [1 - s, 1 + s]), one warp with the rotation
    scale_jitter: float = setting(0.0, range="[0, 1)")
    #: brightness and contrast factors uniform in [1 - j, 1 + j], alike for every channel (no colour)
    jitter: float = setting(0.0, range="[0, 1]")
    #: centred fraction of every frame kept before the geometry (1.0: all of it); 0.65 of a
    #: ``dfer preprocess`` face is the framing of the shipped FER+ model and its trunk
    face_crop: float = setting(1.0, range="(0, 1]", expect="a fraction in (0, 1]")
    #: frames turned grey (three equal channels), as the shipped FER+ model sees faces
    grey: bool = False
    #: hard label of a clip whose top votes tie: drop | first (in class order) | random
    #: (seeded); unset, a corpus with ties stops before anything is built
    ties: str | None = setting(None, choices=TIES, expect=f"{_either(list(TIES))} (or unset)")
    num_workers: int = setting(2, range="[0, inf)", limit=MAX_THREADS)
    #: fraction of the training clips held out (stratified) for model selection; the
    #: test fold is never used to choose anything.
    val_fraction: float = setting(0.0, range="[0, 1)")
    #: keep only the clear (max soft label > 0.9) training clips (the paper's Table 6).
    train_subset: str = setting("all", choices=("all", "clear", "mixed"))
    on_bad_clip: str = setting("error", choices=("error", "skip"), expect="'error' or 'skip'")
    check_disk: bool = True

    def augmentation(self) -> str:
        """The training augmentation beyond crop and flip, as a run's name gives it:
        ``aug-e0.5-r10-s0.1-j0.2`` (erase, rotate, scale_jitter, jitter; those set), or ``""``."""
        on = [f"{k}{v:g}" for k, v in (("e", self.erase), ("r", self.rotate), ("s", self.scale_jitter),
                                        ("j", self.jitter)) if v]
        return "aug-" + "-".join(on) if on else ""

    def check(self, where: str) -> None:
        if not self.scales:
            raise ConfigError(f"{where}scales must be fractions in (0, 1], got []")
        if len(self.erase_scale) != 2 or self.erase_scale[0] > self.erase_scale[1]:
            raise ConfigError(f"{where}erase_scale must be two fractions in (0, 1], low <= high, got "
                              f"{self.erase_scale!r}")
        try:
            classes = resolve_classes(self.classes)
        except DfeError as e:
            raise ConfigError(f"{where}classes {self.classes!r}: {e}") from None
        if len(classes) < 2:
            raise ConfigError(f"{where}classes {self.classes!r} names {len(classes)} class; a classifier needs two "
                              f"or more")
        src = self.source
        if self.val_fraction > 0 and src.val_split:
            raise ConfigError(f"set {where}val_fraction or {where}source.val_split, not both")
        if src.val_split is not None:
            if src.fold is not None:
                raise ConfigError(f"{where}source.val_split needs {where}source.fold: null (a fixed split, not a "
                                  f"fold)")
            if src.val_split in (src.train_split, "all") or src.train_split == "all":
                raise ConfigError(f"{where}source.val_split {src.val_split!r} overlaps the training clips "
                                  f"(train_split {src.train_split!r})")


@dataclass
class ModelConfig:
    name: str = "tsm_resnet18"
    pretrained: bool | str = False
    #: the classifier too, with pretrained: ferplus (the shipped model's) or the path of a dfer
    #: model file (python -m dfer.pretrained): training fine-tunes that model itself (the
    #: run's classes must be the model's, in its order)
    pretrained_classifier: bool = False
    dropout: float = setting(0.5, range="[0, 1)")
    kwargs: dict = field(default_factory=dict)

    def check(self, where: str) -> None:
        from dfer.models import list_models

        if self.name not in list_models():
            raise ConfigError(f"{where}name must be {_either(list_models())}, got {self.name!r}")
        if self.pretrained_classifier and not isinstance(self.pretrained, str):
            raise ConfigError(f"{where}pretrained_classifier takes the classifier of a dfer model: it needs "
                              f"{where}pretrained: ferplus (the shipped model) or the path of a dfer model file, "
                              f"got {self.pretrained!r}")


@dataclass
class OptimConfig:
    #: sgd (the paper's) | adamw (trains small models from scratch much faster; the demo's)
    name: str = setting("sgd", choices=("sgd", "adamw"))
    lr: float = setting(0.02, range="(0, inf)", limit=MAX_LR)
    momentum: float = setting(0.9, range="[0, 1)")
    nesterov: bool = False
    #: the paper does not state weight decay; 5e-4 is the TSM code base's default.
    weight_decay: float = setting(5e-4, range="[0, inf)", limit=1.0)
    epochs: int = setting(450, range="[1, inf)", limit=10**6)
    #: global batch: split evenly over the processes of a distributed run.
    batch_size: int = setting(8, range="[1, inf)", limit=MAX_BATCH)
    schedule: str = setting("cosine", choices=("cosine", "constant"))
    #: epochs (fractions allowed) of a linear ramp of the learning rate, in [0, optim.epochs]
    warmup_epochs: float = 0.0
    grad_clip: float | None = setting(None, range="(0, inf)", expect="> 0, or null for none")
    #: auto (CUDA: mixed precision; CPU: fp32 or bf16, whichever a measurement finds faster),
    #: fp32, bf16 or fp16 (CUDA only); see dfer.precision
    precision: str = setting("auto", choices=PRECISIONS)

    def check(self, where: str) -> None:
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"{where}warmup_epochs must be in [0, {where}epochs={self.epochs}], got "
                              f"{self.warmup_epochs!r}")


@dataclass
class MixingConfig:
    """How a training batch is mixed (label modes midas, midas-hard, mixup; dfer.mixing).

    Attributes:
        alpha: α of λ ~ Beta(α, α), > 0; the paper uses 0.4.
        normalise: ``"none"``, ``"softmax"`` or ``"renormalise"`` applied to the mixed
            target. ``"none"`` is the best of the three on real votes (dfer.mixing);
            ``"softmax"`` with ``temperature=1.0`` is the paper-literal variant. Label mode
            ``mixup`` is defined without normalisation.
        temperature: τ of ``normalise="softmax"``, > 0.
        lam_per: ``"sample"`` (one λ per clip) or ``"batch"`` (one λ shared by the batch);
            null means the mode's own: per sample for MIDAS, per batch for mixup.
    """

    alpha: float = setting(0.4, range="(0, inf)")
    normalise: str = setting("none", choices=NORMALISE_MODES)
    temperature: float = setting(1.0, range="(0, inf)")
    lam_per: str | None = setting(None, choices=LAM_PER, expect=f"{_either(list(LAM_PER))} or null")

    def check_mode(self, mode: str, where: str = "mixing.") -> None:
        """The rules that tie these settings to the label mode ``mode`` that mixes."""
        if mode == "mixup" and self.normalise != "none":
            raise ConfigError(f"label mode 'mixup' is defined without normalisation; got {where}normalise "
                              f"{self.normalise!r} (use label mode 'midas-hard' to normalise mixed hard labels)")
        if mode == "mixup" and self.lam_per == "sample":
            raise ConfigError(f"label mode 'mixup' draws one lam per batch; got {where}lam_per 'sample' "
                              f"(use label mode 'midas-hard' for one lam per clip)")

    def lam_per_of(self, mode: str) -> str:
        """``lam_per``, with null replaced by label mode ``mode``'s own choice."""
        if self.lam_per is not None:
            return self.lam_per
        return "batch" if mode == "mixup" else "sample"


@dataclass
class EvalConfig:
    #: clips per video at test time (multi-clip averages probabilities)
    num_clips: int = setting(1, range="[1, inf)", limit=MAX_FRAMES)
    batch_size: int = setting(16, range="[1, inf)", limit=MAX_BATCH)
    #: evaluate on the validation split every N epochs (if there is one)
    every: int = setting(1, range="[1, inf)")
    #: last | best_val (needs data.val_fraction > 0 or data.source.val_split)
    select: str = setting("last", choices=("last", "best_val"), expect="'last' or 'best_val'")


@dataclass
class RobustConfig:
    """``robust:`` section of a run config: RDFER-style robust learning (dfer.robust).

    Liu, Wang, Shen, *Robust Dynamic Facial Expression Recognition* (arXiv:2502.16129) tell
    hard from noisy samples by "the prediction agreement of the model on different sampled
    clips of the video"; the numbers below are this project's choices (the paper's code is
    not public), justified in docs/rdfer.md, section "Thresholds and defaults".

    Attributes:
        enabled: off by default (plain training).
        num_clips: K, differently sampled clips per training video in an agreement pass.
        warmup_epochs: epochs trained with weight 1 for every clip before the first pass
            (the model must first learn the easy, majority pattern).
        every: an agreement pass at the start of every ``every``-th epoch after warm-up.
        momentum: the per-video consensus and agreement are exponential moving averages
            over passes (0 = use only the latest pass).
        agree_threshold: τ_a; a video is *consistent* when its (averaged) agreement, the
            fraction of the K clips whose top class is the consensus class, is >= τ_a.
        confidence_threshold: τ_c; a consistent video is *noisy* only when the consensus
            gives its own top class at least τ_c (0 = no such condition; see docs/rdfer.md
            for the measurement behind the default and for soft labels) ...
        support_threshold: τ_s; ... and the label (hard: its class, soft: the vote
            distribution) at most τ_s, i.e. ``<p̄, y> <= τ_s``.
        min_label_uar: a pass changes nothing (weights, targets, key scores, averages) unless
            the consensus of that pass agrees with the training labels with a balanced
            accuracy (mean recall over the label classes) of at least this: a model that
            still predicts the class prior would call every minority-class video noisy, and
            down-weighting them would lock that in (measured, docs/rdfer.md).
        hard_weight: loss weight of hard videos (inconsistent, or consistent but not
            confidently against the label); > 1 learns them harder.
        noisy_policy: ``downweight`` (loss weight ``noisy_weight``, label kept) or
            ``correct`` (target moved toward the consensus by ``correct_mix``, weight 1).
        noisy_weight: loss weight of noisy videos under ``downweight`` (0 drops them).
        correct_mix: β; corrected target ``(1 - β) y + β onehot(ĉ)``; the hard label
            becomes ĉ when β >= 0.5.
        sampler: frame sampler of the training clips: ``segment`` (TSN) or ``key``
            (key-expression re-sampling, :mod:`dfer.robust.keyframe`).
        key_temperature: temperature of the softmax over per-frame key scores.
        key_uniform: share of the frame distribution kept uniform, so that context frames
            are still drawn.
        max_frames: key scores are kept for at most this many frame positions per video
            (longer videos are scored on an even grid and interpolated).
        truth: where the synthetic truth file lies, to score the detection in robust.csv:
            ``auto`` (the corpus root of the training table, when it has one), a path
            (corpus root or synthetic_truth.csv), or ``""`` (never).
    """

    enabled: bool = False
    num_clips: int = setting(4, range="[2, inf)", limit=MAX_FRAMES, expect=">= 2 (agreement needs several clips)")
    warmup_epochs: int = setting(2, range="[0, inf)")
    every: int = setting(1, range="[1, inf)")
    momentum: float = setting(0.5, range="[0, 1)")
    agree_threshold: float = setting(0.75, range="(0, 1]")
    confidence_threshold: float = setting(0.0, range="[0, 1]")
    support_threshold: float = setting(0.15, range="[0, 1]")
    min_label_uar: float = setting(0.3, range="[0, 1]")
    hard_weight: float = setting(1.5, range="[0, inf)")
    noisy_policy: str = setting("downweight", choices=NOISY_POLICIES)
    noisy_weight: float = setting(0.1, range="[0, inf)")
    correct_mix: float = setting(1.0, range="[0, 1]")
    sampler: str = setting("key", choices=SAMPLERS)
    key_temperature: float = setting(0.1, range="(0, inf)")
    key_uniform: float = setting(0.3, range="[0, 1]")
    max_frames: int = setting(64, range="[2, inf)", limit=10**6)
    truth: str = "auto"

    def validate(self) -> "RobustConfig":
        """Raise :class:`ConfigError` naming the first setting not accepted; return self."""
        return check_settings(self, "robust.")


@dataclass
class RunConfig:
    #: the run's folder name under out_dir (empty: one that encodes the protocol, :meth:`run_name`)
    name: str = setting("", pattern=r"|[^/\\\x00]*[^/\\\x00.][^/\\\x00]*", expect="a folder name (no /, \\ or NUL, "
                        "not . or ..), or empty for one that encodes the protocol")
    out_dir: str = setting("runs", pattern=r"[^\x00]*", expect="a folder")
    seed: int = setting(0, range="[0, 4294967296)", expect="an integer in [0, 2^32)")
    label_mode: str = setting("midas", choices=LABEL_MODES)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)
    device: str = setting("auto", pattern=r"auto|cpu|cuda(:\d+)?", expect="auto, cpu, cuda or cuda:N")
    #: torch intra-op threads on the CPU (0 = torch's default)
    threads: int = setting(0, range="[0, inf)", limit=MAX_THREADS, expect=">= 0 (0: torch's default)")
    log_every: int = setting(20, range="[1, inf)")
    tensorboard: bool = True
    progress: bool = True

    def validate(self) -> "RunConfig":
        """Check every setting and every rule between settings (:func:`check_settings`); return self."""
        return check_settings(self)

    def check(self, where: str = "") -> None:
        """The rules that tie the sections together."""
        d, src = self.data, self.data.source
        if self.eval.select == "best_val" and d.val_fraction <= 0 and not src.val_split:
            raise ConfigError("eval.select=best_val needs data.val_fraction > 0 or data.source.val_split: the test "
                              "fold never selects a model")
        if (self.eval.select == "best_val" and src.val_split is not None and src.val_split == src.test_split
                and d.test_source is None):
            raise ConfigError(f"eval.select=best_val would select on the test clips: data.source.val_split is "
                              f"the test split {src.test_split!r}")
        if self.label_mode in MIXING_LABEL_MODES:
            self.mixing.check_mode(self.label_mode)
        if self.robust.enabled and (d.repeat > 1 or any(t.repeat > 1 for t in d.train_sources)):
            raise ConfigError("robust learning judges every training clip by its own predictions; data.repeat or a "
                              "train source's repeat > 1 would judge the copies of one clip apart: set them to 1")

    def run_name(self, *, cv: bool = False) -> str:
        """A name that encodes the protocol, mmaction2-style: ``tsm_resnet18_midas-a0.4_dfew-fold1``;
        with ``cv``, the cross-validation's folder (``..._dfew-cv``), which does not depend
        on the folds a job runs. The training subset and a separate test corpus are part of
        it (``..._dfew-clear-fold1``, ``..._dfew-test_test-afew-val``), as is RDFER's policy for
        noisy clips (``rdfer_resnet18_hard_robust-correct_dfew-fold1``) and the augmentation
        beyond crop and flip (``..._soft_aug-e0.5-r10_ferplus-test``), so two protocols do
        not share a name."""
        if self.name:  # one folder name (declared with the field): out_dir/name is inside out_dir
            return self.name
        src = self.data.source
        mode = self.label_mode
        if mode in MIXING_LABEL_MODES:
            mode += f"-a{self.mixing.alpha:g}"
        subset = "" if self.data.train_subset == "all" else f"-{self.data.train_subset}"
        if self.robust.enabled:  # RDFER's treatment of the noisy clips is part of the protocol
            mode += f"_robust-{self.robust.noisy_policy}"
        if self.data.augmentation():
            mode += f"_{self.data.augmentation()}"
        extra = "".join(f"+{t.kind}" for t in self.data.train_sources)
        test = ""
        if self.data.test_source is not None:
            test = f"_test-{self.data.test_source.kind}-{self.data.test_source.test_split}"
        where = ("cv" if cv else f"fold{src.fold}") if src.fold is not None else src.test_split
        return f"{self.model.name}_{mode}_{src.kind}{extra}{subset}-{where}{test}"


# ---------------------------------------------------------------------- (de)serialisation
def to_dict(cfg: Any) -> dict:
    return asdict(cfg)


def from_dict(cls: type, data: dict | None, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys by name."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    return cls(**kwargs)


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(tp, value, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(args[0], v, where) for v in value] if args else list(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            # YAML 1.1 reads 1e-3 (no dot in the mantissa) as a string; it means a number
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML recipe (or the defaults) and apply ``key.sub=value`` overrides.

    A recipe may name a ``base:`` file (relative to itself) whose values it overrides.
    """
    data: dict = {}
    if path is not None:
        data = _read_yaml(Path(path))
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not of the form key.sub=value")
        key, raw = ov.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {ov!r}: cannot parse value: {str(e).splitlines()[0]}") from None
        _set_path(data, key.strip().split("."), value, ov)
    return from_dict(RunConfig, data, where=str(path) if path else "config").validate()


def _read_yaml(path: Path, seen: tuple = ()) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' files form a cycle")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be one file name, got {base!r}")
    if base:
        merged = _read_yaml((path.parent / base), seen + (path.resolve(),))
        _deep_update(merged, data)
        return merged
    return data


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and k not in ("options", "kwargs"):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def _set_path(data: dict, keys: list[str], value, ov: str) -> None:
    d = data
    for k in keys[:-1]:
        nxt = d.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {ov!r}: {k!r} is not a section")
        d = nxt
    d[keys[-1]] = value


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


def saved_config(data: dict) -> RunConfig:
    """A config saved as a dict (a checkpoint's, a cv manifest's) by this or an earlier dfer.

    Fields added since it was saved take their defaults, so comparing
    ``config_hash(saved_config(d))`` with a run's hash does not refuse to resume a run only
    because dfer gained a setting. That rests on a rule for every new field: **its default
    keeps the behaviour dfer had before the field existed.** A field removed or renamed
    since, or a value no longer valid, raises :class:`ConfigError` naming it.
    """
    optim = data.get("optim") if isinstance(data, dict) else None
    if isinstance(optim, dict) and "amp" in optim and "precision" not in optim:
        # before optim.precision, optim.amp: true meant mixed precision on CUDA, fp32 on the CPU
        data = {**data, "optim": {**{k: v for k, v in optim.items() if k != "amp"},
                                  "precision": "auto" if optim["amp"] else "fp32"}}
    return from_dict(RunConfig, data, where="saved config").validate()


def config_hash(cfg: RunConfig) -> str:
    """Stable hash of everything that affects training (to refuse resuming a changed run)."""
    import hashlib

    d = to_dict(cfg)
    for k in ("progress", "tensorboard", "log_every", "threads", "device"):
        d.pop(k, None)
    d["data"].pop("num_workers", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
