"""RDFER robust learning: clip agreement, the clean/hard/noisy split, weighting policies,
key-expression re-sampling and exact resume of the learner's state."""

from __future__ import annotations

import csv
import pickle
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dfer.config import RunConfig, from_dict
from dfer.data.table import ClipTable
from dfer.emotions import BASIC7
from dfer.errors import ConfigError
from dfer.robust.agreement import (CLEAN, HARD, NOISY, clip_agreement, corrected_targets, label_uar,
                                   sample_weights, split_samples)
from dfer.config import RobustConfig
from dfer.robust.keyframe import KeyExpressionSampler, frame_scores, key_distribution, stratified_draw
from dfer.robust.learner import RobustLearner, detection_scores

C = 7


def onehot(idx, c=C):
    return torch.nn.functional.one_hot(torch.as_tensor(idx), c).float()


def peaked(cls: int, p: float = 0.9) -> torch.Tensor:
    row = torch.full((C,), (1 - p) / (C - 1))
    row[cls] = p
    return row


def fake_table(labels, votes=None, n_frames=12) -> ClipTable:
    n = len(labels)
    return ClipTable.build(BASIC7, [f"{i:05d}" for i in range(n)], [f"/nowhere/{i}" for i in range(n)],
                           kind=np.zeros(n), num_frames=np.full(n, n_frames), label=labels, votes=votes)


# ---------------------------------------------------------------------- agreement


def test_agreement_of_identical_clips_is_maximal():
    g = torch.Generator().manual_seed(0)
    base = torch.softmax(torch.randn(50, 1, C, generator=g), -1)
    same = base.expand(50, 5, C)
    cons, agr = clip_agreement(same)
    assert torch.equal(agr, torch.ones(50))
    assert torch.allclose(cons, base[:, 0])
    # any other set of clips agrees at most as much, and random ones strictly less on average
    rand = torch.softmax(3 * torch.randn(50, 5, C, generator=g), -1)
    _, agr_r = clip_agreement(rand)
    assert (agr_r <= 1).all() and (agr_r >= 1 / 5).all() and agr_r.mean() < 0.9


def test_agreement_counts_clips_voting_for_the_consensus():
    probs = torch.stack([peaked(2), peaked(2), peaked(2), peaked(4)])[None]
    cons, agr = clip_agreement(probs)
    assert cons.argmax().item() == 2 and agr.item() == pytest.approx(0.75)


def test_clips_all_predicting_another_class_are_flagged_noisy_for_hard_and_soft_labels():
    probs = torch.stack([torch.stack([peaked(3, 0.8 + 0.05 * k) for k in range(4)]),  # all say angry
                         torch.stack([peaked(0)] * 4),                                   # all say happy
                         torch.stack([peaked(k) for k in (0, 1, 4, 6)])])                # disagree
    cons, agr = clip_agreement(probs)
    hard_target = onehot([0, 0, 0])
    split = split_samples(cons, agr, hard_target)
    assert split.tolist() == [NOISY, CLEAN, HARD]
    # soft labels: 70 % happy votes and 30 % sad -> the angry consensus still contradicts them
    soft = torch.tensor([[0.7, 0.3, 0, 0, 0, 0, 0]] * 3)
    assert split_samples(cons, agr, soft).tolist() == [NOISY, CLEAN, HARD]
    # ... but not when a good share of the votes is for the consensus class: ambiguous, not noisy
    soft_amb = torch.tensor([[0.6, 0, 0, 0.4, 0, 0, 0]] * 3)
    assert split_samples(cons, agr, soft_amb)[0].item() == HARD


def test_default_thresholds_judge_by_support_not_by_top_probability():
    # the clips agree on angry but spread their probability; the label (happy) gets little
    spread = torch.tensor([0.06, 0.12, 0.2, 0.32, 0.1, 0.1, 0.1])  # top class angry at only 0.32
    cons, agr = clip_agreement(torch.stack([spread] * 4)[None])
    assert split_samples(cons, agr, onehot([0])).item() == NOISY   # support 0.06 <= 0.15
    assert split_samples(cons, agr, onehot([1])).item() == NOISY   # 0.12
    assert split_samples(cons, agr, onehot([2])).item() == HARD    # 0.20: plausible enough
    assert split_samples(cons, agr, onehot([0]), confidence_threshold=0.5).item() == HARD
    cfg = RobustConfig()
    assert (cfg.confidence_threshold, cfg.support_threshold, cfg.agree_threshold) == (0.0, 0.15, 0.75)


def test_label_uar_is_balanced_accuracy_and_one_over_c_for_a_constant_model():
    target = onehot([0, 0, 0, 1, 2, 2])
    constant = torch.stack([peaked(0)] * 6)
    assert label_uar(constant, target) == pytest.approx(1 / 3)
    right = torch.stack([peaked(k) for k in (0, 0, 1, 1, 2, 2)])  # class 0: 2/3, 1: 1, 2: 1
    assert label_uar(right, target) == pytest.approx((2 / 3 + 1 + 1) / 3)


def test_a_pass_from_a_model_that_predicts_the_prior_changes_nothing():
    """A model that says 'class 0' for everything would call every other video noisy; the gate
    (min_label_uar) skips such a pass instead of down-weighting the minority classes."""
    labels = [0, 0, 0, 0, 1, 2, 3, 4]
    table = fake_table(labels)
    lr = RobustLearner(RobustConfig(enabled=True, momentum=0.0, truth=""), table, C)
    K, T = 4, 4
    fidx = np.tile(np.arange(T), (len(labels), K, 1))
    prior = np.tile(peaked(0).numpy(), (len(labels), K, 1))
    lr.update(prior, None, fidx, hard_labels=True)
    assert (lr.passes, lr.skipped) == (0, 1) and lr.last_label_uar == pytest.approx(1 / 5)
    idx = torch.arange(len(labels))
    soft, label = torch.from_numpy(table.soft_labels()), torch.tensor(labels)
    assert torch.equal(lr.adjust(idx, soft, label)[2], torch.ones(len(labels)))
    assert not lr.key_valid.any()
    # the same videos judged by a model that learned: the pass counts and flags the odd one out
    good = np.stack([np.tile(peaked(c if i != 7 else 5).numpy(), (K, 1)) for i, c in enumerate(labels)])
    lr.update(good, None, fidx, hard_labels=True)
    assert (lr.passes, lr.skipped) == (1, 1)
    assert lr.split.tolist() == [CLEAN] * 7 + [NOISY]
    row = lr.summary(1)
    assert (row["passes"], row["skipped"], row["noisy"]) == (1, 1, 1)


def test_consistent_but_unconfident_disagreement_is_hard_not_noisy():
    probs = torch.stack([peaked(3, 0.35)] * 4)[None]  # same top class, low confidence
    cons, agr = clip_agreement(probs)
    assert split_samples(cons, agr, onehot([0]), confidence_threshold=0.5).item() == HARD
    assert split_samples(cons, agr, onehot([0]), confidence_threshold=0.3, support_threshold=0.2).item() == NOISY


def test_weighting_policies_set_documented_weights_and_targets():
    split = torch.tensor([CLEAN, HARD, NOISY])
    w = sample_weights(split, hard_weight=2.0, noisy_weight=0.25, noisy_policy="downweight")
    assert w.tolist() == [1.0, 2.0, 0.25]
    w = sample_weights(split, hard_weight=1.5, noisy_policy="correct")
    assert w.tolist() == [1.0, 1.5, 1.0]
    soft = torch.tensor([[0.8, 0.2, 0, 0, 0, 0, 0]] * 3)
    label = torch.tensor([0, 0, 0])
    cons = torch.stack([peaked(0), peaked(5), peaked(3)])
    s, lab = corrected_targets(soft, label, cons, split, noisy_policy="correct", correct_mix=0.5)
    assert lab.tolist() == [0, 0, 3]
    assert torch.allclose(s[2], 0.5 * soft[2] + 0.5 * onehot(3)) and torch.equal(s[:2], soft[:2])
    assert torch.allclose(s.sum(1), torch.ones(3))
    s, lab = corrected_targets(soft, label, cons, split, noisy_policy="downweight")
    assert torch.equal(s, soft) and torch.equal(lab, label)


def _pass(n=6, K=4, T=4, n_frames=12):
    """probs making videos 0-1 clean, 2-3 hard (clips disagree), 4-5 noisy (all say class 5)."""
    rows = []
    for i in range(n):
        if i < 2:
            rows.append(torch.stack([peaked(0)] * K))
        elif i < 4:
            rows.append(torch.stack([peaked(k % C) for k in range(K)]))
        else:
            rows.append(torch.stack([peaked(5)] * K))
    probs = torch.stack(rows).numpy()
    fidx = np.stack([np.stack([np.sort(np.random.default_rng([i, k]).choice(n_frames, T, replace=False))
                               for k in range(K)]) for i in range(n)])
    return probs, None, fidx


def test_learner_adjust_applies_the_policy_after_warmup_only():
    table = fake_table([0] * 6)
    lr = RobustLearner(RobustConfig(enabled=True, hard_weight=2.0, noisy_weight=0.0, momentum=0.0), table, C, seed=0)
    idx = torch.arange(6)
    soft, label = torch.from_numpy(table.soft_labels()), torch.zeros(6, dtype=torch.int64)
    s, lab, w = lr.adjust(idx, soft, label)
    assert torch.equal(w, torch.ones(6)) and torch.equal(s, soft)  # warm-up: nothing changes
    lr.update(*_pass(), hard_labels=True)
    assert lr.split.tolist() == [CLEAN, CLEAN, HARD, HARD, NOISY, NOISY]
    _, _, w = lr.adjust(idx, soft, label)
    assert w.tolist() == [1.0, 1.0, 2.0, 2.0, 0.0, 0.0]
    # correct: noisy videos keep weight 1 but train toward the consensus class
    lr2 = RobustLearner(RobustConfig(enabled=True, noisy_policy="correct", momentum=0.0), table, C, seed=0)
    lr2.update(*_pass(), hard_labels=True)
    s, lab, w = lr2.adjust(idx[[0, 4]], soft[[0, 4]], label[[0, 4]])
    assert w.tolist() == [1.0, 1.0] and lab.tolist() == [0, 5]
    assert torch.equal(s[0], soft[0]) and torch.equal(s[1], onehot(5))


def test_mixed_clips_weigh_what_their_sources_weigh():
    """The composition train.py applies under MIDAS: w_mixed = λ w_i + (1 - λ) w_j."""
    from dfer.config import MixingConfig
    from dfer.mixing import BatchMixer

    table = fake_table([0] * 6)
    lr = RobustLearner(RobustConfig(enabled=True, hard_weight=2.0, noisy_weight=0.0, momentum=0.0), table, C)
    lr.update(*_pass(), hard_labels=True)
    idx = torch.arange(6)
    soft, label, w = lr.adjust(idx, torch.from_numpy(table.soft_labels()), torch.zeros(6, dtype=torch.int64))
    mixed = BatchMixer("midas-hard", MixingConfig(alpha=0.4), num_classes=C, generator=0)(torch.zeros(6, 2, 3, 4, 4), soft, label)
    wm = mixed.lam * w + (1 - mixed.lam) * w[mixed.partner]
    assert ((wm >= 0) & (wm <= 2)).all()
    expect = [mixed.lam[i] * w[i] + (1 - mixed.lam[i]) * w[mixed.partner[i]] for i in range(6)]
    assert torch.allclose(wm, torch.stack(expect))


def test_detection_scores():
    p, r = detection_scores(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert (p, r) == (0.5, 0.5)
    assert detection_scores(np.zeros(3, bool), np.zeros(3, bool)) == (None, None)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"robust\.noisy_policy must be downweight or correct, got 'drop'"):
        RobustConfig(noisy_policy="drop").validate()
    with pytest.raises(ConfigError, match=r"robust\.num_clips must be >= 2 \(agreement needs several clips\), got 1"):
        RobustConfig(num_clips=1).validate()
    cfg = from_dict(RunConfig, {"robust": {"enabled": True, "noisy_policy": "correct"}})
    assert cfg.robust.noisy_policy == "correct"


# ---------------------------------------------------------------------- key expression


def _planted_clip(n=40, key=range(25, 31), size=16, seed=0):
    """uint8 (n, 3, size, size) frames of noise; the key frames carry a bright red square."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(40, 90, size=(n, 3, size, size)).astype(np.float32)
    for t in key:
        frames[t, 0, 4:12, 4:12] = 250
    return torch.from_numpy(frames / 255.0)


class _RedDetector(torch.nn.Module):
    """Per-frame classifier: the redness of the frame's centre is evidence for class 1 (sad)."""

    def frame_logits(self, clip):
        red = clip[:, :, 0, 4:12, 4:12].mean((-1, -2)) - clip[:, :, 1].mean((-1, -2))  # (B, T)
        frames = torch.zeros(*red.shape, C)
        frames[..., 1] = 20 * red
        return frames.mean(1), frames


def test_resampler_puts_frames_where_the_planted_key_expression_is():
    n, T, K, key = 40, 4, 6, set(range(25, 31))
    frames = _planted_clip(n)
    table = fake_table([1], n_frames=n)
    cfg = RobustConfig(enabled=True, num_clips=K, momentum=0.0)
    lr = RobustLearner(cfg, table, C, seed=0)
    run = from_dict(RunConfig, {"data": {"num_frames": T}, "model": {"name": "tsm_resnet18"}})
    sampler = lr.train_sampler(run)
    g = torch.Generator().manual_seed(0)
    # K TSN clips scored by the model, as an agreement pass does
    from dfer.robust.keyframe import ClipSetSampler

    fidx = ClipSetSampler(T, K).sample(n, g)  # (K, T)
    _, flogits = _RedDetector().frame_logits(frames[torch.from_numpy(fidx)])
    fprobs = torch.softmax(flogits, -1)
    probs = fprobs.mean(1)  # (K, C)
    lr._n_frames[:] = n
    lr.update(probs[None].numpy(), fprobs[None].numpy(), fidx[None], hard_labels=True)
    scores = lr.key_scores[0, :n].numpy()
    assert set(np.argsort(-scores)[:3].tolist()) <= set(range(23, 33))  # interpolation blurs the edges a little
    rng = np.random.default_rng(1)
    draws = np.stack([sampler.sample(n, rng, index=0) for _ in range(400)])
    assert (np.diff(draws, axis=1) >= 0).all() and draws.min() >= 0 and draws.max() < n
    in_key = np.isin(draws, list(key)).mean()
    uniform = np.isin(np.stack([sampler.sample(n, rng) for _ in range(400)]), list(key)).mean()  # no index: TSN
    assert in_key > 0.55 and uniform < 0.25, (in_key, uniform)
    # picklable (DataLoader workers) and sharing the learner's scores
    clone = pickle.loads(pickle.dumps(sampler))
    assert np.array_equal(clone.sample(n, np.random.default_rng(5), index=0), sampler.sample(n, np.random.default_rng(5), index=0))


def test_key_distribution_and_stratified_draws():
    s = np.zeros(10, np.float32)
    s[7] = 1.0
    q = key_distribution(s, 10, temperature=0.1, uniform_share=0.3)
    e = np.exp(-10.0)
    assert q.sum() == pytest.approx(1.0) and q[0] == pytest.approx(0.03 + 0.7 * e / (1 + 9 * e))
    assert q[7] == pytest.approx(0.03 + 0.7 / (1 + 9 * e))
    d = stratified_draw(np.full(8, 1 / 8), 8, np.random.default_rng(0))
    assert d.tolist() == list(range(8))  # uniform q: exactly one frame per stratum
    # scores for unvisited frames are interpolated from the visited ones
    sc = frame_scores(np.array([0, 10]), np.array([0.0, 1.0]), 11, 64)
    assert np.allclose(sc, np.linspace(0, 1, 11))
    assert len(frame_scores(np.array([0, 99]), np.array([0.0, 1.0]), 100, 16)) == 16


def test_snippet_sampler_draws_consecutive_frames():
    scores = torch.zeros(1, 64)
    scores[0, 30:34] = 1.0
    s = KeyExpressionSampler(6, scores.share_memory_(), torch.ones(1, dtype=torch.bool), snippet=2)
    d = s.sample(64, np.random.default_rng(0), index=0)
    assert len(d) == 6 and (np.diff(d) >= 0).all()
    pairs = d.reshape(3, 2)
    assert ((pairs[:, 1] - pairs[:, 0]) <= 1).all()


# ---------------------------------------------------------------------- state


def test_state_dict_round_trip_reproduces_weights_and_sampling_exactly(tmp_path):
    table = fake_table([0] * 6)
    cfg = RobustConfig(enabled=True, momentum=0.5)
    a = RobustLearner(cfg, table, C, seed=0)
    p1 = _pass()
    a.update(*p1, hard_labels=True)
    save_file({f"robust.{k}": v.contiguous() for k, v in a.state_dict().items()}, str(tmp_path / "s.safetensors"))
    loaded = {k[len("robust."):]: v for k, v in load_file(str(tmp_path / "s.safetensors")).items()}
    b = RobustLearner(cfg, table, C, seed=0)
    b.load_state_dict(loaded)
    # a second pass on both (the EMA depends on the restored state) gives identical policies
    p2 = _pass()
    p2 = (np.roll(p2[0], 1, axis=0), None, p2[2])
    a.update(*p2, hard_labels=True)
    b.update(*p2, hard_labels=True)
    idx = torch.arange(6)
    soft, label = torch.from_numpy(table.soft_labels()), torch.zeros(6, dtype=torch.int64)
    for x, y in zip(a.adjust(idx, soft, label), b.adjust(idx, soft, label)):
        assert torch.equal(x, y)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    run = from_dict(RunConfig, {"data": {"num_frames": 4}})
    sa, sb = a.train_sampler(run), b.train_sampler(run)
    assert np.array_equal(sa.sample(12, np.random.default_rng(3), index=2), sb.sample(12, np.random.default_rng(3), index=2))


def test_epoch_end_writes_counts_and_truth_scores(tmp_path):
    table = fake_table([0] * 6)
    lr = RobustLearner(RobustConfig(enabled=True, momentum=0.0, truth=""), table, C)
    lr.truth = (np.array([0, 0, 0, 0, 1, 0], bool), np.array([0, 0, 1, 0, 0, 0], bool))
    lr.on_epoch_end(0, tmp_path)
    lr.update(*_pass(), hard_labels=True)
    lr.on_epoch_end(1, tmp_path)
    lr.on_epoch_end(1, tmp_path)  # rewriting an epoch (after a resume) replaces its row
    rows = list(csv.DictReader(open(tmp_path / "robust.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    last = rows[-1]
    assert (last["clean"], last["hard"], last["noisy"]) == ("2", "2", "2")
    assert float(last["noisy_precision"]) == 0.5 and float(last["noisy_recall"]) == 1.0
    assert float(last["hard_precision"]) == 0.5 and float(last["hard_recall"]) == 1.0
    samples = list(csv.DictReader(open(tmp_path / "robust_samples.csv")))
    assert [s["split"] for s in samples] == ["clean", "clean", "hard", "hard", "noisy", "noisy"]
    # support = the consensus's probability of the label the split compared with (hard: one-hot)
    expected = lr.consensus[torch.arange(6), lr.label0]
    assert [float(s["support"]) for s in samples] == pytest.approx(expected.tolist(), abs=1e-4)


def _log_of_two_epochs(path, row2: str = "2,1,0,0.6,4,1,1,0.8,0.9,0.5,1.0,0.5,1.0,1,1") -> bytes:
    from dfer.robust.learner import CSV_FIELDS

    data = (",".join(CSV_FIELDS) + "\r\n1,0,0,,0,0,0,,1.0,,,,,,\r\n" + row2 + "\r\n").encode()
    path.write_bytes(data)
    return data


def test_an_earlier_robust_csv_is_kept_up_to_the_epochs_done(tmp_path):
    from dfer.robust.learner import read_robust_log

    path = tmp_path / "robust.csv"
    _log_of_two_epochs(path)
    assert [r["epoch"] for r in read_robust_log(path, 2, 6)] == ["1", "2"]
    assert [r["epoch"] for r in read_robust_log(path, 1, 6)] == ["1"]  # a later epoch, left by a kill
    lr = RobustLearner(RobustConfig(enabled=True, truth=""), fake_table([0] * 6), C)
    lr.on_epoch_end(1, tmp_path)  # the second epoch again, after a resume: its row replaced
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["label_uar"] == "" and rows[1]["clean"] == "0"


@pytest.mark.parametrize("row2, line_field", [
    ("2,1,0,0.6,4,1,1,0.8,0.9,0.5,1.0,0.5,1.0,1", ":3: 14 cells, expected 15"),
    ("two,1,0,0.6,4,1,1,0.8,0.9,0.5,1.0,0.5,1.0,1,1", ":3: epoch 'two' is not an integer"),
    ("2,1,0,high,4,1,1,0.8,0.9,0.5,1.0,0.5,1.0,1,1", ":3: label_uar 'high' is not a number"),
    ("2,1,0,1.5,4,1,1,0.8,0.9,0.5,1.0,0.5,1.0,1,1", ":3: label_uar '1.5' is not a number in [0, 1]"),
    ("2,1,0,0.6,4,1,1,nan,0.9,0.5,1.0,0.5,1.0,1,1", ":3: mean_agreement 'nan' is not a finite number"),
    ("2,1,0,0.6,4,1,1,0.8,inf,0.5,1.0,0.5,1.0,1,1", ":3: mean_weight 'inf' is not a finite number"),
    ("2,1,0,0.6,-4,1,1,0.8,0.9,0.5,1.0,0.5,1.0,1,1", ":3: clean '-4' is not a whole number in [0, 6]"),
    ("2,1,0,0.6,4,1,7,0.8,0.9,0.5,1.0,0.5,1.0,1,1", ":3: noisy '7' is not a whole number in [0, 6]"),
    ("2,1.5,0,0.6,4,1,1,0.8,0.9,0.5,1.0,0.5,1.0,1,1", ":3: passes '1.5' is not a whole number in [0, inf]"),
    ("2,1,0,0.6,4,1,1,0.8,0.9,0.5,-0.1,0.5,1.0,1,1", ":3: noisy_recall '-0.1' is not a number in [0, 1]"),
], ids=["cells", "epoch", "word", "uar", "nan", "inf", "negative", "more-than-the-clips", "half-pass", "recall"])
def test_a_damaged_robust_csv_is_one_line_naming_its_line_and_field_and_is_left_as_it_is(row2, line_field, tmp_path):
    path = tmp_path / "robust.csv"
    data = _log_of_two_epochs(path, row2)
    lr = RobustLearner(RobustConfig(enabled=True, truth=""), fake_table([0] * 6), C)
    with pytest.raises(ConfigError) as e:
        lr.on_epoch_end(2, tmp_path)
    message = str(e.value)
    assert message.startswith(f"{path}{line_field}") and "delete it to resume without the earlier rows" in message
    assert "\n" not in message and path.read_bytes() == data


@pytest.mark.parametrize("data, message", [
    (b"epoch,passes\r\n1,0\r\n", ":1: the header is 'epoch,passes'"),
    (b"\xff\xfe\x00", ":1: not UTF-8 text"),
    (b"", ": empty, but the checkpoint is after epoch 2"),
])
def test_a_robust_csv_that_is_not_dfers_is_refused(data, message, tmp_path):
    from dfer.robust.learner import read_robust_log

    path = tmp_path / "robust.csv"
    path.write_bytes(data + b"\n" if data else data)
    with pytest.raises(ConfigError, match=re.escape(f"{path}{message}")):
        read_robust_log(path, 2, 6)
    assert path.read_bytes() == (data + b"\n" if data else data)


@pytest.mark.slow
def test_training_with_robust_learning_resumes_exactly(synthetic_dfew, tmp_path, monkeypatch):
    """An interrupted robust run, resumed, ends with the uninterrupted run's weights and state."""
    import dfer.train as train_mod
    from dfer.train import train

    def cfg(name):
        return from_dict(RunConfig, {
            "name": name, "out_dir": str(tmp_path), "seed": 1, "label_mode": "midas-hard",
            "data": {"source": {"kind": "dfew", "root": str(synthetic_dfew), "fold": 1}, "num_frames": 4,
                     "size": 32, "num_workers": 0, "scales": [1.0]},
            "model": {"name": "rdfer_resnet18", "kwargs": {"hidden_size": 32}},
            "optim": {"epochs": 3, "batch_size": 8, "lr": 0.01, "precision": "fp32"},
            # min_label_uar 0: every pass counts, whatever three epochs taught (this tests resume)
            "robust": {"enabled": True, "warmup_epochs": 1, "num_clips": 2, "min_label_uar": 0.0},
            "eval": {"batch_size": 16}, "tensorboard": False, "progress": False}).validate()

    full = train(cfg("full"))
    real = train_mod.lr_at
    calls = {"n": 0}

    def interrupting(step, *a, **k):
        calls["n"] += 1
        if step == 12:  # inside epoch 3, after the epoch-2 checkpoint
            raise KeyboardInterrupt
        return real(step, *a, **k)

    monkeypatch.setattr(train_mod, "lr_at", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(cfg("cut"))
    monkeypatch.setattr(train_mod, "lr_at", real)
    cut = train(cfg("cut"))
    a = load_file(str(full / "checkpoints" / "last.safetensors"))
    b = load_file(str(cut / "checkpoints" / "last.safetensors"))
    keys = [k for k in a if k.startswith(("model.", "robust."))]
    assert any(k.startswith("robust.") for k in keys)
    for k in keys:
        assert torch.equal(a[k], b[k]), k
    rows = list(csv.DictReader(open(cut / "robust.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and rows[0]["passes"] == "0" and rows[-1]["passes"] == "2"


@pytest.mark.slow
def test_resuming_with_a_damaged_robust_csv_stops_before_training(synthetic_dfew, tmp_path):
    """The rows of robust.csv are kept at the end of the next epoch; a damaged file is found
    when the run resumes, not after an epoch of training, and nothing is written."""
    import json

    from dfer.train import train

    cfg = from_dict(RunConfig, {
        "name": "run", "out_dir": str(tmp_path), "seed": 1, "label_mode": "soft",
        "data": {"source": {"kind": "dfew", "root": str(synthetic_dfew), "fold": 1}, "num_frames": 2,
                 "size": 32, "num_workers": 0, "scales": [1.0]},
        "optim": {"epochs": 3, "batch_size": 8, "lr": 0.01, "precision": "fp32"},
        "robust": {"enabled": True, "warmup_epochs": 1, "num_clips": 2, "min_label_uar": 0.0},
        "eval": {"batch_size": 16}, "tensorboard": False, "progress": False, "threads": 1}).validate()
    run = train(cfg, stop_after_epochs=1)
    log = run / "robust.csv"
    damaged = log.read_text().replace("\n1,0,0,", "\n1,-1,0,")  # epoch 1: -1 passes
    log.write_text(damaged)
    before = {p: p.read_bytes() for p in (run / "metrics.csv", run / "checkpoints" / "last.safetensors")}
    with pytest.raises(ConfigError, match=re.escape(f"{log}:2: passes '-1' is not a whole number")):
        train(cfg)
    assert log.read_text() == damaged and all(p.read_bytes() == b for p, b in before.items())
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] == 1

