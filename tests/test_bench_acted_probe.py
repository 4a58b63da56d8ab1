"""benchmarks/acted_linear_probe.py, which refits the shipped model's classifier: its fit
reaches the optimum of its loss, the acted term pulls the way it should, a clip's answer is
the mean of its windows' distributions (flip as the head of the mean feature), and the file
it writes is the shipped one with only the classifier changed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import load_benchmark

bench = load_benchmark("acted_linear_probe")


def _problem(seed: int = 0, n: int = 400, d: int = 16, k: int = 5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    truth = torch.randn(k, d, generator=g)
    votes = torch.softmax(x @ truth.T + 0.5 * torch.randn(n, k, generator=g), 1)
    act_x = torch.randn(60, d, generator=g)
    act_y = torch.randint(0, k, (60,), generator=g)
    w0, b0 = 0.1 * torch.randn(k, d, generator=g), torch.zeros(k)
    return x, votes, act_x, act_y, w0, b0


def _loss(W, b, x, votes, act_x, act_y, weight, decay, w0):
    loss = -(votes * F.log_softmax(x @ W.T + b, 1)).sum(1).mean() + decay * ((W - w0) ** 2).sum()
    return loss + weight * F.cross_entropy(act_x @ W.T + b, act_y) if weight > 0 else loss


@pytest.mark.parametrize("weight, decay", [(0.0, 0.0), (0.3, 1e-3), (3.0, 1e-2)])
def test_the_fit_is_the_minimum_of_its_loss(weight, decay):
    """Convex loss: at the fit its gradient vanishes and it is below the starting point's."""
    x, votes, act_x, act_y, w0, b0 = _problem()
    W, b = bench.fit_head(w0, b0, x, votes, act_x, act_y, weight, decay, steps=200)
    W.requires_grad_(True), b.requires_grad_(True)
    loss = _loss(W, b, x, votes, act_x, act_y, weight, decay, w0)
    gW, gb = torch.autograd.grad(loss, [W, b])
    assert torch.cat([gW.flatten(), gb]).norm() < 1e-3
    assert loss < _loss(w0, b0, x, votes, act_x, act_y, weight, decay, w0)


def test_a_larger_acted_weight_fits_the_acted_labels_better_and_the_votes_worse():
    x, votes, act_x, act_y, w0, b0 = _problem(1)
    acted, ferplus = [], []
    for weight in (0.0, 0.3, 3.0):
        W, b = bench.fit_head(w0, b0, x, votes, act_x, act_y, weight, 1e-3, steps=200)
        acted.append(float(F.cross_entropy(act_x @ W.T + b, act_y)))
        ferplus.append(float(-(votes * F.log_softmax(x @ W.T + b, 1)).sum(1).mean()))
    assert acted[0] > acted[1] > acted[2]
    assert ferplus[0] < ferplus[1] < ferplus[2]


def test_without_ferplus_only_the_acted_windows_are_fitted():
    x, votes, act_x, act_y, w0, b0 = _problem(2)
    W, b = bench.fit_head(w0, b0, x * 0, votes, act_x, act_y, 1.0, 0.0, use_ferplus=False, steps=200)
    V, c = bench.fit_head(w0, b0, x, votes, act_x, act_y, 1.0, 0.0, use_ferplus=False, steps=200)
    torch.testing.assert_close(W, V)  # what FER+ holds makes no difference
    torch.testing.assert_close(b, c)


def test_a_clips_answer_is_the_mean_of_its_windows_distributions_over_the_corpus_classes():
    g = torch.Generator().manual_seed(3)
    W, b = torch.randn(4, 6, generator=g), torch.randn(4, generator=g)
    windows = [torch.randn(3, 2, 6, generator=g), torch.randn(1, 2, 6, generator=g)]
    index = [2, 0, 3]  # the corpus's classes in the model's; class 1 is not the corpus's
    got = bench.clip_answers(W, b, windows, index)
    for clip, w in zip(got, windows):
        per_window = []
        for view, mirror in w:  # flip: the mean of the two views' logits = the head of the mean feature
            logits = ((view @ W.T + b) + (mirror @ W.T + b)) / 2
            per_window.append(torch.softmax(logits[index], 0))
        np.testing.assert_allclose(clip, torch.stack(per_window).mean(0).numpy(), rtol=1e-5, atol=1e-6)
        assert clip.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("n, window, first, count", [(113, 50, [0, 7, 14, 21, 28, 35, 42, 49], 2),
                                                     (50, 50, [0, 7, 14, 21, 28, 35, 42, 49], 1),
                                                     (20, 50, [0, 3, 5, 8, 11, 14, 16, 19], 1),
                                                     (1, 50, [0] * 8, 1), (0, 50, None, 0)])
def test_windows_are_consecutive_stretches_of_eight_evenly_spaced_frames(n, window, first, count):
    picks = bench.window_picks(n, window)
    assert len(picks) == count and (count == 0 or picks[0].tolist() == first)
    for i, p in enumerate(picks):
        assert p.min() >= i * window and p.max() <= min(n, (i + 1) * window) - 1 and len(p) == 8


def test_scores_count_the_non_neutral_clips_called_neutral():
    classes = ["neutral", "happy", "sad"]
    labels = np.array([0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 0, 0, 2]]
    s = bench.acted_scores(probs, labels, classes)
    assert s["called_neutral"] == [2, 4]
    assert s["recall"] == {"neutral": 1.0, "happy": 0.5, "sad": 0.5}
    assert s["uar"] == pytest.approx(2 / 3)


def test_the_written_file_is_the_shipped_one_with_only_the_classifier_changed(tmp_path, monkeypatch):
    from safetensors import safe_open

    from dfer.predict import load_model
    from dfer.pretrained import read_pretrained, weights_path

    state, meta = read_pretrained()
    W = torch.randn_like(state["classifier.weight"])
    b = torch.randn_like(state["classifier.bias"])
    out = tmp_path / "refit.safetensors"
    args = SimpleNamespace(weights=None, frames=str(tmp_path / "frames"), decay=1e-3)
    bench._write(str(out), W, b, 0.1, args, "every actor", {"war": 0.5, "split": "val"})
    new, new_meta = read_pretrained(out)
    assert new.keys() == state.keys()
    for k, v in state.items():
        want = {"classifier.weight": W.half().float(), "classifier.bias": b.half().float()}.get(k, v)
        torch.testing.assert_close(new[k], want, rtol=0, atol=0)  # the trunk (and its counters) as it was
    with safe_open(str(out), framework="pt") as f, safe_open(str(weights_path()), framework="pt") as g:
        assert f.get_tensor("classifier.weight").dtype == g.get_tensor("classifier.weight").dtype
    kept = {k: v for k, v in meta.items() if k not in ("trained_by", "metrics")}
    assert {k: v for k, v in new_meta.items() if k not in ("trained_by", "metrics")} == kept
    assert new_meta["metrics"] == {"war": 0.5, "split": "val"}
    assert "classifier refitted" in new_meta["trained_by"] and "frames (acted weight 0.1" in new_meta["trained_by"]
    assert str(tmp_path) not in json.dumps(new_meta)  # no path of the machine it was made on
    monkeypatch.setenv("DFER_PRETRAINED", str(out))
    bundle = load_model(pretrained=True, device="cpu", tta="none")
    x = torch.randn(2, 1, 3, bundle.size, bundle.size)
    with torch.inference_mode():
        torch.testing.assert_close(bundle.model(x), bundle.model.features(x) @ W.half().float().T + b.half().float(),
                                   rtol=1e-4, atol=1e-4)
