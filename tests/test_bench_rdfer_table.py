"""benchmarks/rdfer_table.py writes the run configs the README's RDFER tables were measured with."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dfer.config import RunConfig, from_dict
from dfer.errors import ConfigError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rdfer_table.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("rdfer_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_robust_settings_reach_the_run_config(bench, tmp_path):
    a = bench.parse_args(["--hard-weight", "1", "--robust", "support_threshold=0.25", "noisy_policy=correct",
                          "momentum=0.9"])
    cfg = from_dict(RunConfig, bench.run_config(tmp_path, tmp_path, "r", "rdfer_resnet18", "hard", True, a)).validate()
    r = cfg.robust
    assert (r.enabled, r.hard_weight, r.support_threshold, r.noisy_policy, r.momentum) == (True, 1.0, 0.25, "correct", 0.9)
    assert r.noisy_weight == 0.1  # untouched settings keep RobustConfig's defaults
    # the baseline rows get no robust section at all
    plain = from_dict(RunConfig, bench.run_config(tmp_path, tmp_path, "t", "tsm_resnet18", "hard", False, a))
    assert not plain.robust.enabled


def test_a_misspelt_robust_setting_is_an_error(bench, tmp_path, capsys):
    a = bench.parse_args(["--robust", "suport_threshold=0.25"])
    with pytest.raises(ConfigError, match="suport_threshold"):
        from_dict(RunConfig, bench.run_config(tmp_path, tmp_path, "r", "rdfer_resnet18", "hard", True, a))
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["--robust", "momentum"])
    assert e.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err
