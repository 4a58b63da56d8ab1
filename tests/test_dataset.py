"""ClipDataset + loader: content, layout, (seed, epoch, index) determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dfer.data.dataset import ClipDataset, build_loader, collate
from dfer.data.decode import clear_caches
from dfer.data.sampling import MultiClipSampler, SegmentSampler
from dfer.data.table import ClipTable
from dfer.data.transforms import Normalize, build_transforms
from dfer.errors import DataError

CLASSES = ("happy", "sad", "neutral")
FRAMES = [12, 16, 9, 20, 5, 14]  # frames per clip


def frame_value(t: int) -> int:
    return 8 + 10 * t


def clip_code(c: int) -> int:
    return 30 + 35 * c


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six frame folders of 24x32 PNG frames: red = frame number, green = clip number, blue
    = a horizontal ramp (so crops and flips show)."""
    root = tmp_path_factory.mktemp("clips")
    ramp = np.linspace(0, 255, 32).astype(np.uint8)
    sources = []
    for c, n in enumerate(FRAMES):
        folder = root / f"clip{c}"
        folder.mkdir()
        for t in range(n):
            img = np.empty((24, 32, 3), np.uint8)
            img[..., 0] = frame_value(t)
            img[..., 1] = clip_code(c)
            img[..., 2] = ramp[None, :]
            Image.fromarray(img).save(folder / f"{t + 1}.png")  # 1.png .. n.png: needs natural sort
        sources.append(str(folder))
    votes = np.full((6, 3), np.nan, np.float32)
    votes[0] = [7, 2, 1]
    votes[1] = [0, 3, 1]
    votes[3] = [1, 1, 8]
    table = ClipTable.build(CLASSES, [f"c{c}" for c in range(6)], sources, votes=votes,
                            label=[-1, -1, 2, -1, 0, 1], name="toy")
    clear_caches()
    return table


def raw_channels(clip: torch.Tensor) -> torch.Tensor:
    """(..., T, C, H, W) normalised clip -> (..., T, C) mean pixel value in 0..255."""
    return (Normalize().inverse(clip) * 255).mean(dim=(-2, -1))


def test_items_hold_the_sampled_frames_in_order(corpus):
    ds = ClipDataset(corpus, SegmentSampler(4, "test"), build_transforms(False, size=16))
    for i, n in enumerate(FRAMES):
        item = ds[i]
        assert item["clip"].shape == (4, 3, 16, 16) and item["clip"].dtype == torch.float32
        means = raw_channels(item["clip"])
        expected = SegmentSampler(4, "test").sample(n)
        assert torch.allclose(means[:, 0], torch.tensor([frame_value(t) for t in expected], dtype=torch.float32),
                              atol=1.0)
        assert torch.allclose(means[:, 1], torch.full((4,), float(clip_code(i))), atol=1.0)
        assert item["index"].item() == i and item["index"].dtype == torch.int64


def test_labels_and_soft_labels(corpus):
    ds = ClipDataset(corpus, SegmentSampler(4, "test"), build_transforms(False, size=16))
    soft = torch.stack([ds[i]["soft_label"] for i in range(6)])
    labels = torch.stack([ds[i]["label"] for i in range(6)])
    assert soft.dtype == torch.float32 and torch.allclose(soft.sum(1), torch.ones(6))
    assert torch.allclose(soft[0], torch.tensor([0.7, 0.2, 0.1]))
    assert torch.equal(soft[2], torch.tensor([0.0, 0.0, 1.0]))  # no votes: one-hot of the label
    assert labels.tolist() == [0, 1, 2, 2, 0, 1]  # majority vote where there is no label
    hard = ClipDataset(corpus, SegmentSampler(4, "test"), build_transforms(False, size=16), target="hard")
    assert torch.equal(hard[0]["soft_label"], torch.tensor([1.0, 0.0, 0.0]))


def test_batch_layout_and_content(corpus):
    ds = ClipDataset(corpus, SegmentSampler(4, "test"), build_transforms(False, size=16))
    loader = build_loader(ds, 4, shuffle=True, num_workers=0, seed=3, pin_memory=False)
    seen = []
    for batch in loader:
        B = len(batch["index"])
        assert batch["clip"].shape == (B, 4, 3, 16, 16)
        assert batch["soft_label"].shape == (B, 3) and batch["label"].shape == (B,)
        means = raw_channels(batch["clip"])
        for b in range(B):
            i = batch["index"][b].item()
            # each row of the batch is the clip its index names, frames in temporal order
            assert abs(means[b, 0, 1].item() - clip_code(i)) < 1.0
            assert (means[b, 1:, 0] > means[b, :-1, 0]).all()
            assert torch.equal(batch["soft_label"][b], ds[i]["soft_label"])
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(6)) and seen != list(range(6))  # shuffled, each clip once


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    batches = list(loader)
    return torch.cat([b["index"] for b in batches]), torch.cat([b["clip"] for b in batches])


def test_determinism_independent_of_workers_and_epoch_changes_draws(corpus):
    def make(workers):
        ds = ClipDataset(corpus, SegmentSampler(4, "train"), build_transforms(True, size=16), seed=11)
        return build_loader(ds, 2, shuffle=True, num_workers=workers, seed=11, pin_memory=False)

    serial, parallel = make(0), make(2)
    order0, clips0 = _epoch(serial, 0)
    order0p, clips0p = _epoch(parallel, 0)
    assert torch.equal(order0, order0p) and torch.equal(clips0, clips0p)
    # persistent workers must see the new epoch too
    order1, clips1 = _epoch(serial, 1)
    order1p, clips1p = _epoch(parallel, 1)
    assert torch.equal(order1, order1p) and torch.equal(clips1, clips1p)
    assert not torch.equal(order0, order1)
    # same clip, different epoch: different frames or crop
    by0 = dict(zip(order0.tolist(), clips0))
    by1 = dict(zip(order1.tolist(), clips1))
    assert sum(not torch.equal(by0[i], by1[i]) for i in range(6)) >= 5
    # resuming at epoch 1 in a fresh loader reproduces epoch 1 exactly
    _, again = _epoch(make(0), 1)
    assert torch.equal(again, clips1)
    del parallel


def test_set_epoch_on_the_dataset_changes_plain_indexing(corpus):
    ds = ClipDataset(corpus, SegmentSampler(4, "train"), build_transforms(True, size=16), seed=0)
    a = torch.stack([ds[i]["clip"] for i in range(6)])
    assert torch.equal(a, torch.stack([ds[i]["clip"] for i in range(6)]))
    ds.set_epoch(1)
    b = torch.stack([ds[i]["clip"] for i in range(6)])
    assert not torch.equal(a, b)
    assert torch.equal(ds[(0, 3)]["clip"], a[3])  # an (epoch, index) key overrides the attribute


def test_multi_clip_items(corpus):
    ds = ClipDataset(corpus, MultiClipSampler(4, 2), build_transforms(False, size=16))
    item = ds[3]  # 20 frames: segments of 5, clips at offsets 1 and 3
    assert item["clip"].shape == (2, 4, 3, 16, 16)
    means = raw_channels(item["clip"])[..., 0]
    expected = torch.tensor([[frame_value(t) for t in row] for row in MultiClipSampler(4, 2).sample(20)],
                            dtype=torch.float32)
    assert torch.allclose(means, expected, atol=1.0)
    assert collate([item, ds[0]])["clip"].shape == (2, 2, 4, 3, 16, 16)


def test_corrupt_frame_names_the_clip(tmp_path, corpus):
    folder = tmp_path / "broken"
    folder.mkdir()
    for t in range(8):
        Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(folder / f"{t}.jpg", quality=90)
    data = (folder / "4.jpg").read_bytes()
    (folder / "4.jpg").write_bytes(data[:200])
    table = ClipTable.build(CLASSES, ["ok", "broken_clip"], [corpus.source[0], str(folder)], label=[0, 1])
    clear_caches()
    ds = ClipDataset(table, SegmentSampler(8, "test"), build_transforms(False, size=16))
    assert ds[0]["clip"].shape == (8, 3, 16, 16)
    with pytest.raises(DataError, match=r"clip 'broken_clip' \(.*broken\): .*4\.jpg: cannot decode image"):
        ds[1]
    missing = ClipTable.build(CLASSES, ["gone"], [str(tmp_path / "nowhere")], label=[0])
    with pytest.raises(DataError, match=r"clip 'gone' \(.*nowhere\): .*frame folder not found"):
        ClipDataset(missing, SegmentSampler(8, "test"), build_transforms(False, size=16))[0]
    warn = ClipDataset(table, SegmentSampler(8, "test"), build_transforms(False, size=16), on_bad_clip="warn")
    assert warn[1]["index"].item() == 0  # opt-in: the next readable clip, logged


def test_missing_targets_are_reported(corpus):
    unlabelled = ClipTable.build(CLASSES, ["a"], [corpus.source[0]])
    with pytest.raises(DataError, match=r"clips \[.*'a'.*\] have neither votes nor a label"):
        ClipDataset(unlabelled, SegmentSampler(4, "test"), build_transforms(False, size=16))
    ds = ClipDataset(unlabelled, SegmentSampler(4, "test"), build_transforms(False, size=16), target="none")
    assert ds[0]["label"].item() == -1 and torch.allclose(ds[0]["soft_label"].sum(), torch.tensor(1.0))
