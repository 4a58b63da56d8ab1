"""RobustLearner: the hooks :func:`dfer.train.train` calls when ``robust.enabled``.

RDFER (Liu, Wang, Shen, arXiv:2502.16129, abstract): hard and noisy samples are told apart
by "the prediction agreement of the model on different sampled clips of the video", then
"methodologies that reinforce the learning of hard samples and mitigate the impact of noisy
samples" are applied, and a key-expression re-sampling framework picks the frames. Here:

* :meth:`RobustLearner.on_epoch_start` runs an *agreement pass* every ``every`` epochs
  after ``warmup_epochs``: K differently sampled clips of every training video are
  classified by the current model (eval mode, no gradient), the consensus / agreement are
  averaged over passes, and :mod:`dfer.robust.agreement` splits the videos into clean /
  hard / noisy and sets per-video loss weights and (policy ``correct``) targets. The same
  forward passes give per-frame evidence for the key-expression scores
  (:mod:`dfer.robust.keyframe`).
* :meth:`RobustLearner.adjust` applies the current policy to a batch (weight 1 everywhere
  before the first pass).
* :meth:`RobustLearner.on_epoch_end` writes ``robust.csv`` (one row per epoch: counts and,
  on a synthetic corpus, precision / recall of the noisy and hard detection against its
  truth file) and ``robust_samples.csv`` (the latest per-video state).
* :meth:`state_dict` / :meth:`load_state_dict` hold everything, so a resumed run reproduces
  the weights of an uninterrupted one exactly.

The agreement pass's clips are drawn from generators seeded by (seed, epoch, video), so a
pass is a pure function of the model, the epoch and the number of processes.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from dfer.config import RobustConfig
from dfer.data.corpora.synthetic import TRUTH_FILE, read_truth
from dfer.data.dataset import build_loader, item_seed
from dfer.data.decode import num_frames_of
from dfer.data.splits import make_dataset
from dfer.data.table import ClipTable
from dfer.distributed import autocast_dtype
from dfer.inference import predict_loader, shard_rows
from dfer.errors import DataError
from dfer.io import atomic_path
from dfer.robust.agreement import (CLEAN, HARD, NOISY, SPLIT_NAMES, clip_agreement, corrected_targets, label_uar,
                                   sample_weights, split_samples)
from dfer.robust.keyframe import ClipSetSampler, KeyExpressionSampler, frame_scores
from dfer.rundir import ROBUST_FILE, read_epoch_log
from dfer.targets import HARD_LABEL_MODES, hard_or_soft

CSV_FIELDS = ["epoch", "passes", "skipped", "label_uar", "clean", "hard", "noisy", "mean_agreement", "mean_weight",
              "noisy_precision", "noisy_recall", "hard_precision", "hard_recall", "truth_noisy", "truth_hard"]

__all__ = ["RobustLearner", "detection_scores", "read_robust_log"]

_RATE = (0.0, 1.0, False)


def read_robust_log(path: Path, epochs_done: int, num_clips: int | None = None) -> list[dict[str, str]]:
    """The rows of the epochs 1..``epochs_done`` of a run's ``robust.csv``, checked
    (:func:`dfer.rundir.read_epoch_log`): the header :data:`CSV_FIELDS`, the pass counts
    whole numbers, the clip counts whole numbers (of at most ``num_clips``, the training
    clips, when given), the UAR, agreement, precisions and recalls in [0, 1] and the mean weight a
    finite number >= 0; one line naming the file, line and field otherwise. No file: no rows.
    """
    if epochs_done == 0 or not os.path.lexists(path):
        return []
    counts = (0.0, math.inf if num_clips is None else float(num_clips), True)
    cells = {"passes": (0.0, math.inf, True), "skipped": (0.0, math.inf, True), "label_uar": _RATE,
             "mean_agreement": _RATE, "mean_weight": (0.0, math.inf, False),
             **{k: counts for k in ("clean", "hard", "noisy", "truth_noisy", "truth_hard")},
             **{k: _RATE for k in ("noisy_precision", "noisy_recall", "hard_precision", "hard_recall")}}
    _, kept, _ = read_epoch_log(path, CSV_FIELDS, epochs_done, cells)
    return list(csv.DictReader([b.decode("utf-8") for b in kept], fieldnames=CSV_FIELDS))


def detection_scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float | None, float | None]:
    """(precision, recall) of a bool detection against bool truth; None where undefined."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    tp = float((pred & truth).sum())
    return (tp / pred.sum() if pred.any() else None, tp / truth.sum() if truth.any() else None)


class RobustLearner:
    """Per-video state of RDFER-style robust learning over the training table.

    Args:
        cfg: the ``robust`` section.
        table: the training clips (row i = dataset index i).
        num_classes: C.
        seed: the run's seed.
    """

    def __init__(self, cfg: RobustConfig, table: ClipTable, num_classes: int, seed: int = 0):
        self.cfg = cfg.validate()
        self.table = table
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        n, C, G = len(table), self.num_classes, cfg.max_frames
        self.label0 = torch.from_numpy(table.hard_labels().astype(np.int64))
        self.soft0 = torch.from_numpy(table.soft_labels().astype(np.float32))
        self.consensus = torch.zeros(n, C)
        self.agreement = torch.zeros(n)
        self.split = torch.full((n,), -1, dtype=torch.int64)
        self.weight = torch.ones(n)
        self.soft = self.soft0.clone()
        self.label = self.label0.clone()
        self.hard_labels = False  # the split compares with the one-hot hard label (else the soft label)
        self.passes = 0
        self.skipped = 0  # passes whose consensus fell below min_label_uar
        self.last_label_uar: float | None = None
        # shared memory: DataLoader workers hold the same storage, updated in place
        self.key_scores = torch.zeros(n, G).share_memory_()
        self.key_valid = torch.zeros(n, dtype=torch.bool).share_memory_()
        self._n_frames = np.full(n, -1, np.int64)
        self._device_cache: dict = {}
        self._last_pass_epoch = -1
        self.truth = self._load_truth()

    # ------------------------------------------------------------------ hooks
    def train_sampler(self, run_cfg):
        """The training clips' frame sampler: :class:`KeyExpressionSampler` for
        ``sampler=key`` (snippets of the model's ``snippet_frames`` for ``rdfer_resnet18``),
        None (TSN segments) for ``sampler=segment``."""
        if self.cfg.sampler != "key":
            return None
        snippet = 1
        if run_cfg.model.name == "rdfer_resnet18":
            snippet = int(run_cfg.model.kwargs.get("snippet_frames", 2))
        return KeyExpressionSampler(run_cfg.data.num_frames, self.key_scores, self.key_valid, snippet=snippet,
                                    temperature=self.cfg.key_temperature, uniform_share=self.cfg.key_uniform)

    def is_pass_epoch(self, epoch: int) -> bool:
        """Whether an agreement pass runs at the start of ``epoch`` (0-based)."""
        return epoch >= self.cfg.warmup_epochs and (epoch - self.cfg.warmup_epochs) % self.cfg.every == 0

    def on_epoch_start(self, epoch: int, model, run_cfg, device, dist_info=None) -> None:
        """Run an agreement pass when one is due and update weights, targets and key scores."""
        if not self.is_pass_epoch(epoch):
            return
        probs, fprobs, fidx = self._predict(model, run_cfg, device, dist_info, epoch)
        self.update(probs, fprobs, fidx, hard_labels=run_cfg.label_mode in HARD_LABEL_MODES)
        self._last_pass_epoch = epoch

    def update(self, probs: np.ndarray, frame_probs: np.ndarray | None, frame_index: np.ndarray,
               hard_labels: bool) -> None:
        """Fold one agreement pass into the state (split, weights, targets, key scores).

        Args:
            probs: float (N, K, C) clip probabilities.
            frame_probs: float (N, K, T, C) per-frame probabilities, or None (then every frame
                of clip k gets clip k's probabilities).
            frame_index: int64 (N, K, T) the frames each clip was made of.
            hard_labels: compare with the one-hot hard label (hard, midas-hard, mixup) rather
                than the soft label.
        """
        c = self.cfg
        cons, agr = clip_agreement(torch.as_tensor(probs, dtype=torch.float32))
        target = self._target(hard_labels)
        self.last_label_uar = label_uar(cons, target)
        if self.last_label_uar < c.min_label_uar:  # the model cannot judge the labels yet
            self.skipped += 1
            return
        if self.passes > 0 and c.momentum > 0:
            cons = c.momentum * self.consensus + (1 - c.momentum) * cons
            agr = c.momentum * self.agreement + (1 - c.momentum) * agr
        split = split_samples(cons, agr, target, agree_threshold=c.agree_threshold,
                              confidence_threshold=c.confidence_threshold, support_threshold=c.support_threshold)
        self.consensus, self.agreement, self.split, self.hard_labels = cons, agr, split, hard_labels
        self.weight = sample_weights(split, hard_weight=c.hard_weight, noisy_weight=c.noisy_weight,
                                     noisy_policy=c.noisy_policy)
        self.soft, self.label = corrected_targets(self.soft0, self.label0, cons, split,
                                                  noisy_policy=c.noisy_policy, correct_mix=c.correct_mix)
        # the principal expression: the label's class, the consensus where the label is judged noisy
        principal = torch.where(split == NOISY, cons.argmax(-1), target.argmax(-1)).numpy()
        fp = frame_probs if frame_probs is not None else np.broadcast_to(
            np.asarray(probs)[:, :, None, :], frame_index.shape + (probs.shape[-1],))
        for i in range(len(self.table)):
            n = int(frame_index[i].max()) + 1 if self._n_frames[i] < 0 else int(self._n_frames[i])
            new = frame_scores(frame_index[i], fp[i][..., principal[i]], n, c.max_frames)
            g = len(new)
            if bool(self.key_valid[i]):
                new = c.momentum * self.key_scores[i, :g].numpy() + (1 - c.momentum) * new
            self.key_scores[i, :g] = torch.from_numpy(np.ascontiguousarray(new, dtype=np.float32))
            self.key_valid[i] = True
        self.passes += 1
        self._device_cache.clear()

    def adjust(self, index: torch.Tensor, soft: torch.Tensor, label: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Apply the current policy to a batch.

        Args:
            index: int64 (B,) table rows, on the training device.
            soft: float (B, C) soft labels; label: int64 (B,) hard labels.

        Returns:
            (soft (B, C), label (B,), weight float32 (B,)), on the device of ``index``.
        """
        if self.passes == 0:
            return soft, label, torch.ones(index.shape[0], dtype=torch.float32, device=index.device)
        dev = index.device
        if dev not in self._device_cache:
            changed = self.label != self.label0
            changed |= (self.soft != self.soft0).any(dim=1)
            self._device_cache[dev] = (self.weight.to(dev), self.soft.to(dev), self.label.to(dev), changed.to(dev))
        weight, soft_t, label_t, changed = self._device_cache[dev]
        ch = changed[index]
        soft = torch.where(ch[:, None], soft_t[index].to(soft.dtype), soft)
        label = torch.where(ch, label_t[index], label)
        return soft, label, weight[index]

    def on_epoch_end(self, epoch: int, run_dir) -> None:
        """Append this epoch's row to ``run_dir/robust.csv`` (rows of later epochs, left by an
        interrupted run, are dropped; the rows kept are checked, :func:`read_robust_log`) and
        rewrite ``run_dir/robust_samples.csv``."""
        run_dir = Path(run_dir)
        path = run_dir / ROBUST_FILE
        rows = read_robust_log(path, epoch, len(self.table))
        rows.append(self.summary(epoch + 1))
        _write_csv(path, CSV_FIELDS, rows)
        self._write_samples(run_dir / "robust_samples.csv")

    def summary(self, epoch: int) -> dict:
        """Counts of the current split and, with a truth file, detection precision / recall."""
        s = self.split.numpy()
        row = {"epoch": epoch, "passes": self.passes, "skipped": self.skipped, "label_uar": _fmt(self.last_label_uar),
               "clean": int((s == CLEAN).sum()), "hard": int((s == HARD).sum()),
               "noisy": int((s == NOISY).sum()), "mean_agreement": _fmt(self.agreement.mean().item() if self.passes else None),
               "mean_weight": _fmt(self.weight.mean().item())}
        if self.truth is not None and self.passes:
            noisy_t, hard_t = self.truth
            row["noisy_precision"], row["noisy_recall"] = map(_fmt, detection_scores(s == NOISY, noisy_t))
            row["hard_precision"], row["hard_recall"] = map(_fmt, detection_scores(s == HARD, hard_t))
            row["truth_noisy"], row["truth_hard"] = int(noisy_t.sum()), int(hard_t.sum())
        return row

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything the policy depends on, as CPU tensors."""
        return {"consensus": self.consensus.clone(), "agreement": self.agreement.clone(), "split": self.split.clone(),
                "weight": self.weight.clone(), "soft": self.soft.clone(), "label": self.label.clone(),
                "hard_labels": torch.tensor([int(self.hard_labels)], dtype=torch.int64),
                "key_scores": self.key_scores.clone(), "key_valid": self.key_valid.to(torch.uint8),
                "passes": torch.tensor([self.passes], dtype=torch.int64),
                "skipped": torch.tensor([self.skipped], dtype=torch.int64),
                "last_label_uar": torch.tensor([-1.0 if self.last_label_uar is None else self.last_label_uar])}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` (an empty dict, from a run without robust state, resets)."""
        if not state:
            return
        self.consensus = state["consensus"].float().clone()
        self.agreement = state["agreement"].float().clone()
        self.split = state["split"].long().clone()
        self.weight = state["weight"].float().clone()
        self.soft = state["soft"].float().clone()
        self.label = state["label"].long().clone()
        self.hard_labels = bool(state["hard_labels"][0]) if "hard_labels" in state else False
        self.key_scores.copy_(state["key_scores"])  # in place: workers share this storage
        self.key_valid.copy_(state["key_valid"].bool())
        self.passes = int(state["passes"][0])
        self.skipped = int(state["skipped"][0]) if "skipped" in state else 0
        u = float(state["last_label_uar"][0]) if "last_label_uar" in state else -1.0
        self.last_label_uar = None if u < 0 else u
        self._device_cache.clear()

    # ------------------------------------------------------------------ internals
    def _predict(self, model, run_cfg, device, dist_info, epoch: int):
        """(probs (N, K, C), frame probs (N, K, T, C) or None, frame indices (N, K, T)) of the
        K clips of every training video; each process predicts a shard, all get everything."""
        K, T = self.cfg.num_clips, run_cfg.data.num_frames
        enabled = dist_info is not None and dist_info.enabled
        shard = shard_rows(len(self.table), dist_info)
        sub = self.table.take(shard)
        sampler = ClipSetSampler(T, K)
        ds = make_dataset(sub, run_cfg, train=False, sampler=sampler)
        ds.seed = item_seed(self.seed, 0, 0, stream=7) % 2**62  # clips unlike the training draws
        loader = build_loader(ds, max(1, run_cfg.eval.batch_size // K), shuffle=False,
                              num_workers=run_cfg.data.num_workers, seed=run_cfg.seed, epoch=epoch)
        # this shard only: its frame indices are replayed below, then everything is gathered
        out = predict_loader(model, loader, shard, device, autocast_dtype(run_cfg, device), dist_info, frames=True,
                             gather=False)
        local = np.searchsorted(shard, out.rows)  # rows of ``sub``
        probs_l, fprobs_l = out.probs, out.frame_probs
        # the frames of each clip: the dataset's sampler draw, replayed from the same generator
        fidx_l = np.zeros((len(local), K, T), np.int64)
        for j, li in enumerate(local):
            gi = shard[li]
            if self._n_frames[gi] < 0:
                self._n_frames[gi] = num_frames_of(str(sub.source[li]), int(sub.kind[li]))
            fidx_l[j] = sampler.sample(int(self._n_frames[gi]), ds.generator(int(li), epoch))
        glob = shard[local]
        if enabled:
            gathered = [None] * dist_info.world_size
            dist.all_gather_object(gathered, (glob, probs_l, fprobs_l, fidx_l, self._n_frames[glob]))
            glob = np.concatenate([g[0] for g in gathered])
            probs_l = np.concatenate([g[1] for g in gathered])
            fprobs_l = None if fprobs_l is None else np.concatenate([g[2] for g in gathered])
            fidx_l = np.concatenate([g[3] for g in gathered])
            self._n_frames[glob] = np.concatenate([g[4] for g in gathered])
        n = len(self.table)
        order = np.argsort(glob)
        if len(glob) != n or not np.array_equal(glob[order], np.arange(n)):
            raise RuntimeError("agreement pass missed some training clips")  # a bug, not user data
        return probs_l[order], (None if fprobs_l is None else fprobs_l[order]), fidx_l[order]

    def _target(self, hard_labels: bool) -> torch.Tensor:
        """(N, C) what the split compares with: one-hot hard labels (videos without one keep
        their soft label) or the soft labels."""
        return hard_or_soft(self.label0, self.soft0) if hard_labels else self.soft0

    def _write_samples(self, path: Path) -> None:
        rows = []
        conf, top = self.consensus.max(dim=-1)
        support = (self.consensus * self._target(self.hard_labels)).sum(dim=-1)
        for i in range(len(self.table)):
            s = int(self.split[i])
            n = int(self._n_frames[i]) if self._n_frames[i] > 0 else self.key_scores.shape[1]
            g = min(n, self.key_scores.shape[1])
            rows.append({"clip_id": str(self.table.clip_id[i]), "split": SPLIT_NAMES[s] if s >= 0 else "",
                         "agreement": f"{float(self.agreement[i]):.4f}", "consensus": int(top[i]),
                         "confidence": f"{float(conf[i]):.4f}", "support": f"{float(support[i]):.4f}",
                         "weight": f"{float(self.weight[i]):.4f}",
                         "label": int(self.label0[i]), "train_label": int(self.label[i]),
                         "key_frame": int(round(float(np.argmax(self.key_scores[i, :g].numpy())) * (n - 1) / max(g - 1, 1)))
                         if bool(self.key_valid[i]) else ""})
        _write_csv(path, ["clip_id", "split", "agreement", "consensus", "confidence", "support", "weight", "label",
                          "train_label", "key_frame"], rows)

    def _load_truth(self):
        """(noisy truth, hard truth) bool (N,) from a synthetic corpus's truth file, or None."""
        spec = self.cfg.truth
        if not spec:
            return None

        if spec == "auto":
            root = self.table.meta.get("root")
            if not root or not (Path(root) / TRUTH_FILE).is_file():
                return None
        else:
            root = Path(spec).parent if Path(spec).is_file() else Path(spec)
        truth = read_truth(root)
        row = {str(v): k for k, v in enumerate(truth["video_name"])}
        ids = [str(c).split("#")[0] for c in self.table.clip_id]
        missing = [c for c in ids if c not in row]
        if missing:
            raise DataError(f"{root}: truth file has no row for clip(s) {missing[:5]}, expected every training clip")
        idx = np.array([row[c] for c in ids], np.int64)
        noisy = truth["label_corrupted"][idx]
        return noisy, truth["is_hard"][idx] & ~noisy


def _fmt(x):
    return "" if x is None else f"{x:.4f}"


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})
