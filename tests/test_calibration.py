"""How logits become the answer: the prior correction, the temperature, flip test-time
augmentation, and the shipped file's rule as predict and evaluate read it."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dfer.calibration import Answering, OutputRule, adjust_logits, answering, class_prior, cross_entropy, \
    fit_temperature
from dfer.cli import main
from dfer.metrics import reliability_curve
from test_pretrained import _with_metadata

ROOT = Path(__file__).resolve().parents[1]
FERPLUS_FIXTURE = ROOT / "tests" / "data" / "ferplus"
FACE = FERPLUS_FIXTURE / "FER2013Valid"


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def test_the_prior_is_the_mean_target_and_every_class_must_be_targeted():
    votes = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.5, 0.25, 0.25]])
    np.testing.assert_allclose(class_prior(votes), votes.mean(0))
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] are never targeted"):
        class_prior(np.array([[1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="summing to 1"):
        class_prior(np.array([[0.7, 0.7]]))


def test_a_full_prior_correction_is_bayes_rule_for_balanced_classes():
    """softmax(z - log prior) = p(y|x) / prior(y), renormalised: the posterior under equal priors."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 5)) * 3
    prior = rng.dirichlet(np.ones(5))
    got = torch.softmax(adjust_logits(torch.tensor(z), torch.tensor(prior).log(), 1.0), -1).numpy()
    ref = _softmax(z) / prior
    np.testing.assert_allclose(got, ref / ref.sum(1, keepdims=True), rtol=1e-10)
    # no correction changes nothing; a uniform prior changes no answer at any strength
    assert torch.equal(adjust_logits(torch.tensor(z), torch.tensor(prior).log(), 0.0), torch.tensor(z))
    flat = adjust_logits(torch.tensor(z), torch.full((5,), 0.2).log(), 0.7).numpy()
    np.testing.assert_allclose(_softmax(flat), _softmax(z), rtol=1e-10)


def test_a_stronger_correction_answers_the_rare_class_more_often():
    rng = np.random.default_rng(1)
    z = torch.tensor(rng.normal(size=(2000, 3)))
    log_prior = torch.tensor([0.6, 0.3, 0.1]).log()
    counts = [int((adjust_logits(z, log_prior, tau).argmax(1) == 2).sum()) for tau in (0.0, 0.5, 1.0, 2.0)]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_cross_entropy_matches_torch_with_soft_targets():
    rng = np.random.default_rng(2)
    z, t = rng.normal(size=(40, 6)) * 4, rng.dirichlet(np.ones(6), size=40)
    ref = torch.nn.functional.cross_entropy(torch.tensor(z) / 1.7, torch.tensor(t)).item()
    assert cross_entropy(z, t, 1.7) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("true_t", [0.4, 1.0, 2.5])
def test_the_fitted_temperature_recovers_the_one_that_made_the_targets(true_t):
    """Targets drawn as softmax(z / T0): the cross-entropy is smallest at T0 (Gibbs)."""
    z = np.random.default_rng(3).normal(size=(300, 8)) * 3
    assert fit_temperature(z, _softmax(z / true_t)) == pytest.approx(true_t, rel=1e-3)


def test_reliability_against_one_hot_votes_is_reliability_against_the_labels():
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(4), size=200)
    y = rng.integers(0, 4, 200)
    a, b = reliability_curve(p, y), reliability_curve(p, None, soft_labels=np.eye(4)[y])
    np.testing.assert_array_equal(a["counts"], b["counts"])
    np.testing.assert_allclose(a["accuracy"], b["accuracy"])
    assert a["ece"] == pytest.approx(b["ece"])
    # against votes, a bin's "accuracy" is the mean vote share of the top class
    votes = rng.dirichlet(np.ones(4), size=200)
    c = reliability_curve(p, None, soft_labels=votes)
    share = votes[np.arange(200), p.argmax(1)]
    assert np.nansum(c["accuracy"] * c["counts"]) == pytest.approx(share.sum())


class _Linear(torch.nn.Module):
    """Logits that see left from right: the mean over a clip's frames of a weighted image sum."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)))

    def forward(self, clip):
        return torch.einsum("btchw,kchw->bk", clip, self.w) / clip.shape[1]


def test_answering_applies_flip_then_the_correction_then_the_temperature():
    model, x = _Linear(), torch.randn(4, 2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    prior = (0.7, 0.2, 0.1)
    rule = OutputRule(prior=prior, prior_correction=0.5, temperature=2.0, tta="flip")
    got = Answering(model, rule)(x)
    ref = ((model(x) + model(x.flip(-1))) / 2 - 0.5 * torch.tensor(prior).log()) / 2.0
    torch.testing.assert_close(got, ref)
    assert not torch.allclose(model(x), model(x.flip(-1)))  # the mirror really is another input
    assert answering(model, OutputRule(prior=prior)) is model  # nothing to apply: the model itself
    # the prior follows the logits to their device and dtype
    z = adjust_logits(torch.zeros(2, 3, dtype=torch.float64), torch.tensor(prior).log(), 1.0)
    assert z.dtype == torch.float64 and torch.allclose(z[0], -torch.tensor(prior, dtype=torch.float64).log())
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        wrapped = Answering(model, rule).cuda()
        assert wrapped(x.cuda()).device.type == "cuda"


@pytest.mark.parametrize("kwargs, message", [
    ({"prior_correction": 0.5}, "needs the training class prior"),
    ({"prior": (0.5, 0.5), "prior_correction": 3.0}, r"prior_correction must be in \[0, 2\]"),
    ({"temperature": 0.0}, r"temperature must be in \(0, 100\]"),
    ({"tta": "five-crop"}, "tta must be one of none, flip"),
    ({"prior": (0.5, 0.6)}, "summing to 1"), ({"prior": (1.0, 0.0)}, "positive"),
])
def test_an_impossible_rule_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OutputRule(**kwargs)


# ---------------------------------------------------------------------------- the shipped file's rule
PRIOR8 = [0.32, 0.26, 0.12, 0.14, 0.08, 0.02, 0.04, 0.02]


def test_the_files_rule_is_applied_and_the_command_line_overrides_it(tmp_path, monkeypatch):
    from dfer.predict import load_model

    monkeypatch.setenv("DFER_PRETRAINED", str(_with_metadata(tmp_path / "m.safetensors", prior=PRIOR8,
                                                            prior_correction=0.5, tta="flip")))
    x = torch.rand(2, 1, 3, 64, 64)
    plain = load_model(pretrained=True, device="cpu", prior_correction=0.0, tta="none")
    assert plain.rule.is_identity and not isinstance(plain.model, Answering)
    own = load_model(pretrained=True, device="cpu")
    assert own.rule == OutputRule(prior=tuple(PRIOR8), prior_correction=0.5, tta="flip")
    assert own.source["answer"]["prior_correction"] == 0.5
    with torch.inference_mode():
        ref = (plain.model(x) + plain.model(x.flip(-1))) / 2 - 0.5 * torch.tensor(PRIOR8).log()
        torch.testing.assert_close(own.model(x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("changes, message", [
    ({"prior": PRIOR8[:7]}, "prior .* is not one positive number per class, summing to 1"),
    ({"prior": [0.5] * 8}, "prior .* is not one positive number per class"),
    ({"prior": PRIOR8, "prior_correction": -1}, r"prior_correction -1 is not in \[0, 2\], with a prior"),
    ({"prior": None, "prior_correction": 0.5}, r"prior_correction 0.5 is not in \[0, 2\], with a prior"),
    ({"temperature": 0}, r"temperature 0 is not in \(0, 100\]"),
    ({"tta": "ten-crop"}, "tta 'ten-crop' is not one of none, flip"),
])
def test_a_bad_rule_in_the_files_metadata_is_named(changes, message, tmp_path, monkeypatch, capsys):
    path = _with_metadata(tmp_path / "m.safetensors", **changes)
    monkeypatch.setenv("DFER_PRETRAINED", str(path))
    out = tmp_path / "out"
    assert main(["predict", str(next(FACE.glob("*.png"))), "--aligned", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is damaged ({path}: " in err[0] and re.search(message, err[0]), err
    assert not out.exists()


def test_a_correction_without_a_recorded_prior_or_for_a_run_is_one_line(tmp_path, monkeypatch, capsys):
    path = _with_metadata(tmp_path / "m.safetensors", prior=None, prior_correction=0.0)  # an older dfer's: no prior
    monkeypatch.setenv("DFER_PRETRAINED", str(path))
    out = tmp_path / "out"
    assert main(["predict", str(next(FACE.glob("*.png"))), "--aligned", "--prior-correction", "0.5",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the class prior of the model's training data" in err[0]
    assert main(["evaluate", str(tmp_path), "--tta", "flip"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--prior-correction and --tta go with --pretrained" in err[0]
    assert main(["predict", str(next(FACE.glob("*.png"))), "--aligned", "--prior-correction", "5"]) == 2
    assert "--prior-correction" in capsys.readouterr().err


def test_evaluate_reports_the_rule_it_answered_with(tmp_path, monkeypatch):
    monkeypatch.setenv("DFER_PRETRAINED", str(_with_metadata(tmp_path / "m.safetensors", prior=PRIOR8, tta="none")))
    runs = {}
    for name, extra in (("plain", []), ("flip", ["--tta", "flip", "--prior-correction", "1.0"])):
        out = tmp_path / name
        assert main(["evaluate", "--pretrained", "--source", f"ferplus:{FERPLUS_FIXTURE}", "--split", "val",
                     "--workers", "0", "--out", str(out), *extra]) == 0
        runs[name] = json.loads((out / "results.json").read_text())
    assert runs["plain"]["model"]["answer"]["tta"] == "none"
    assert runs["flip"]["model"]["answer"] == {"prior_correction": 1.0, "temperature": 1.0, "tta": "flip",
                                               "prior": PRIOR8}
    assert runs["plain"]["kl_to_votes"] != runs["flip"]["kl_to_votes"]


def test_export_records_the_prior_of_the_training_targets(tmp_path):
    """The prior of a FER+ run is the mean vote distribution of its training faces, read here
    from label.csv by hand (FER+'s eight emotion columns; faces whose most votes are unknown or
    not-a-face left out, as the corpus reader does)."""
    from dfer.config import DataConfig, RunConfig, SourceConfig
    from dfer.pretrained.export import training_prior

    cfg = RunConfig(data=DataConfig(source=SourceConfig(kind="ferplus", root=str(FERPLUS_FIXTURE),
                                                        train_split="train", test_split="val", fold=None),
                                    classes="ferplus8", ties="first"))
    rows = []
    with open(FERPLUS_FIXTURE / "FER2013Train" / "label.csv", newline="") as f:
        for row in csv.reader(f):
            counts = np.array([float(v) for v in row[2:12]])
            if counts[:8].max() >= counts[8:].max() and counts[:8].sum() > 0:
                rows.append(counts[:8] / counts[:8].sum())
    np.testing.assert_allclose(training_prior(cfg), np.mean(rows, 0), rtol=1e-6)
