"""Both extraction methods recover rendered points; empty heatmaps give no points."""

from __future__ import annotations

import pytest
import torch

from neurocorr.errors import ConfigError
from neurocorr.models.heatmapper.keypoints import extract_keypoints
from neurocorr.models.heatmapper.heatmaps import render_gaussian_heatmaps

POINTS = torch.tensor([[[10.3, 12.6], [30.0, 8.2], [40.7, 30.1], [20.2, 44.4], [50.5, 50.5]],
                       [[5.6, 6.1], [25.0, 25.0], [45.2, 12.9], [0.0, 0.0], [0.0, 0.0]]])
LABELS = torch.tensor([[0, 1, 1, 1, 2], [0, 1, 2, -1, -1]])


@pytest.mark.parametrize("method, options", [("peaks", {"threshold": 0.5, "window": 5}),
                                             ("meanshift", {"bandwidth": 4.0})])
def test_recovers_rendered_points_within_one_pixel(method: str, options: dict) -> None:
    heat = render_gaussian_heatmaps(POINTS, LABELS, 3, (60, 64), sigma=2.5)
    found = extract_keypoints(heat, method, [1, 8, 1], **options)
    assert found.xy.shape == (2, 3, 8, 2)
    for b in range(2):
        for k in range(3):
            truth = POINTS[b][LABELS[b] == k]
            pred = found.xy[b, k][found.valid[b, k]]
            assert pred.shape[0] == truth.shape[0], (method, b, k)
            dist = torch.cdist(pred.double(), truth.double())
            assert dist.amin(1).max() < 1.0 and dist.amin(0).max() < 1.0, (method, b, k, pred, truth)


@pytest.mark.parametrize("method", ["peaks", "meanshift"])
def test_empty_heatmap_gives_no_points(method: str) -> None:
    found = extract_keypoints(torch.zeros(2, 3, 16, 16), method, [1, 4, 1])
    assert not found.valid.any()


def test_start_and_end_keep_one_point_and_middle_is_capped() -> None:
    pts = torch.tensor([[[10.0, 10.0], [30.0, 30.0], [10.0, 30.0], [30.0, 10.0], [20.0, 20.0]]])
    heat = render_gaussian_heatmaps(pts, torch.tensor([[0, 0, 1, 1, 1]]), 3, (40, 40), sigma=2.0)
    for method in ("peaks", "meanshift"):
        found = extract_keypoints(heat, method, [1, 2, 1])
        assert found.valid[0].sum(-1).tolist() == [1, 2, 0], method


def test_unknown_method_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="extraction.method"):
        extract_keypoints(torch.zeros(1, 3, 4, 4), "argmax", [1, 1, 1])


def test_peaks_on_logits_survive_saturated_probabilities() -> None:
    # a confident model: sigmoid(logits) is exactly 1.0 over a disc, whose pixels all tie in NMS
    heat = render_gaussian_heatmaps(torch.tensor([[[20.3, 14.6]]]), torch.tensor([[1]]), 3, (32, 40), sigma=4.0)
    logits = 40.0 * heat - 10.0
    assert (logits.sigmoid()[0, 1] == 1.0).sum() > 5
    found = extract_keypoints(logits, "peaks", [1, 8, 1], threshold=0.5, window=5, logits=True)
    assert found.valid[0].sum(-1).tolist() == [0, 1, 0]
    assert (found.xy[0, 1, 0] - torch.tensor([20.3, 14.6])).norm() < 0.5
    assert 0.99 < found.score[0, 1, 0] <= 1.0
