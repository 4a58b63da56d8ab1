"""Run configuration: dataclasses, their YAML form, and command-line overrides.

A YAML recipe is only the serialised form of :class:`RunConfig`; overrides given on the
command line (``optim.lr=0.01 data.fold=3``) go through the same path, so a value means
the same thing wherever it is set. The resolved config is written next to every run.

Defaults follow the MIDAS paper, section 4.3: TSM ResNet-18, 8 segments, 224x224, SGD
lr 0.02 momentum 0.9, cosine decay, 450 epochs, batch 8, dropout 0.5, alpha 0.4.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from dfer.data.table import SPLIT_NAMES, TIES
from dfer.errors import ConfigError
from dfer.io import single_component
from dfer.robust.config import RobustConfig

LABEL_MODES = ("hard", "soft", "midas", "midas-hard", "mixup")
#: label modes whose training targets are built from one-hot hard labels
HARD_LABEL_MODES = ("hard", "midas-hard", "mixup")
#: the label modes that mix pairs of clips (their runs carry mixing.alpha in their names)
MIXING_LABEL_MODES = ("midas", "midas-hard", "mixup")


@dataclass
class SourceConfig:
    """Where clips come from: a corpus adapter (``kind``) pointed at ``root``.

    ``options`` are passed to the adapter (e.g. ``frames: clip_224x224_16f`` for DFEW,
    ``strip_prefix`` for a list file). ``fold`` selects the cross-validation fold whose
    clips are the test set (the others train); with ``fold: null`` the adapter's fixed
    ``split`` column is used instead (FERV39K train/test, AFEW train/val).
    """

    kind: str = "dfew"
    root: str = ""
    options: dict = field(default_factory=dict)
    fold: int | None = 1
    train_split: str = "train"
    test_split: str = "test"
    #: an adapter's fixed split to validate and select on (FER+ Valid), instead of a
    #: fraction held out from the training clips
    val_split: str | None = None


@dataclass
class TrainSourceConfig(SourceConfig):
    """A further corpus whose clips only ever train (``data.train_sources``): its training
    part (the folds other than ``fold``, or ``train_split``; ``fold: null`` and
    ``train_split: all`` for all of it) joins the main source's training clips, mapped into
    the run's classes by emotion name (a class the corpus lacks is simply never its
    target), ``repeat`` times over (a small corpus beside a large one)."""

    fold: int | None = None
    repeat: int = 1


@dataclass
class DataConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    #: optional different test corpus (cross-dataset: train on DFEW, test on AFEW).
    test_source: SourceConfig | None = None
    #: further corpora that only train (e.g. FER+'s stills beside acted video clips)
    train_sources: list[TrainSourceConfig] = field(default_factory=list)
    #: copies of the main source's training clips per epoch (a small corpus beside a large
    #: one in data.train_sources)
    repeat: int = 1
    classes: str = "basic7"
    num_frames: int = 8
    size: int = 224
    #: training crop: scale (TSN multi-scale crop of ``scales``, for video frames) | pad
    #: (random translation by ``pad`` pixels at the frame's own scale, for small still faces)
    crop: str = "scale"
    scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    pad: int = 4
    flip: bool = True
    #: centred fraction of every frame kept before the geometry (1.0: all of it); 0.65 of a
    #: ``dfer preprocess`` face is the framing of the shipped FER+ model and its trunk
    face_crop: float = 1.0
    #: frames turned grey (three equal channels), as the shipped FER+ model sees faces
    grey: bool = False
    #: hard label of a clip whose top votes tie: drop | first (in class order) | random
    #: (seeded); unset, a corpus with ties stops before anything is built
    ties: str | None = None
    num_workers: int = 2
    #: fraction of the training clips held out (stratified) for model selection; the
    #: test fold is never used to choose anything.
    val_fraction: float = 0.0
    #: keep only the clear (max soft label > 0.9) training clips (the paper's Table 6).
    train_subset: str = "all"  # all | clear | mixed
    on_bad_clip: str = "error"  # error | skip
    check_disk: bool = True


@dataclass
class ModelConfig:
    name: str = "tsm_resnet18"
    pretrained: bool | str = False
    #: with pretrained: ferplus, the shipped model's classifier too: training fine-tunes the
    #: shipped model itself (the run's classes must be its eight, in its order)
    pretrained_classifier: bool = False
    dropout: float = 0.5
    kwargs: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    #: sgd (the paper's) | adamw (trains small models from scratch much faster; the demo's)
    name: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    nesterov: bool = False
    #: the paper does not state weight decay; 5e-4 is the TSM code base's default.
    weight_decay: float = 5e-4
    epochs: int = 450
    #: global batch: split evenly over the processes of a distributed run.
    batch_size: int = 8
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: float = 0.0
    grad_clip: float | None = None
    amp: bool = True  # mixed precision on CUDA; ignored on the CPU


@dataclass
class MixingConfig:
    """MIDAS / mixup parameters (used by label modes midas, midas-hard, mixup)."""

    alpha: float = 0.4
    normalise: str = "none"  # none | softmax | renormalise; see dfer.mixing
    temperature: float = 1.0
    #: one λ per clip or per batch; null = the mode's own (MIDAS: per clip, mixup: per batch)
    lam_per: str | None = None


@dataclass
class EvalConfig:
    num_clips: int = 1  # clips per video at test time (multi-clip averages probabilities)
    batch_size: int = 16
    every: int = 1  # evaluate on the validation split every N epochs (if there is one)
    select: str = "last"  # last | best_val (needs data.val_fraction > 0)


@dataclass
class RunConfig:
    name: str = ""
    out_dir: str = "runs"
    seed: int = 0
    label_mode: str = "midas"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads on the CPU (0 = torch's default)
    log_every: int = 20
    tensorboard: bool = True
    progress: bool = True

    def validate(self) -> "RunConfig":
        if self.label_mode not in LABEL_MODES:
            raise ConfigError(f"label_mode {self.label_mode!r} is not one of {list(LABEL_MODES)}")
        if self.data.num_frames < 1 or self.data.size < 8:
            raise ConfigError(f"data.num_frames ({self.data.num_frames}) must be >= 1 and data.size "
                              f"({self.data.size}) >= 8")
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.data.val_fraction}")
        if self.eval.select not in ("last", "best_val"):
            raise ConfigError(f"eval.select must be 'last' or 'best_val', got {self.eval.select!r}")
        if self.eval.select == "best_val" and self.data.val_fraction <= 0 and not self.data.source.val_split:
            raise ConfigError("eval.select=best_val needs data.val_fraction > 0 or data.source.val_split: the test "
                              "fold never selects a model")
        if self.data.val_fraction > 0 and self.data.source.val_split:
            raise ConfigError("set data.val_fraction or data.source.val_split, not both")
        sources = [(self.data.source, "data.source"), (self.data.test_source, "data.test_source")]
        sources += [(t, f"data.train_sources[{i}]") for i, t in enumerate(self.data.train_sources)]
        for i, t in enumerate(self.data.train_sources):
            if t.repeat < 1:
                raise ConfigError(f"data.train_sources[{i}].repeat must be >= 1, got {t.repeat}")
        for src_cfg, where in sources:
            if src_cfg is None:
                continue
            for key in ("train_split", "test_split", "val_split"):
                value = getattr(src_cfg, key)
                if value is not None and (value != "all" or key == "val_split") and value not in SPLIT_NAMES:
                    raise ConfigError(f"{where}.{key} {value!r} unknown; expected train, val, test or all")
        if self.data.crop not in ("scale", "pad"):
            raise ConfigError(f"data.crop must be scale or pad, got {self.data.crop!r}")
        if self.data.pad < 0:
            raise ConfigError(f"data.pad must be >= 0, got {self.data.pad}")
        if self.data.ties not in (None,) + TIES:
            raise ConfigError(f"data.ties must be drop, first or random (or unset), got {self.data.ties!r}")
        src = self.data.source
        if src.val_split is not None:
            if src.fold is not None:
                raise ConfigError("data.source.val_split needs data.source.fold: null (a fixed split, not a fold)")
            if src.val_split in (src.train_split, "all") or src.train_split == "all":
                raise ConfigError(f"data.source.val_split {src.val_split!r} overlaps the training clips "
                                  f"(train_split {src.train_split!r})")
            if self.eval.select == "best_val" and src.val_split == src.test_split and self.data.test_source is None:
                raise ConfigError(f"eval.select=best_val would select on the test clips: data.source.val_split is "
                                  f"the test split {src.test_split!r}")
        if self.data.on_bad_clip not in ("error", "skip"):
            raise ConfigError(f"data.on_bad_clip must be 'error' or 'skip', got {self.data.on_bad_clip!r}")
        if self.data.train_subset not in ("all", "clear", "mixed"):
            raise ConfigError(f"data.train_subset must be all, clear or mixed, got {self.data.train_subset!r}")
        if self.optim.epochs < 1 or self.optim.batch_size < 1 or not self.optim.lr > 0:
            raise ConfigError("optim.epochs, optim.batch_size and optim.lr must be positive")
        if self.optim.name not in ("sgd", "adamw"):
            raise ConfigError(f"optim.name must be sgd or adamw, got {self.optim.name!r}")
        if self.optim.schedule not in ("cosine", "constant"):
            raise ConfigError(f"optim.schedule must be cosine or constant, got {self.optim.schedule!r}")
        if self.model.pretrained_classifier and self.model.pretrained != "ferplus":
            raise ConfigError(f"model.pretrained_classifier takes the shipped FER+ model's classifier: it needs "
                              f"model.pretrained: ferplus, got {self.model.pretrained!r}")
        if self.robust.enabled and (self.data.repeat > 1 or any(t.repeat > 1 for t in self.data.train_sources)):
            raise ConfigError("robust learning judges every training clip by its own predictions; data.repeat or a "
                              "train source's repeat > 1 would judge the copies of one clip apart: set them to 1")
        if self.mixing.alpha <= 0:
            raise ConfigError(f"mixing.alpha must be > 0, got {self.mixing.alpha}")
        self._validate_ranges()
        return self

    def _validate_ranges(self) -> None:
        """Numbers outside the range in which they mean something, and enumerations."""
        o, d, e, m = self.optim, self.data, self.eval, self.mixing
        checks = (
            ("seed", 0 <= self.seed < 2**32, "an integer in [0, 2^32)", self.seed),
            ("threads", self.threads >= 0, ">= 0 (0: torch's default)", self.threads),
            ("log_every", self.log_every >= 1, ">= 1", self.log_every),
            ("device", re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
             "auto, cpu, cuda or cuda:N", self.device),
            ("data.num_workers", d.num_workers >= 0, ">= 0", d.num_workers),
            ("data.repeat", d.repeat >= 1, ">= 1", d.repeat),
            ("data.face_crop", 0 < d.face_crop <= 1, "a fraction in (0, 1]", d.face_crop),
            ("data.scales", bool(d.scales) and all(0 < x <= 1 for x in d.scales), "fractions in (0, 1]",
             d.scales),
            ("model.dropout", 0 <= self.model.dropout < 1, "in [0, 1)", self.model.dropout),
            ("optim.momentum", 0 <= o.momentum < 1, "in [0, 1)", o.momentum),
            ("optim.weight_decay", o.weight_decay >= 0, ">= 0", o.weight_decay),
            ("optim.warmup_epochs", 0 <= o.warmup_epochs <= o.epochs, f"in [0, optim.epochs={o.epochs}]",
             o.warmup_epochs),
            ("optim.grad_clip", o.grad_clip is None or o.grad_clip > 0, "> 0, or null for none", o.grad_clip),
            ("mixing.normalise", m.normalise in ("none", "softmax", "renormalise"), "none, softmax or renormalise",
             m.normalise),
            ("mixing.temperature", m.temperature > 0, "> 0", m.temperature),
            ("mixing.lam_per", m.lam_per in (None, "sample", "batch"), "sample, batch or null", m.lam_per),
            ("eval.every", e.every >= 1, ">= 1", e.every),
            ("eval.num_clips", e.num_clips >= 1, ">= 1", e.num_clips),
            ("eval.batch_size", e.batch_size >= 1, ">= 1", e.batch_size),
        )
        for name, ok, accepted, value in checks:
            if not ok:
                raise ConfigError(f"{name} must be {accepted}, got {value!r}")

    def run_name(self, *, cv: bool = False) -> str:
        """A name that encodes the protocol, mmaction2-style: ``tsm_resnet18_midas-a0.4_dfew-fold1``;
        with ``cv``, the cross-validation's folder (``..._dfew-cv``), which does not depend
        on the folds a job runs. The training subset and a separate test corpus are part of
        it (``..._dfew-clear-fold1``, ``..._dfew-test_test-afew-val``), as is RDFER's policy for
        noisy clips (``rdfer_resnet18_hard_robust-correct_dfew-fold1``), so two protocols do
        not share a name."""
        if self.name:  # the run's folder is out_dir/name: never one outside out_dir
            return single_component(self.name, "name")
        src = self.data.source
        mode = self.label_mode
        if mode in MIXING_LABEL_MODES:
            mode += f"-a{self.mixing.alpha:g}"
        subset = "" if self.data.train_subset == "all" else f"-{self.data.train_subset}"
        if self.robust.enabled:  # RDFER's treatment of the noisy clips is part of the protocol
            mode += f"_robust-{self.robust.noisy_policy}"
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
    return from_dict(RunConfig, data, where="saved config").validate()


def config_hash(cfg: RunConfig) -> str:
    """Stable hash of everything that affects training (to refuse resuming a changed run)."""
    import hashlib

    d = to_dict(cfg)
    for k in ("progress", "tensorboard", "log_every", "threads", "device"):
        d.pop(k, None)
    d["data"].pop("num_workers", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
