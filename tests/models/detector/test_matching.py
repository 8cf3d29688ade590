"""Mutual nearest neighbours and the ratio test."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurocorr.models.detector.matching import match_mnn


def test_mnn_recovers_a_permutation_and_skips_one_sided_neighbours() -> None:
    g = torch.Generator().manual_seed(0)
    d1 = F.normalize(torch.randn(20, 16, generator=g), dim=1)
    perm = torch.randperm(20, generator=g)
    d2 = d1[perm] + 0.01 * torch.randn(20, 16, generator=g)
    m = match_mnn(d1, d2)
    assert m.index.shape == (20, 2)
    assert (perm[m.index[:, 1]] == m.index[:, 0]).all()
    assert (m.distance[1:] >= m.distance[:-1]).all()
    # two points in set 1 near one point in set 2: only the nearer one is a mutual match
    a = torch.tensor([[0.0, 0.0], [0.1, 0.0]])
    b = torch.tensor([[0.02, 0.0]])
    assert match_mnn(a, b).index.tolist() == [[0, 0]]


def test_ratio_test_and_masks_and_empty_input() -> None:
    a = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    b = torch.tensor([[0.1, 0.0], [0.12, 0.0], [5.0, 5.1]])  # the first point is ambiguous
    assert match_mnn(a, b).index.shape[0] == 2
    assert match_mnn(a, b, ratio=0.8).index.tolist() == [[1, 2]]
    assert match_mnn(a, b, valid2=torch.tensor([True, True, False])).index.tolist() == [[0, 0]]
    assert match_mnn(torch.zeros(0, 2), b).index.shape == (0, 2)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        match_mnn(torch.zeros(3), b)
