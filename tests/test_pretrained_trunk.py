"""``model.pretrained: ferplus``: the video models start from the trunk of dfer's shipped FER+ model.

What is taken from the file is exactly its ResNet-18 trunk; every other parameter (the
classifier over the run's classes, the GRUs, RDFER's fusion) is the model's own fresh
initialisation; a model without a 2D ResNet-18 trunk, and a missing or damaged file, end
in one line a user can act on.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from dfer.cli import main
from dfer.errors import ConfigError
from dfer.models import create_model
from dfer.models.weights import trunk_state
from dfer.pretrained import read_pretrained

VIDEO_MODELS = ("tsm_resnet18", "resnet18_gru", "rdfer_resnet18")


@pytest.fixture(scope="module")
def shipped():
    return read_pretrained()[0], trunk_state()


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_the_trunk_is_the_shipped_one_and_nothing_else_is(name, shipped):
    state, trunk = shipped
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, pretrained="ferplus")
    torch.manual_seed(0)
    fresh = create_model(name, num_classes=7, pretrained=False)

    got = model.backbone.state_dict()
    assert set(got) == set(trunk) == {k.removeprefix("backbone.") for k in state if k.startswith("backbone.")}
    for k, v in got.items():
        # float tensors bit for bit; BatchNorm's integer step counter is read back as float
        assert torch.equal(v, trunk[k].to(v.dtype)), k
    assert not torch.equal(model.backbone.conv1.weight, fresh.backbone.conv1.weight)

    # the rest comes from the model's own initialisation, not from the file's 8-class head
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    ref = fresh.state_dict()
    assert own and all(torch.equal(v, ref[k]) for k, v in own.items())
    assert model.classifier.weight.shape == (7, 512) and state["classifier.weight"].shape[0] == 8


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_a_model_started_from_the_trunk_still_learns(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, pretrained="ferplus", dropout=0.0).train()
    clip = torch.randn(4, 2, 3, 32, 32)  # (B, T, C, H, W)
    label = torch.tensor([0, 3, 5, 6])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(6):
        loss = F.cross_entropy(model(clip), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_a_3d_model_refuses_the_2d_trunk_in_one_line(monkeypatch, tmp_path):
    # the model is checked first: even with the file missing, the message is about the model
    monkeypatch.setenv("DFER_PRETRAINED", str(tmp_path / "absent.safetensors"))
    with pytest.raises(ConfigError, match=r"ferplus is the 2D ResNet-18 trunk .* does not fit r3d_18") as e:
        create_model("r3d_18", num_classes=7, pretrained="ferplus")
    assert "\n" not in str(e.value)


def _tiny_overrides(root, **extra) -> list[str]:
    d = {"data.source.kind": "dfew", "data.source.root": str(root), "data.source.fold": 1, "data.size": 32,
         "data.num_frames": 2, "data.num_workers": 0, "optim.batch_size": 4, "optim.epochs": 1,
         "eval.batch_size": 8, "threads": 1, "tensorboard": "false", "progress": "false",
         "model.pretrained": "ferplus", **extra}
    return [f"{k}={v}" for k, v in d.items()]


def test_a_run_from_the_trunk_trains_one_epoch(synthetic_dfew, tmp_path):
    import json

    import yaml

    from dfer.config import load_config
    from dfer.train import train

    cfg = load_config(None, _tiny_overrides(synthetic_dfew))
    assert cfg.model.pretrained == "ferplus"
    run = train(cfg, run_dir=tmp_path / "run")
    results = json.loads((run / "results.json").read_text())
    assert 0.0 <= results["war"] <= 1.0 and results["num_clips"] > 0
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["pretrained"] == "ferplus"


@pytest.mark.parametrize("damage, says", [("missing", "is missing"), ("garbage", "is damaged")])
def test_a_broken_install_is_one_line_that_says_how_to_reinstall(damage, says, monkeypatch, tmp_path,
                                                                 synthetic_dfew, capsys):
    path = tmp_path / "ferplus_resnet18.safetensors"
    if damage == "garbage":
        path.write_bytes(b"\x00 not a safetensors file " * 8)
    monkeypatch.setenv("DFER_PRETRAINED", str(path))
    with pytest.raises(ConfigError, match=rf"FER\+ model that ships with dfer {says} \({path}.*; reinstall dfer") as e:
        create_model("resnet18_gru", num_classes=7, pretrained="ferplus")
    assert "\n" not in str(e.value)

    rc = main(["train", "--run-dir", str(tmp_path / "run"), *_tiny_overrides(synthetic_dfew)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("dfer train: error: the FER+ model that ships with dfer")
    assert says in err[0] and "reinstall" in err[0]
