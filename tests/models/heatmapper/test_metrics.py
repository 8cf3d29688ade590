"""PCK, mean distance and unmatched share on hand-made cases."""

from __future__ import annotations

import math

import torch

from neurocorr.models.heatmapper.metrics import KeypointMetrics


def test_hand_made_case() -> None:
    metric = KeypointMetrics(num_classes=3, threshold=10.0)
    # image 0: start exact; middle: one prediction 2 px off, one 62.8 px off; end predicted with no GT
    pred = torch.tensor([[[[0.0, 0.0], [9.0, 9.0]], [[10.0, 0.0], [50.0, 50.0]], [[3.0, 4.0], [0.0, 0.0]]]])
    valid = torch.tensor([[[True, False], [True, True], [True, False]]])
    gt = torch.tensor([[[0.0, 0.0], [12.0, 0.0], [100.0, 100.0], [7.0, 7.0]]])
    labels = torch.tensor([[0, 1, 1, -1]])
    metric.update(pred, valid, gt, labels)
    out = metric.compute()
    assert out["pck_start_end"] == 1.0  # the only start/end GT (start) is found
    assert out["mean_dist_start_end"] == 0.0  # the end prediction has no GT: no distance
    assert out["unmatched_start_end"] == 0.5
    assert out["pck_middle"] == 0.5
    assert math.isclose(out["mean_dist_middle"].item(), (2.0 + math.hypot(38, 50)) / 2, rel_tol=1e-6)
    assert out["unmatched_middle"] == 0.5
    assert math.isclose(out["pck"].item(), 2 / 3, rel_tol=1e-6)

    # a second batch accumulates: an end GT missed by a prediction 11 px away
    metric.update(torch.tensor([[[[0.0, 0.0]], [[0.0, 0.0]], [[11.0, 0.0]]]]), torch.tensor([[[False], [False], [True]]]),
                  torch.tensor([[[0.0, 0.0]]]), torch.tensor([[2]]))
    out = metric.compute()
    assert out["pck_start_end"] == 0.5
    assert math.isclose(out["mean_dist_start_end"].item(), 11.0 / 2, rel_tol=1e-6)
    assert math.isclose(out["unmatched_start_end"].item(), 2 / 3, rel_tol=1e-6)


def test_nothing_predicted_and_nothing_to_find() -> None:
    metric = KeypointMetrics(3, 5.0)
    metric.update(torch.zeros(2, 3, 4, 2), torch.zeros(2, 3, 4, dtype=torch.bool), torch.ones(2, 2, 2), torch.tensor([[0, 1], [2, -1]]))
    out = metric.compute()
    assert out["pck"] == 0.0 and out["pck_middle"] == 0.0
    assert math.isnan(out["mean_dist_middle"]) and math.isnan(out["unmatched_start_end"])
    empty = KeypointMetrics(3, 5.0)
    empty.update(torch.zeros(1, 3, 1, 2), torch.ones(1, 3, 1, dtype=torch.bool), torch.zeros(1, 0, 2), torch.zeros(1, 0, dtype=torch.long))
    out = empty.compute()
    assert math.isnan(out["pck"]) and out["unmatched_middle"] == 1.0


def test_per_image_thresholds_for_images_of_different_sizes() -> None:
    # two images, each with a start point 6 px off: within 10 px in the first, not within 5 px in the second
    pred = torch.tensor([[[[6.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]], [[[6.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])
    valid = torch.tensor([[[True], [False], [False]], [[True], [False], [False]]])
    gt, labels = torch.zeros(2, 1, 2), torch.zeros(2, 1, dtype=torch.long)
    metric = KeypointMetrics(3, threshold=100.0)
    metric.update(pred, valid, gt, labels, threshold=torch.tensor([10.0, 5.0]))
    out = metric.compute()
    assert out["pck_start_end"] == 0.5 and out["unmatched_start_end"] == 0.5 and out["mean_dist_start_end"] == 6.0
