"""Mutual nearest neighbours and the ratio test."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurocorr.models.detector.matching import descriptor_distance, match_mnn


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


def test_multi_level_distance_is_the_smallest_over_level_pairs() -> None:
    g = torch.Generator().manual_seed(1)
    d1, d2 = torch.randn(5, 3, 8, generator=g), torch.randn(7, 3, 8, generator=g)
    brute = torch.stack([torch.cdist(d1[:, a], d2[:, b]) for a in range(3) for b in range(3)]).amin(0)
    torch.testing.assert_close(descriptor_distance(d1, d2), brute)
    torch.testing.assert_close(descriptor_distance(d1[:, 0], d2[:, 0]), torch.cdist(d1[:, 0], d2[:, 0]))


def test_multi_level_mnn_matches_points_seen_at_another_level() -> None:
    """Image 2 is image 1 zoomed: what image 1 shows at level l, image 2 shows at level l + 1."""
    g = torch.Generator().manual_seed(2)
    d1 = F.normalize(torch.randn(30, 3, 16, generator=g), dim=-1)
    perm = torch.randperm(30, generator=g)
    d2 = F.normalize(torch.randn(30, 3, 16, generator=g), dim=-1)  # unrelated at levels 0 ...
    d2[:, 1:] = d1[perm, :2] + 0.01 * torch.randn(30, 2, 16, generator=g)  # ... the same one level down
    same_level = match_mnn(d1[:, 0], d2[:, 0])
    assert (perm[same_level.index[:, 1]] == same_level.index[:, 0]).float().mean() < 0.2
    m = match_mnn(d1, d2)
    assert m.index.shape == (30, 2) and (perm[m.index[:, 1]] == m.index[:, 0]).all()
    with pytest.raises(ValueError, match=r"\(N, L, D\)"):
        match_mnn(d1, d2[:, 0])
