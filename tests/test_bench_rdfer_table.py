"""benchmarks/rdfer_table.py writes the run configs the README's RDFER tables were measured with."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_benchmark
from dfer.config import RunConfig, from_dict
from dfer.errors import ConfigError



@pytest.fixture(scope="module")
def bench():
    return load_benchmark("rdfer_table")


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


def _saved_corpus(root: Path, **fields) -> None:
    import dataclasses
    import json

    from dfer.data.corpora.synthetic import GENERATOR, SynthConfig

    root.mkdir(parents=True)
    d = {**dataclasses.asdict(SynthConfig(**fields)), "generator": GENERATOR}
    (root / "synthetic_config.json").write_text(json.dumps(d))


def test_a_corpus_written_with_other_settings_is_not_reused(bench, tmp_path, capsys):
    from dfer.data.corpora.synthetic import SynthConfig

    root = tmp_path / "corpus_noise0.2"
    _saved_corpus(root, num_clips=1000, num_frames=12, size=32, seed=1, label_noise=0.2, hard_fraction=0.15,
                  nuisance=0.0, workers=2)
    same = SynthConfig(num_clips=1000, num_frames=12, size=32, seed=1, label_noise=0.2, hard_fraction=0.15,
                       nuisance=0.0, workers=1)
    assert bench.corpus_mismatch(root, same) == ""  # the worker count does not change the files
    other = SynthConfig(num_clips=1000, num_frames=12, size=32, seed=2, label_noise=0.2, hard_fraction=0.15,
                        nuisance=0.0)
    assert bench.corpus_mismatch(root, other) == "seed=1 (asked: 2)"
    # main() stops before training anything, exit 2, naming the corpus and the setting
    assert bench.main(["--out", str(tmp_path), "--seed", "2", "--noise", "0.2"]) == 2
    err = capsys.readouterr().err
    assert str(root) in err and "seed=1 (asked: 2)" in err


def test_an_older_corpus_file_without_a_field_reads_as_its_default(bench, tmp_path):
    import json

    from dfer.data.corpora.synthetic import SynthConfig

    root = tmp_path / "c"
    _saved_corpus(root, seed=3)
    d = json.loads((root / "synthetic_config.json").read_text())
    del d["nuisance"]  # written before SynthConfig.nuisance existed: those corpora had nuisance 1
    (root / "synthetic_config.json").write_text(json.dumps(d))
    assert bench.corpus_mismatch(root, SynthConfig(seed=3)) == ""
    assert "nuisance=1.0 (asked: 0.0)" in bench.corpus_mismatch(root, SynthConfig(seed=3, nuisance=0.0))
    # a corpus drawn by an older generator (no "generator" key: 1) is not the corpus asked for
    del d["generator"]
    (root / "synthetic_config.json").write_text(json.dumps(d))
    assert bench.corpus_mismatch(root, SynthConfig(seed=3)).startswith("generator=1 (this dfer: ")


def _finished_run(bench, tmp_path, a, chash: str | None = None) -> Path:
    """A run directory as train() leaves it, with a checkpoint stamped with ``chash`` (default: the config's)."""
    import json

    import torch
    from safetensors.torch import save_file

    from dfer.config import config_hash

    name = "rdfer_hard_noise0.2"
    cfg = from_dict(RunConfig, bench.run_config(tmp_path, tmp_path / "runs", name, "rdfer_resnet18", "hard", True, a))
    run = tmp_path / "runs" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n")  # train writes its config first
    state = {"epoch": 30, "config_hash": chash or config_hash(cfg), "finished": True}
    save_file({"x": torch.zeros(1)}, str(run / "checkpoints" / "last.safetensors"),
              metadata={"dfer_state": json.dumps(state)})
    (run / "results.json").write_text(json.dumps({"uar": 0.5, "war": 0.6}))
    (run / "metrics.csv").write_text("epoch,epoch_s\n1,10.0\n2,12.5\n")
    from dfer.robust.learner import CSV_FIELDS

    # epoch,passes,skipped,label_uar,clean,hard,noisy,mean_agreement,mean_weight,noisy_precision,noisy_recall,
    # hard_precision,hard_recall,truth_noisy,truth_hard: as RobustLearner.on_epoch_end writes it
    (run / "robust.csv").write_text(",".join(CSV_FIELDS) + "\r\n1,1,0,0.5,1,1,1,0.9,1,0.1,0.1,0.1,0.1,1,1\r\n"
                                    "2,2,0,0.6,600,50,123,0.8,0.9,0.79,0.76,0.3,0.4,128,100\r\n")
    return run


def test_skip_done_reads_a_finished_run_of_the_same_config(bench, tmp_path):
    a = bench.parse_args(["--skip-done", "--epochs", "30"])
    _finished_run(bench, tmp_path, a)
    row = bench._run_one((tmp_path, tmp_path, 0.2, "rdfer", "hard", a))
    assert (row["uar"], row["war"], row["train_seconds"]) == (0.5, 0.6, 22.5)
    assert (row["noisy_precision"], row["noisy_recall"], row["noisy"]) == (0.79, 0.76, 123.0)  # the last pass


def test_skip_done_refuses_a_run_made_with_other_settings(bench, tmp_path):
    a = bench.parse_args(["--skip-done", "--epochs", "30"])
    _finished_run(bench, tmp_path, a, chash="0123456789abcdef")  # e.g. trained with --hard-weight 1
    with pytest.raises(ConfigError, match="different config"):
        bench._run_one((tmp_path, tmp_path, 0.2, "rdfer", "hard", a))
