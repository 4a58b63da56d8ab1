"""optim.precision: chosen once per run (measured under auto on the CPU), recorded, kept on resume."""

from __future__ import annotations

import json

import pytest
import torch

import dfer.precision as precision_mod
from dfer.config import RunConfig, config_hash, from_dict, saved_config, to_dict
from dfer.distributed import autocast_dtype
from dfer.errors import ConfigError, DataError
from dfer.precision import Precision, choose_precision, read_record, write_record

CPU = torch.device("cpu")
SHAPE = (2, 2, 3, 32, 32)


class TinyClipNet(torch.nn.Module):
    """A convolution, batch norm and dropout over (B, T, C, H, W): what the measurement must leave alone."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(8, 7)

    def forward(self, clip):
        b, t = clip.shape[:2]
        x = self.bn(self.conv(clip.flatten(0, 1))).relu().mean((2, 3))
        return self.fc(self.drop(x)).view(b, t, -1).mean(1)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return TinyClipNet()


def test_auto_on_the_cpu_measures_on_a_copy_and_leaves_the_run_untouched():
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    p = choose_precision("auto", model, CPU, SHAPE, 7)
    assert p.how == "measured" and p.name in ("fp32", "bf16")
    assert set(p.seconds_per_step) == {"fp32", "fp32+channels_last", "bf16"}
    assert all(t > 0 for t in p.seconds_per_step.values())
    # weights, batch-norm statistics (num_batches_tracked too), layout and the random stream are the run's own
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p_.is_contiguous() for p_ in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p_.grad is None for p_ in model.parameters())


@pytest.mark.parametrize("fp32, fp32_cl, bf16, chosen, layout", [
    (1.0, 1.0, 0.89, "bf16", True), (1.0, 1.0, 0.95, "fp32", False), (1.0, 1.0, 12.0, "fp32", False),
    (1.0, 0.85, 0.8, "fp32", True),   # bf16 must beat the better fp32 layout, not the contiguous one
    (1.0, 0.85, 0.7, "bf16", True), (1.0, 0.96, 12.0, "fp32", False),  # a layout gain within noise is not kept
])
def test_auto_keeps_the_layout_and_bf16_only_when_clearly_faster(monkeypatch, fp32, fp32_cl, bf16, chosen, layout):
    calls = []

    def fake(model, shape, num_classes, dtype, **k):
        weight = next(m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        cl = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        calls.append((cl, dtype))
        return {(False, None): fp32, (True, None): fp32_cl, (True, torch.bfloat16): bf16}[(cl, dtype)]

    monkeypatch.setattr(precision_mod, "step_seconds", fake)
    p = choose_precision("auto", tiny_model(), CPU, SHAPE, 7)
    assert sorted(calls, key=str) == sorted([(False, None), (True, None), (True, torch.bfloat16)], key=str)
    assert p.name == chosen and p.channels_last == layout
    assert p.seconds_per_step == {"fp32": fp32, "fp32+channels_last": fp32_cl, "bf16": bf16}


def test_a_slow_bf16_is_given_up_after_its_warm_up():
    calls = []

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            calls.append(1)
            return x.flatten(1)[:, :7] * self.w

    precision_mod.step_seconds(Slow(), SHAPE, 7, None, steps=2, give_up_after=0.0)
    assert len(calls) == 1


def test_set_precisions_and_their_refusals(monkeypatch, capsys):
    assert choose_precision("fp32", tiny_model(), CPU, SHAPE, 7) == Precision("fp32")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        choose_precision("fp16", tiny_model(), CPU, SHAPE, 7)
    monkeypatch.setattr(precision_mod, "cpu_has_fast_bf16", lambda: False)
    p = choose_precision("bf16", tiny_model(), CPU, SHAPE, 7)
    assert p.dtype == torch.bfloat16 and p.channels_last
    assert capsys.readouterr().err.count("without native bf16") == 1


def test_the_record_round_trips_and_a_damaged_one_is_named(tmp_path):
    write_record(tmp_path, Precision("bf16", channels_last=True, how="measured", seconds_per_step={"fp32": 1.0}))
    back = read_record(tmp_path, CPU)
    assert (back.name, back.channels_last, back.how, back.seconds_per_step) == ("bf16", True, "resumed", {"fp32": 1.0})
    for text in ("{", '{"name": "fp64"}', '["bf16"]', '{"name": "bf16", "channels_last": "yes"}'):
        (tmp_path / "precision.json").write_text(text)
        with pytest.raises(DataError, match="precision.json"):
            read_record(tmp_path, CPU)
    (tmp_path / "precision.json").write_text('{"name": "fp16"}')
    with pytest.raises(DataError, match="cannot resume on the CPU"):
        read_record(tmp_path, CPU)


def test_a_run_begun_before_the_record_resumes_as_dfer_then_computed(tmp_path):
    assert read_record(tmp_path, CPU) == Precision("fp32", how="legacy")


def test_a_saved_config_with_the_old_amp_switch_reads_as_the_same_run():
    new = from_dict(RunConfig, {}).validate()
    old = to_dict(new)
    del old["optim"]["precision"]
    old["optim"]["amp"] = True
    assert saved_config(old) == new and config_hash(saved_config(old)) == config_hash(new)
    old["optim"]["amp"] = False
    assert saved_config(old).optim.precision == "fp32"


def test_evaluation_computes_in_fp32_on_the_cpu_whatever_the_run_trained_in():
    for name in ("auto", "fp32", "bf16"):
        cfg = from_dict(RunConfig, {"optim": {"precision": name}})
        assert autocast_dtype(cfg, CPU) is None
    with pytest.raises(ConfigError, match="optim.precision"):
        from_dict(RunConfig, {"optim": {"precision": "fp64"}}).validate()


def test_a_run_records_its_precision_and_a_resume_keeps_it(synthetic_dfew, tmp_path, monkeypatch):
    from test_train import tiny_config

    from dfer.train import train

    cfg = tiny_config(synthetic_dfew, tmp_path, **{"optim.precision": "auto"})
    measured = []

    def fake_step_seconds(model, shape, num_classes, dtype, **k):
        measured.append((shape, dtype))
        return {1: 1.0, 2: 1.5, 3: 2.0}[len(measured)]  # fp32, fp32 channels-last, bf16

    monkeypatch.setattr(precision_mod, "step_seconds", fake_step_seconds)
    run_dir = train(cfg, stop_after_epochs=1)
    # measured once per precision at one process's batch of the run's clips
    assert measured == [((8, 4, 3, 32, 32), None), ((8, 4, 3, 32, 32), None), ((8, 4, 3, 32, 32), torch.bfloat16)]
    record = json.loads((run_dir / "precision.json").read_text())
    assert record == {"name": "fp32", "channels_last": False, "how": "measured",
                      "seconds_per_step": {"fp32": 1.0, "fp32+channels_last": 1.5, "bf16": 2.0}}
    # resumed: read back, never measured again
    monkeypatch.setattr(precision_mod, "step_seconds", lambda *a, **k: pytest.fail("measured on resume"))
    train(cfg)
    assert json.loads((run_dir / "precision.json").read_text()) == record
    assert (run_dir / "results.json").is_file()
