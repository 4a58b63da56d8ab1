"""rdfer_resnet18: registry, the dual-stream contract, and end-to-end training on the synthetic corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfer.config import RunConfig, from_dict
from dfer.errors import ConfigError
from dfer.models import create_model, list_models, model_options


def test_registered_with_typed_options():
    assert "rdfer_resnet18" in list_models()
    assert model_options("rdfer_resnet18") == {"snippet_frames": 2, "hidden_size": 256, "dropout": 0.5}
    with pytest.raises(ConfigError, match="hidden_size must be even"):
        create_model("rdfer_resnet18", 7, hidden_size=33)
    with pytest.raises(ConfigError, match="snippet_frames must be a positive integer, got 0"):
        create_model("rdfer_resnet18", 7, snippet_frames=0)


def test_clip_logits_are_the_mean_of_snippet_logits_and_frames_follow_their_snippet():
    torch.manual_seed(0)
    m = create_model("rdfer_resnet18", 5, snippet_frames=2, hidden_size=16).eval()
    x = torch.randn(2, 5, 3, 32, 32)  # T=5: snippets (0,1), (2,3), (4,pad)
    with torch.no_grad():
        clip, frames = m.frame_logits(x)
        assert torch.allclose(clip, m(x), atol=1e-5)
        assert torch.allclose(frames[:, 0], frames[:, 1]) and torch.allclose(frames[:, 2], frames[:, 3])
        assert torch.allclose(clip, frames[:, [0, 2, 4]].mean(1), atol=1e-5)
        assert m.features(x).shape == (2, m.feature_dim)


def _random_fusion(m):
    """Give the zero-initialised fusion random weights, as training does."""
    with torch.no_grad():
        torch.nn.init.normal_(m.fuse.weight, std=0.5)
        torch.nn.init.normal_(m.fuse.bias, std=0.5)
    return m


def test_the_sequence_streams_see_frame_order():
    """Unlike a temporal mean, reversing the frames changes the output once the fusion has
    weights (both GRUs read in order)."""
    torch.manual_seed(0)
    m = _random_fusion(create_model("rdfer_resnet18", 3, snippet_frames=2, hidden_size=16)).eval()
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        a, b = m(x), m(x.flip(1))
        tsn = create_model("tsm_resnet18", 3, shift_div=0).eval()
        assert torch.allclose(tsn(x), tsn(x.flip(1)), atol=1e-5)
    assert not torch.allclose(a, b, atol=1e-4)


def test_fusion_starts_as_tsn_and_the_streams_learn_from_the_first_step():
    """At initialisation the fusion is zero: the feature is the snippets' mean trunk feature
    (TSN), the trunk receives the classifier's gradient, and so does the fusion weight, through
    which the two streams enter; after one optimiser step the streams change the feature."""
    torch.manual_seed(0)
    m = create_model("rdfer_resnet18", 4, snippet_frames=2, hidden_size=16, dropout=0.0).eval()
    x = torch.randn(2, 4, 3, 32, 32)
    trunk = m.backbone(x.flatten(0, 1)).unflatten(0, (2, 4))
    expected = trunk.reshape(2, 2, 2, -1).mean(2)  # (B, S, 512): mean over each snippet's frames
    assert torch.equal(m.snippet_features(x), expected)
    torch.nn.functional.cross_entropy(m(x), torch.tensor([0, 3])).backward()
    assert m.backbone.conv1.weight.grad.abs().sum() > 0
    assert m.fuse.weight.grad.abs().sum() > 0
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    with torch.no_grad():
        trunk = m.backbone(x.flatten(0, 1)).unflatten(0, (2, 4))
        assert not torch.allclose(m.snippet_features(x), trunk.reshape(2, 2, 2, -1).mean(2), atol=1e-4)


@pytest.mark.slow
def test_dual_stream_model_trains_end_to_end_and_beats_chance(synthetic_dfew, tmp_path):
    """Trained through dfer.train (robust learning and key sampling on), it fits its training
    clips far above the majority-class rate."""
    from dfer.evaluate import predict_table
    from dfer.models import create_model as cm
    from dfer.checkpoint import load_checkpoint
    from dfer.data.splits import build_splits
    from dfer.train import train

    def cfg(name, seed=0):
        return from_dict(RunConfig, {
            "name": name, "out_dir": str(tmp_path), "seed": seed, "label_mode": "hard",
            "data": {"source": {"kind": "dfew", "root": str(synthetic_dfew), "fold": 1}, "num_frames": 4,
                     "size": 32, "num_workers": 0, "scales": [1.0], "flip": False},
            "model": {"name": "rdfer_resnet18", "dropout": 0.0, "kwargs": {"hidden_size": 64}},
            "optim": {"name": "adamw", "epochs": 12, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0},
            "robust": {"enabled": True, "warmup_epochs": 6, "every": 3, "num_clips": 2},
            "eval": {"batch_size": 32}, "tensorboard": False, "progress": False}).validate()

    c = cfg("rdfer")
    run = train(c)
    model = cm("rdfer_resnet18", 7, hidden_size=64, dropout=0.0)
    load_checkpoint(run / "checkpoints" / "last.safetensors", model)
    splits = build_splits(c)
    probs = predict_table(model, splits.train, c, torch.device("cpu"))
    labels = splits.train.label.astype(np.int64)
    acc = float((probs.argmax(1) == labels).mean())
    majority = np.bincount(labels).max() / len(labels)
    # SGD reached 0.63-0.7+ against a 0.44 majority rate depending on the machine's float
    # rounding; AdamW fits more reliably, and the margin leaves room for that rounding
    assert acc > majority + 0.2, (acc, majority)
    assert (run / "robust.csv").is_file()
