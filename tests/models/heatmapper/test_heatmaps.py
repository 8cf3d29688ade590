"""Gaussian heatmap rendering against the direct formula."""

from __future__ import annotations

import math

import pytest
import torch

from neurocorr.models.heatmapper.heatmaps import GaussianHeatmaps, render_gaussian_heatmaps


def direct(points: list[tuple[float, float, int]], k: int, h: int, w: int, sigma: float, cutoff: float) -> torch.Tensor:
    out = [[[0.0] * w for _ in range(h)] for _ in range(k)]
    for i in range(h):
        for j in range(w):
            for x, y, c in points:
                d2 = (j - x) ** 2 + (i - y) ** 2
                if d2 <= (cutoff * sigma) ** 2:
                    out[c][i][j] = max(out[c][i][j], math.exp(-d2 / (2 * sigma**2)))
    return torch.tensor(out, dtype=torch.float64)


def test_matches_direct_formula_with_max_per_class_and_padding_ignored() -> None:
    pts = [(3.3, 4.7, 0), (10.0, 2.0, 1), (12.5, 9.25, 1), (5.0, 5.0, 2)]
    points = torch.tensor([[[x, y] for x, y, _ in pts] + [[7.0, 7.0]]], dtype=torch.float64)
    labels = torch.tensor([[c for _, _, c in pts] + [-1]])
    heat = render_gaussian_heatmaps(points, labels, 3, (12, 16), sigma=2.0, cutoff=3.0)
    assert heat.shape == (1, 3, 12, 16) and heat.dtype == torch.float64
    torch.testing.assert_close(heat[0], direct(pts, 3, 12, 16, 2.0, 3.0))


def test_cutoff_and_float_values() -> None:
    heat = GaussianHeatmaps(1, (40, 40), sigma=3.0, cutoff=2.0)(torch.tensor([[[20.0, 20.0]]]), torch.tensor([[0]]))
    assert heat.dtype == torch.float32
    assert heat[0, 0, 20, 20] == 1.0
    assert heat[0, 0, 20, 26] > 0 and heat[0, 0, 20, 27] == 0  # 6 px = 2 sigma kept, 7 px cut
    assert 0 < heat[0, 0, 20, 23].item() < 1 and heat.unique().numel() > 10  # not quantised


def test_no_points_gives_zeros_and_bad_shapes_raise() -> None:
    assert render_gaussian_heatmaps(torch.zeros(2, 0, 2), torch.zeros(2, 0, dtype=torch.long), 3, (8, 8), 2.0).abs().sum() == 0
    with pytest.raises(ValueError):
        render_gaussian_heatmaps(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 3, (8, 8), 2.0)
    with pytest.raises(ValueError):
        render_gaussian_heatmaps(torch.zeros(1, 1, 2), torch.zeros(1, 1, dtype=torch.long), 3, (8, 8), 0.0)
