"""The clips of a run: the source table, folds and fixed splits, the validation holdout,
the ambiguity subsets of the paper's Table 6, the labels decided before anything is built,
and the datasets over them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfer.config import DataConfig, RunConfig
from dfer.data.check import check_table
from dfer.data.corpora.registry import load_source
from dfer.data.dataset import ClipDataset
from dfer.data.sampling import MultiClipSampler, SegmentSampler
from dfer.data.table import ClipTable, concat, shared_file
from dfer.data.transforms import build_transforms
from dfer.emotions import resolve_classes
from dfer.errors import ConfigError, DataError
from dfer.metrics import clear_mask
from dfer.rundir import CACHE_DIR
from dfer.targets import HARD_LABEL_MODES


def load_source_table(source, classes: tuple[str, ...]) -> ClipTable:
    if not source.root:
        raise ConfigError(f"data source {source.kind!r} has no root: set data.source.root=PATH")
    table = load_source(source.kind, source.root, **source.options)
    return table.to_classes(classes)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Bool mask of a validation subset: ``fraction`` of each class (or of the groups, when
    clips carry group ids, so a subject never sits on both sides)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    if groups is not None and (groups != "").all():
        uniq = np.unique(groups)
        chosen = rng.permutation(uniq)[: max(1, round(fraction * len(uniq)))]
        return np.isin(groups, chosen)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(fraction * len(idx)))
        if k and len(idx) > 1:
            mask[rng.choice(idx, size=min(k, len(idx) - 1), replace=False)] = True
    return mask


def ambiguity_subset(table: ClipTable, which: str, seed: int, size: int | None = None) -> ClipTable:
    """The paper's Table 6 training groups, matched in size and class distribution.

    ``clear``: clips whose largest soft label exceeds 0.9; ``mixed``: clips drawn from all
    clips regardless of agreement. Both are re-sampled (down-sampling, or over-sampling with
    replacement where a class is short) to ``size`` clips (default: the number of clear
    clips) with the class distribution of the whole table, as section 5.5 describes.
    """
    if which == "all":
        return table
    soft = table.soft_labels()
    labels = table.hard_labels()
    clear = clear_mask(soft)  # the paper's clear group, as every table of dfer counts it
    pool = clear if which == "clear" else np.ones(len(table), bool)
    size = int(size or clear.sum())
    if size == 0:
        raise DataError(f"{table.name}: no clear clips (max soft label > 0.9) to build the {which!r} group")
    rng = np.random.default_rng(seed)
    valid = labels >= 0
    dist_ = np.bincount(labels[valid], minlength=table.num_classes) / valid.sum()
    counts = np.floor(dist_ * size).astype(int)
    counts[np.argsort(-(dist_ * size - counts))[: size - counts.sum()]] += 1
    picks = []
    for c, k in enumerate(counts):
        idx = np.flatnonzero(pool & (labels == c))
        if k == 0:
            continue
        if len(idx) == 0:
            raise DataError(f"{table.name}: the {which!r} group has no clip of class {table.classes[c]!r}")
        picks.append(rng.choice(idx, size=k, replace=len(idx) < k))
    order = np.concatenate(picks)
    sub = table.take(order)
    # re-sampled duplicates need distinct ids
    ids = np.char.add(sub.clip_id.astype(str), np.char.add("#", np.arange(len(sub)).astype(str)))
    return sub.with_columns(clip_id=ids)


def _with_train_sources(train: ClipTable, cfg: RunConfig, classes: tuple[str, ...], run_dir: Path | None,
                        reports: dict) -> ClipTable:
    """The training clips ``data.repeat`` times over, then the training part of each of
    ``data.train_sources``, each ``repeat`` times over (labels decided and clips checked as
    the main source's; copies get distinct clip ids ``<id>#r<k>``, a further source's ids
    its kind as prefix)."""
    def copies(table: ClipTable, repeat: int, prefix: str) -> list[ClipTable]:
        ids = np.char.add(prefix, table.clip_id.astype(str))
        if repeat == 1:
            return [table.with_columns(clip_id=ids)]
        return [table.with_columns(clip_id=np.char.add(ids, f"#r{k}")) for k in range(repeat)]

    parts = copies(train, cfg.data.repeat, "")
    for i, ts in enumerate(cfg.data.train_sources):
        if not ts.root:
            raise ConfigError(f"data.train_sources[{i}] ({ts.kind}) has no root: set it, e.g. "
                              f"'data.train_sources=[{{kind: {ts.kind}, root: PATH}}]'")
        other = load_source_table(ts, classes)
        if ts.fold is not None:
            other = other.fold_split(ts.fold)[0]
        elif ts.train_split != "all":
            other = other.split_part(ts.train_split)
        if len(other) == 0:
            raise DataError(f"{ts.root}: no training clips in data.train_sources[{i}] "
                            f"(fold={ts.fold}, train_split={ts.train_split!r})")
        other = other.resolve_labels(cfg.data.ties, cfg.seed, f"{ts.root} (training clips)",
                                     required=cfg.label_mode in HARD_LABEL_MODES)
        if cfg.data.check_disk:
            cache = (run_dir / CACHE_DIR) if run_dir is not None else None
            other, reports[f"train_sources[{i}]"] = check_table(other, on_bad_clip=cfg.data.on_bad_clip,
                                                                cache_dir=cache)
        other = other.with_columns(fold=np.zeros(len(other), np.int8), split=np.zeros(len(other), np.uint8))
        parts += copies(other, ts.repeat, f"{ts.kind}:")
    return parts[0] if len(parts) == 1 else concat(parts, name=train.name)


@dataclass
class Splits:
    classes: tuple[str, ...]
    train: ClipTable
    val: ClipTable | None
    test: ClipTable
    #: part name -> dfer.data.check.CheckReport of the disk check (empty if not checked)
    reports: dict


def build_splits(cfg: RunConfig, run_dir: Path | None = None) -> Splits:
    """Tables for training, validation (held out from training) and test."""
    classes = resolve_classes(cfg.data.classes)
    src = cfg.data.source
    table = load_source_table(src, classes)
    if src.fold is not None:
        train, test = table.fold_split(src.fold)
    else:
        part = lambda name: table if name == "all" else table.split_part(name)  # noqa: E731
        train, test = part(src.train_split), part(src.test_split)
    if cfg.data.test_source is not None:
        ts = cfg.data.test_source
        other = load_source_table(ts, classes)
        if ts.fold is not None:
            test = other.fold_split(ts.fold)[1]
        else:
            test = other if ts.test_split == "all" else other.split_part(ts.test_split)
    val = None
    if src.val_split:
        val = table.split_part(src.val_split)
        if len(val) == 0:
            raise DataError(f"{src.root}: no clips in the validation split {src.val_split!r}")
    # every hard label is decided here, before a model or a loader exists (data.ties); a tie
    # left undecided stops only a run whose training targets are hard labels
    hard_targets = cfg.label_mode in HARD_LABEL_MODES
    test_root = cfg.data.test_source.root if cfg.data.test_source is not None else src.root
    train = train.resolve_labels(cfg.data.ties, cfg.seed, f"{src.root} (training clips)", required=hard_targets)
    test = test.resolve_labels(cfg.data.ties, cfg.seed, f"{test_root} (test clips)", required=False)
    if val is not None:
        val = val.resolve_labels(cfg.data.ties, cfg.seed, f"{src.root} (validation clips)", required=False)
    if len(train) == 0:
        raise DataError(f"{src.root}: no training clips for fold={src.fold} split={src.train_split!r}")
    if len(test) == 0:
        raise DataError(f"no test clips for fold={src.fold} split={src.test_split!r}")
    reports: dict = {}
    if cfg.data.check_disk:
        cache = (run_dir / CACHE_DIR) if run_dir is not None else None
        train, reports["train"] = check_table(train, on_bad_clip=cfg.data.on_bad_clip, cache_dir=cache)
        test, reports["test"] = check_table(test, on_bad_clip=cfg.data.on_bad_clip, cache_dir=cache)
        if val is not None:
            val, reports["val"] = check_table(val, on_bad_clip=cfg.data.on_bad_clip, cache_dir=cache)
    train = ambiguity_subset(train, cfg.data.train_subset, cfg.seed)
    if cfg.data.val_fraction > 0:
        mask = stratified_holdout(train.label, cfg.data.val_fraction, cfg.seed,
                                  train.group if (train.group != "").all() else None)
        val, train = train.take(mask), train.take(~mask)
    train = _with_train_sources(train, cfg, classes, run_dir, reports)
    # (a validation split may be the test split: eval.select decides whether that is allowed)
    same = shared_file(test, train)
    if same is not None:  # a further source, or a test source, that holds a test clip
        i, j, real = same
        raise DataError(f"test clip {str(test.clip_id[i])!r} ({test.source[i]}) is the same file as the "
                        f"training clip {str(train.clip_id[j])!r} ({train.source[j]}), {real}: a clip is "
                        f"never both trained on and tested on; take it out of one of the sources")
    return Splits(classes, train, val, test, reports)


def data_transform(d: DataConfig, train: bool):
    """The input pipeline that the data settings ``d`` describe (:func:`build_transforms`),
    for training or test. uint8 clips: made float and normalised on the device
    (:func:`dfer.data.transforms.to_model_input`)."""
    return build_transforms(train=train, size=d.size, scales=tuple(d.scales), flip=d.flip, crop=d.crop, pad=d.pad,
                            uint8=True, face_crop=d.face_crop, grey=d.grey, erase=d.erase,
                            erase_scale=tuple(d.erase_scale), rotate=d.rotate, scale_jitter=d.scale_jitter,
                            jitter=d.jitter)


def make_dataset(table: ClipTable, cfg: RunConfig, train: bool, num_clips: int = 1, sampler=None, transform=None):
    """The dataset of ``table`` as ``cfg`` samples and transforms it; ``transform`` replaces
    the config's (a model with its own input pipeline, e.g. the shipped one)."""
    d = cfg.data
    if sampler is None:
        sampler = (SegmentSampler(d.num_frames, mode="train") if train else
                   MultiClipSampler(d.num_frames, num_clips) if num_clips > 1 else
                   SegmentSampler(d.num_frames, mode="test"))
    if transform is None:
        transform = data_transform(d, train)
    # clips that fail the disk check are dropped (and listed) before this point; a clip that
    # still fails to decode mid-run stops the run unless the user asked to skip bad clips
    return ClipDataset(table, sampler, transform, seed=cfg.seed,
                       on_bad_clip="warn" if d.on_bad_clip == "skip" else "error")
