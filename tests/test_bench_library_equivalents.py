"""benchmarks/library_equivalents.py: each arm reads what it claims to read, and the
strictness it reports of dfer is dfer's (the figures in docs/reliability.md rest on both)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("library_equivalents")


def test_every_csv_reader_reads_the_same_votes_and_dfer_names_each_bad_line(bench, tmp_path):
    path = tmp_path / "m.csv"
    bench.write_manifest(path, 300)
    readers = bench._readers()
    ours = readers["dfer"](path)
    assert ours.n == 300
    votes = np.stack([ours.num[c] for c in bench.CLASSES], axis=1)
    assert (votes.sum(1) == 10).all()  # ten votes a clip, as written
    np.testing.assert_array_equal(readers["numpy.loadtxt"](path)[0][:, :7], votes)
    np.testing.assert_array_equal(np.stack([readers["csv module"](path)[c] for c in bench.CLASSES], 1), votes)
    res = bench.csv_readers(300, 1, tmp_path)
    for how in ("cells", "word", "negative"):
        assert res["dfer"][f"bad_{how}"].startswith(f"refused, naming the line: {tmp_path / f'bad-{how}.csv'}:151:")
    assert res["numpy.loadtxt"]["bad_negative"] == "accepted"  # what a column reader alone lets through


def test_the_decoders_see_the_same_pixels_and_dfer_names_every_bad_file(bench, tmp_path):
    res = bench.decoders(1, tmp_path)
    assert res["png"]["torchvision.read_image"]["max_pixel_difference"] == 0
    for bad, verdicts in res["bad_files"].items():
        expected = "read as uint8" if bad.startswith("16-bit") else "refused, one line naming the file: True"
        assert verdicts["dfer"].startswith(expected), (bad, verdicts)


def test_the_samplers_draw_from_beta(bench):
    import torch

    torch.manual_seed(0)  # torch.distributions draws from the global stream
    res = bench.beta(1)
    for name in ("dfer", "numpy", "torch.distributions"):
        assert res[name]["ks_p"] > 1e-3 and res[name]["alpha_0.05_nan_of_a_million"] == 0
