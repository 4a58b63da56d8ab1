"""benchmarks/acted_cv.py and acted_zero_shot.py: the table's arithmetic and the clip rules,
against hand-computed answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import load_benchmark
from dfer.config import load_config


@pytest.fixture(scope="module")
def cv():
    return load_benchmark("acted_cv")


@pytest.fixture(scope="module")
def zs():
    return load_benchmark("acted_zero_shot")


def test_a_row_is_the_mean_and_sample_std_over_folds_and_the_pooled_neutral_calls(cv, tmp_path):
    classes = ["neutral", "happy", "sad"]
    confusions = [[[4, 0, 0], [2, 2, 0], [1, 0, 3]],   # fold 1: 3 non-neutral clips called neutral
                  [[2, 2, 0], [0, 4, 0], [0, 0, 4]]]   # fold 2: none
    for k, (conf, uar) in enumerate(zip(confusions, [0.75, 5 / 6]), start=1):
        (tmp_path / f"fold{k}").mkdir()
        (tmp_path / f"fold{k}" / "results.json").write_text(json.dumps(
            {"classes": classes, "confusion_matrix": conf, "uar": uar, "war": uar}))
    row = cv.read_row(tmp_path)
    assert row["folds"] == 2 and row["uar_mean"] == pytest.approx((0.75 + 5 / 6) / 2)
    assert row["uar_std"] == pytest.approx(np.std([0.75, 5 / 6], ddof=1))
    assert (row["emotional_called_neutral"], row["emotional"]) == (3, 16)
    assert row["recall"] == pytest.approx({"neutral": 6 / 8, "happy": 6 / 8, "sad": 7 / 8})
    assert "| 79.2 ± 5.9 |" in cv.markdown({"frames": row})


def test_every_row_is_the_recipe_with_its_overrides(cv):
    for name, (_, overrides) in cv.ROWS.items():
        cfg = load_config(cv.CONFIG, ["data.source.root=x", *overrides])  # each row's settings are valid
        assert cfg.data.source.options == {"folds": 4} and cfg.optim.epochs == 12
    assert load_config(cv.CONFIG, cv.ROWS["tsm"][1]).model.kwargs == {"shift_div": 8}
    assert load_config(cv.CONFIG, cv.ROWS["scratch"][1]).model.pretrained is False


def test_the_default_rule_is_what_dfer_predict_does(zs):
    """Two 2-s windows of 8 frames at 30 fps: logits averaged in a window, probabilities over windows."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 4))
    got = zs.clip_answer(z, 30.0, zs.Rule(), np.zeros(4))
    from dfer.predict import plan_windows

    plan = plan_windows(120, 60, 60, 8)
    want = np.mean([zs.softmax(z[i].mean(0)) for i in plan.indices], axis=0)
    np.testing.assert_allclose(got, want / want.sum())
    # a prior correction of 1 is the logits minus the log prior
    prior = np.log(np.array([0.5, 0.25, 0.125, 0.125]))
    np.testing.assert_allclose(zs.clip_answer(z, 30.0, zs.Rule(prior=1.0), prior),
                               zs.clip_answer(z - prior, 30.0, zs.Rule(), np.zeros(4)))
