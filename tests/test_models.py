"""Behaviour of the model zoo: the temporal shift, TSM/GRU/R3D models, registry, weights.

No test touches the network: pretrained downloads are replaced by failing stubs and the
torch hub directory points into tmp_path.
"""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from dfer.errors import ConfigError
from dfer.models import (
    create_model,
    list_models,
    register_model,
    temporal_shift,
    temporal_shift_frames,
)

H = W = 32


@pytest.fixture(autouse=True, scope="module")
def one_thread_per_worker():
    """`pytest -n 2` on 2 cores: a second intra-op thread per worker only oversubscribes
    the CPU (measured 10x slower training steps), so these tests run single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clip(b: int = 2, t: int = 4, seed: int = 0, size: int = H) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, size, size, generator=g)


# R3D keeps full temporal resolution in its first stage; 16x16 keeps its tests cheap.
SIZE = {"tsm_resnet18": H, "resnet18_gru": H, "r3d_18": 16}


def build(name: str, num_classes: int = 5, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes, **kw)


def naive_shift(x: torch.Tensor, shift_div: int) -> torch.Tensor:
    """Reference: one (t, c) slice at a time, straight from the TSM convention."""
    t_len, c_len = x.shape[1], x.shape[2]
    fold = c_len // shift_div
    out = torch.zeros_like(x)
    for t in range(t_len):
        for c in range(c_len):
            if c < fold:  # takes the next frame
                if t + 1 < t_len:
                    out[:, t, c] = x[:, t + 1, c]
            elif c < 2 * fold:  # takes the previous frame
                if t >= 1:
                    out[:, t, c] = x[:, t - 1, c]
            else:
                out[:, t, c] = x[:, t, c]
    return out


# --------------------------------------------------------------------------- shift


@pytest.mark.parametrize(
    ("t", "c", "shift_div"),
    [(1, 8, 8), (2, 8, 4), (5, 16, 8), (8, 17, 3), (8, 64, 8), (3, 9, 2), (4, 6, 4)],
)
def test_shift_matches_naive_reference(t, c, shift_div):
    x = torch.randn(3, t, c, 2, 3, generator=torch.Generator().manual_seed(t * 100 + c))
    x_before = x.clone()
    out = temporal_shift(x, shift_div)
    assert torch.equal(out, naive_shift(x, shift_div))
    assert torch.equal(x, x_before), "the input must not be modified"


def test_shift_flat_frames_and_leading_dims_agree_with_5d():
    x = torch.randn(6, 5, 16, 2, 2, generator=torch.Generator().manual_seed(1))
    ref = temporal_shift(x, 8)
    assert torch.equal(temporal_shift_frames(x.flatten(0, 1), 5, 8), ref.flatten(0, 1))
    # Leading dimensions do not matter: (2, 3, T, C, H, W) shifts clip by clip.
    assert torch.equal(temporal_shift(x.unflatten(0, (2, 3)), 8), ref.unflatten(0, (2, 3)))
    # A single clip (T, C, H, W) too.
    assert torch.equal(temporal_shift(x[0], 8), ref[0])


@pytest.mark.parametrize("off", [None, 0])
def test_shift_off_is_identity(off):
    x = torch.randn(2, 4, 16, 3, 3)
    assert temporal_shift(x, off) is x
    assert torch.equal(temporal_shift_frames(x.flatten(0, 1), 4, off), x.flatten(0, 1))
    # Fewer channels than shift_div: no channel moves.
    small = torch.randn(2, 4, 7, 3, 3)
    assert torch.equal(temporal_shift(small, 8), small)


def test_shift_zero_pads_clip_ends():
    t, c, shift_div = 6, 16, 8
    fold = c // shift_div
    out = temporal_shift(torch.ones(2, t, c, 3, 3), shift_div)
    assert torch.all(out[:, -1, :fold] == 0), "channels taking the next frame are empty at the last frame"
    assert torch.all(out[:, 0, fold : 2 * fold] == 0), "channels taking the previous frame are empty at frame 0"
    zeros = (out == 0).sum().item()
    assert zeros == 2 * 2 * fold * 9, "nothing else may be zeroed"


def test_shift_moves_values_without_creating_or_losing_any_but_the_boundary():
    t, c, shift_div = 7, 24, 8
    fold = c // shift_div
    x = torch.rand(2, t, c, 4, 4, dtype=torch.float64) + 1.0  # strictly positive
    out = temporal_shift(x, shift_div)
    sums_in, sums_out = x.sum(dim=1), out.sum(dim=1)  # per channel, over time
    assert torch.allclose(sums_out[:, :fold], sums_in[:, :fold] - x[:, 0, :fold])
    assert torch.allclose(sums_out[:, fold : 2 * fold], sums_in[:, fold : 2 * fold] - x[:, -1, fold : 2 * fold])
    assert torch.equal(out[:, :, 2 * fold :], x[:, :, 2 * fold :])
    # As a multiset, the output is the input minus the frame each group pushes out, plus zeros.
    kept = torch.cat([x[:, 1:, :fold].flatten(), x[:, :-1, fold : 2 * fold].flatten(), x[:, :, 2 * fold :].flatten()])
    nonzero = out[out != 0]
    assert torch.equal(torch.sort(nonzero).values, torch.sort(kept).values)


@pytest.mark.parametrize(("t", "c", "shift_div"), [(1, 8, 8), (4, 8, 4), (5, 17, 3)])
def test_shift_gradient_is_the_reference_gradient_and_twice_differentiable(t, c, shift_div):
    """The hand-written backward (the reverse shift) against autograd through the naive
    reference, and numerically (gradcheck, gradgradcheck) in float64."""
    g = torch.Generator().manual_seed(t + c)
    x = torch.randn(2, t, c, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    up = torch.randn(2, t, c, 2, 3, dtype=torch.float64, generator=g)
    (mine,) = torch.autograd.grad((temporal_shift(x, shift_div) * up).sum(), x)
    (ref,) = torch.autograd.grad((naive_shift(x, shift_div) * up).sum(), x)
    assert torch.equal(mine, ref)
    assert torch.autograd.gradcheck(lambda v: temporal_shift(v, shift_div), (x,))
    assert torch.autograd.gradgradcheck(lambda v: temporal_shift(v, shift_div), (x,))


def test_shift_keeps_the_memory_layout_and_reads_strided_input():
    frames = torch.randn(12, 16, 5, 5).to(memory_format=torch.channels_last)  # (B * T, C, H, W), T = 3
    out = temporal_shift_frames(frames, 3, 8)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, temporal_shift_frames(frames.contiguous(), 3, 8))
    clip = torch.randn(2, 16, 4, 3, 3).transpose(1, 2)  # (B, T, C, H, W) as a strided view
    assert torch.equal(temporal_shift(clip, 4), naive_shift(clip.contiguous(), 4))


def test_shift_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"shift_div must be None, 0 \(no shift\) or an integer >= 2, got 1"):
        temporal_shift(torch.zeros(1, 2, 8, 1, 1), 1)
    with pytest.raises(ValueError, match=r"Expected a clip of shape \(\.\.\., T, C, H, W\), got \(8, 1, 1\)"):
        temporal_shift(torch.zeros(8, 1, 1), 8)
    with pytest.raises(ValueError, match=r"Expected frames of shape \(B \* T, C, H, W\) with T=4, got \(6, 8, 1, 1\)"):
        temporal_shift_frames(torch.zeros(6, 8, 1, 1), 4, 8)


# ----------------------------------------------------------------------------- TSM


def tsm_reference(model, x: torch.Tensor) -> torch.Tensor:
    """TSM by its definition: naive shift on the residual branch only, temporal mean, head."""
    net = model.backbone
    b, t = x.shape[:2]
    h = net.maxpool(net.relu(net.bn1(net.conv1(x.flatten(0, 1)))))
    for block in [*net.layer1, *net.layer2, *net.layer3, *net.layer4]:
        shifted = naive_shift(h.unflatten(0, (b, t)), model.shift_div).flatten(0, 1)
        branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(shifted)))))
        identity = h if block.downsample is None else block.downsample(h)
        h = F.relu(branch + identity)
    return model.classifier(net.avgpool(h).flatten(1).unflatten(0, (b, t)).mean(1))


@torch.no_grad()
def test_tsm_equals_residual_shift_definition():
    model = build("tsm_resnet18", shift_div=8).eval()
    x = clip(2, 4)
    out = model(x)
    assert torch.allclose(out, tsm_reference(model, x), atol=1e-5)
    off = build("tsm_resnet18", shift_div=0).eval()
    off.load_state_dict(model.state_dict())
    assert not torch.allclose(out, off(x), atol=1e-3), "the shift must change the output"


@torch.no_grad()
def test_tsm_without_shift_is_tsn_with_same_weights():
    model = build("tsm_resnet18", shift_div=None).eval()
    tsn = torchvision.models.resnet18(weights=None)
    tsn.fc = nn.Identity()
    tsn.load_state_dict(model.backbone.state_dict())
    tsn.eval()
    x = clip(2, 4)
    expected = model.classifier(tsn(x.flatten(0, 1)).unflatten(0, (2, 4)).mean(dim=1))
    assert torch.allclose(model(x), expected, atol=1e-5)


@torch.no_grad()
def test_tsm_frame_order_matters_only_with_shift():
    x = clip(2, 6)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    off = build("tsm_resnet18", shift_div=0).eval()
    assert torch.allclose(off(x), off(x[:, perm]), atol=1e-5)
    on = build("tsm_resnet18", shift_div=8).eval()
    assert not torch.allclose(on(x), on(x[:, perm]), atol=1e-3)


@torch.no_grad()
def test_tsm_temporal_receptive_field_grows_one_frame_per_block():
    # 8 BasicBlocks, each shifting by one frame: frame 0 can reach frames 0..8 and no further.
    t = 11
    x = clip(1, t)
    y = x.clone()
    y[:, 0] += 3.0
    on = build("tsm_resnet18", shift_div=8).eval()
    diff = (on.frame_features(x) - on.frame_features(y)).abs().amax(dim=-1)[0]
    # The influence decays with distance (about 1e-6 at frame 8) but is never exactly zero.
    assert torch.all(diff[:9] > 0), diff
    assert torch.all(diff[9:] == 0), diff
    off = build("tsm_resnet18", shift_div=0).eval()
    diff_off = (off.frame_features(x) - off.frame_features(y)).abs().amax(dim=-1)[0]
    assert diff_off[0] > 1e-4 and torch.all(diff_off[1:] == 0)


@pytest.mark.parametrize("name", ["tsm_resnet18", "resnet18_gru", "r3d_18"])
@torch.no_grad()
def test_models_read_t_from_input_and_keep_clips_apart(name):
    model = build(name).eval()
    for t in (4, 8):
        x = clip(3, t, seed=t, size=SIZE[name])
        batched = model(x)
        one_by_one = torch.cat([model(x[i : i + 1]) for i in range(3)])
        assert batched.shape == (3, model.num_classes)
        assert torch.allclose(batched, one_by_one, atol=1e-5), f"clips leak into each other at T={t}"


@pytest.mark.parametrize("name", ["tsm_resnet18", "resnet18_gru", "r3d_18", "rdfer_resnet18"])
@torch.no_grad()
def test_channels_last_inference_layout_keeps_the_outputs(name):
    from dfer.inference import channels_last

    model = build(name).eval()
    x = clip(2, 4, seed=3, size=SIZE.get(name, H))
    before = model(x)
    assert channels_last(model) is model
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    assert convs
    for conv in convs:  # 2-D convolutions change layout, 3-D ones are left alone
        wanted = torch.channels_last if isinstance(conv, nn.Conv2d) else torch.contiguous_format
        assert conv.weight.is_contiguous(memory_format=wanted)
    assert torch.allclose(model(x), before, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["tsm_resnet18", "resnet18_gru", "r3d_18", "rdfer_resnet18"])
@torch.no_grad()
def test_folding_batchnorm_keeps_the_outputs_and_leaves_no_batchnorm(name):
    from dfer.inference import fold_batchnorm

    model = build(name)
    g = torch.Generator().manual_seed(5)
    for m in model.modules():  # statistics far from the initial (0, 1), so a missed fold shows
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.25)
            m.weight.copy_(torch.randn(m.num_features, generator=g))
            m.bias.copy_(torch.randn(m.num_features, generator=g))
    model.train()  # folding puts the model in eval mode itself
    x = clip(2, 4, seed=3, size=SIZE.get(name, H))
    before = model.eval()(x)
    model.train()
    assert fold_batchnorm(model) is model and not model.training
    assert not [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    after = model(x)
    assert torch.allclose(after, before, atol=1e-4 * before.abs().max().item(), rtol=1e-4)


def test_folding_leaves_a_batchnorm_that_no_convolution_feeds():
    from dfer.inference import fold_batchnorm

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm1d(4))
    fold_batchnorm(model)
    assert isinstance(model[2], nn.BatchNorm2d) and isinstance(model[4], nn.BatchNorm1d)


# ----------------------------------------------------------------------- GRU / R3D


@torch.no_grad()
def test_gru_is_order_sensitive_and_uses_last_hidden_state():
    model = build("resnet18_gru", hidden_size=32).eval()
    x = clip(2, 5)
    assert not torch.allclose(model(x), model(x.flip(1)), atol=1e-4)
    seq, _ = model.gru(model.frame_features(x))
    assert torch.allclose(model.features(x), seq[:, -1], atol=1e-6)


@torch.no_grad()
def test_bidirectional_gru_feature_joins_both_final_states():
    model = build("resnet18_gru", hidden_size=16, num_layers=2, bidirectional=True).eval()
    x = clip(2, 5)
    seq, _ = model.gru(model.frame_features(x))
    expected = torch.cat([seq[:, -1, :16], seq[:, 0, 16:]], dim=-1)
    assert torch.allclose(model.features(x), expected, atol=1e-6)
    assert model.classifier.in_features == 32


@torch.no_grad()
def test_r3d_is_torchvision_r3d_on_permuted_clip():
    model = build("r3d_18").eval()
    ref = torchvision.models.video.r3d_18(weights=None)
    ref.fc = nn.Identity()
    ref.load_state_dict(model.backbone.state_dict())
    ref.eval()
    x = clip(2, 4, size=16)
    assert torch.allclose(model.features(x), ref(x.permute(0, 2, 1, 3, 4)), atol=1e-5)


# ------------------------------------------------------------------- head, dropout


@pytest.mark.parametrize("name", ["tsm_resnet18", "resnet18_gru", "r3d_18"])
def test_dropout_acts_only_in_training(name):
    x = clip(2, 4, size=SIZE[name])
    model = build(name, dropout=0.5)
    with torch.no_grad():
        model.eval()
        a, b = model(x), model(x)
        assert torch.equal(a, b)
        assert torch.allclose(a, model.classifier(model.features(x)), atol=1e-6)
        model.train()
        torch.manual_seed(1)
        c = model(x)
        torch.manual_seed(2)
        d = model(x)
        assert not torch.allclose(c, d, atol=1e-4), "dropout 0.5 must perturb training logits"
        plain = build(name, dropout=0.0).train()
        assert torch.allclose(plain(x), plain(x), atol=1e-6), "without dropout training logits are deterministic"


@torch.no_grad()
def test_reset_classifier_keeps_features_and_changes_classes():
    model = build("tsm_resnet18", num_classes=7).eval()
    x = clip(1, 4)
    before = model.features(x)
    model.reset_classifier(11)
    assert model.num_classes == 11 and model.classifier.out_features == 11
    assert model(x).shape == (1, 11)
    assert torch.equal(model.features(x), before)


def test_forward_validates_the_clip():
    model = build("tsm_resnet18").eval()
    with pytest.raises(ValueError, match=r"Expected a batched clip of shape \(B, T, C, H, W\), got \(4, 3, 32, 32\)"):
        model(torch.zeros(4, 3, H, W))
    with pytest.raises(ValueError, match=r"with C=3, got \(1, 4, 1, 32, 32\)"):
        model(torch.zeros(1, 4, 1, H, W))
    with pytest.raises(TypeError, match=r"Expected a float clip \(normalised\), got dtype torch.uint8"):
        model(torch.zeros(1, 4, 3, H, W, dtype=torch.uint8))


def test_tiny_model_overfits_two_constant_clips():
    torch.manual_seed(0)
    model = create_model("tsm_resnet18", 2, dropout=0.0).train()
    x = torch.cat([torch.full((1, 4, 3, H, W), 1.0), torch.full((1, 4, 3, H, W), -1.0)])
    y = torch.tensor([1, 0])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses
    assert torch.equal(model(x).argmax(1), y)


# ------------------------------------------------------------------------ registry


def test_registry_lists_and_rejects_unknown_names_and_options():
    assert {"tsm_resnet18", "resnet18_gru", "r3d_18"} <= set(list_models())
    with pytest.raises(ConfigError, match=r"unknown model 'tsm_resnet50'; known models: .*r3d_18, .*resnet18_gru, tsm_resnet18"):
        create_model("tsm_resnet50", 7)
    with pytest.raises(
        ConfigError,
        match=r"model 'tsm_resnet18' got unknown option\(s\) hidden_size, num_segments; accepted: dropout, shift_div",
    ):
        create_model("tsm_resnet18", 7, num_segments=8, hidden_size=3)


@pytest.mark.parametrize(
    ("name", "kw", "message"),
    [
        ("tsm_resnet18", {"shift_div": 1}, r"shift_div must be 0 or null \(no shift\) or an integer >= 2, got 1"),
        ("tsm_resnet18", {"dropout": 1.5}, r"dropout must be a number in \[0, 1\), got 1.5"),
        ("resnet18_gru", {"hidden_size": 0}, r"hidden_size must be a positive integer, got 0"),
        ("r3d_18", {"pretrained": 3}, r"pretrained must be true, false or a path to a state dict, got 3"),
    ],
)
def test_builders_reject_bad_values(name, kw, message):
    with pytest.raises(ConfigError, match=message):
        create_model(name, 7, **kw)
    with pytest.raises(ConfigError, match=r"num_classes must be a positive integer, got 0"):
        create_model(name, 0)


def test_register_model_refuses_a_second_builder_of_the_same_name():
    def tsm_resnet18(*, num_classes, pretrained=False):  # noqa: ARG001
        raise AssertionError

    with pytest.raises(ValueError, match="model 'tsm_resnet18' is already registered"):
        register_model(tsm_resnet18)


# ------------------------------------------------------------------------- weights


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub directory and a download that fails as it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    assert torch.hub.get_dir() == str(tmp_path / "hub")
    return tmp_path / "hub" / "checkpoints"


@pytest.mark.parametrize(
    ("name", "file"),
    [("tsm_resnet18", "resnet18-f37072fd.pth"), ("resnet18_gru", "resnet18-f37072fd.pth"), ("r3d_18", "r3d_18-b3b3357e.pth")],
)
def test_pretrained_offline_says_which_file_goes_where(offline_hub, name, file):
    with pytest.raises(ConfigError) as info:
        create_model(name, 7, pretrained=True)
    message = str(info.value)
    assert "\n" not in message
    assert f"expected file {file} in {offline_hub};" in message
    assert f"fetch https://download.pytorch.org/models/{file} on a machine that is online" in message
    assert "Temporary failure in name resolution" in message


def random_resnet18_state(seed: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).state_dict()


def assert_backbone_equals(model, state):
    got = model.backbone.state_dict()
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in got)


def test_pretrained_true_reads_the_hub_cache_without_downloading(offline_hub):
    state = random_resnet18_state()
    offline_hub.mkdir(parents=True)
    torch.save(state, offline_hub / "resnet18-f37072fd.pth")
    model = create_model("tsm_resnet18", 7, pretrained=True)
    assert_backbone_equals(model, state)


@pytest.mark.parametrize("name", ["tsm_resnet18", "resnet18_gru"])
def test_pretrained_local_file_replaces_the_classifier(tmp_path, name):
    state = random_resnet18_state()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    model = create_model(name, 7, pretrained=str(path))
    assert_backbone_equals(model, state)
    assert model.classifier.out_features == 7


def test_pretrained_from_a_dfer_checkpoint_transfers_the_backbone_only(tmp_path):
    from safetensors.torch import save_file

    source = build("tsm_resnet18", num_classes=7, seed=5)
    path = tmp_path / "best.safetensors"
    save_file(source.state_dict(), str(path))
    target = create_model("tsm_resnet18", 3, pretrained=path)
    src = source.backbone.state_dict()
    assert all(torch.equal(v, src[k]) for k, v in target.backbone.state_dict().items())
    assert target.classifier.out_features == 3


def test_pretrained_file_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.pth: pretrained weights file not found"):
        create_model("tsm_resnet18", 7, pretrained=str(tmp_path / "nope.pth"))
    state = random_resnet18_state()
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(
        ConfigError,
        match=r"odd\.pth: weights do not fit the backbone of tsm_resnet18: 1 missing \(layer1\.0\.conv1\.weight\); "
        r"1 unexpected \(extra\.weight\)",
    ):
        create_model("tsm_resnet18", 7, pretrained=path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk\.pth: cannot read weights"):
        create_model("tsm_resnet18", 7, pretrained=junk)
