"""Labels become training targets in one place, dfer.targets: one-hot rows of hard labels,
vote distributions, soft labels, the target of a batch under each label mode, and RDFER's
blend; a clip without the label its mode needs is refused."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from dfer.errors import DataError
from dfer.targets import (HARD_LABEL_MODES, batch_targets, blend, hard_or_soft, one_hot, soft_labels,
                          vote_distribution)

SRC = Path(__file__).resolve().parents[1] / "src" / "dfer"


def test_one_hot_rows_are_the_same_from_numpy_and_torch_and_refuse_a_missing_label():
    label = np.array([2, 0, 6, 2])
    rows = one_hot(label, 7)
    assert rows.dtype == np.float32 and rows.shape == (4, 7)
    assert (rows.argmax(1) == label).all() and (rows.sum(1) == 1).all() and (rows.max(1) == 1).all()
    assert np.array_equal(one_hot(torch.from_numpy(label), 7).numpy(), rows)
    for bad in (np.array([1, -1, 3]), torch.tensor([1, -1, 3])):
        with pytest.raises(DataError, match=r"batch position\(s\) \[1\] have label\(s\) \[-1\]"):
            one_hot(bad, 7)
    with pytest.raises(DataError, match=r"\[2\] have label\(s\) \[7\]"):
        one_hot(np.array([0, 1, 7]), 7)
    with pytest.raises(ValueError, match="Expected an integer label of shape"):
        one_hot(np.array([0.0, 1.0]), 7)


def test_vote_distribution_divides_in_float64_so_large_counts_do_not_overflow():
    votes = np.array([[3, 1, 0, 0], [3e38, 3e38, 0, 0]], np.float32)  # the float32 sum of row 2 is inf
    dist = vote_distribution(votes)
    assert dist.dtype == np.float32
    np.testing.assert_array_equal(dist, np.array([[0.75, 0.25, 0, 0], [0.5, 0.5, 0, 0]], np.float32))


def test_soft_labels_are_votes_where_a_clip_has_them_else_its_one_hot_label():
    votes = np.array([[1, 3, 0], [np.nan] * 3, [0, 0, 2]], np.float32)
    out = soft_labels(votes, np.array([-1, 2, 0]))  # the label of a clip with votes is not used
    np.testing.assert_array_equal(out, np.array([[0.25, 0.75, 0], [0, 0, 1], [0, 0, 1]], np.float32))
    with pytest.raises(DataError):
        soft_labels(votes, np.array([0, -1, 0]))  # neither votes nor a label


@pytest.mark.parametrize("mode", ["hard", "soft", "midas", "midas-hard", "mixup", "none"])
def test_a_batch_trains_on_one_hot_labels_in_the_hard_modes_and_soft_labels_in_the_others(mode):
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    label = torch.tensor([1, 2])
    target = batch_targets(mode, soft, label, 3, batch=2)
    expected = torch.tensor([[0.0, 1, 0], [0, 0, 1]]) if mode in HARD_LABEL_MODES else soft
    assert target.dtype == torch.float32 and torch.equal(target, expected)


def test_a_batch_without_the_labels_its_mode_needs_is_refused():
    with pytest.raises(DataError, match=r"batch position\(s\) \[0\]"):
        batch_targets("hard", None, torch.tensor([-1, 2]), 3)
    with pytest.raises(ValueError, match="mode 'mixup' needs the hard `label` of every clip"):
        batch_targets("mixup", torch.full((2, 3), 1 / 3), None, 3)
    with pytest.raises(ValueError, match="mode 'soft' needs `soft_label`"):
        batch_targets("soft", None, torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match=r"Expected label of shape \(4,\), got \(2,\)"):
        batch_targets("hard", None, torch.tensor([0, 1]), 3, batch=4)
    with pytest.raises(ValueError, match=r"Expected a floating soft_label of shape \(2, 3\), got shape \(2, 4\)"):
        batch_targets("midas", torch.full((2, 4), 0.25), None, 3, batch=2)


def test_hard_or_soft_keeps_the_soft_row_of_a_clip_without_a_label_and_blend_keeps_rows_summing_to_one():
    soft = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    out = hard_or_soft(torch.tensor([0, -1]), soft)
    assert torch.equal(out, torch.tensor([[1.0, 0.0], [0.6, 0.4]])) and torch.equal(soft[0], torch.tensor([0.2, 0.8]))
    mixed = blend(soft, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 0.25)
    torch.testing.assert_close(mixed, torch.tensor([[0.4, 0.6], [0.45, 0.55]]))
    torch.testing.assert_close(mixed.sum(1), torch.ones(2))


def test_labels_become_targets_only_in_dfer_targets():
    """No other module of dfer makes one-hot rows (torch's one_hot, an identity matrix indexed
    by labels) or divides votes by their sum: one rule, read in one place."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "targets.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            call = node.func if isinstance(node, ast.Call) else None
            if isinstance(call, ast.Attribute) and call.attr == "one_hot":
                found.append(f"{path.relative_to(SRC)}:{node.lineno} one_hot")
            if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "eye"):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} eye(...)[labels]")
            if isinstance(node, ast.FunctionDef) and node.name == "one_hot":
                found.append(f"{path.relative_to(SRC)}:{node.lineno} def one_hot")
    assert not found, found
