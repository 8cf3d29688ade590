"""Repeatability, localisation error and matching accuracy on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from neurocorr.models.detector import repeatability as repeatability_module
from neurocorr.models.detector.repeatability import Repeatability, evaluate_pair, repeatability, select_keypoints

EYE = torch.eye(3, dtype=torch.float64)


def test_identity_homography_gives_repeatability_one_and_zero_error() -> None:
    xy = torch.rand(50, 2, dtype=torch.float64) * 60 + 2
    kp = {"xy": xy, "score": torch.rand(50), "desc": torch.eye(50)}
    out = evaluate_pair(kp, kp, EYE, (64, 64), (64, 64), settings=((300, 3.0), (60, 1.0)))
    assert out["rep_300_3px"] == 1.0 and out["rep_60_1px"] == 1.0
    assert out["loc_err_300_3px"] == 0.0
    assert out["match_acc"] == 1.0 and out["n_matches"] == 50


def test_homography_error_is_estimated_from_the_matches_over_the_given_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    xy = torch.rand(20, 2, dtype=torch.float64) * 60 + 2
    kp = {"xy": xy, "score": torch.rand(20), "desc": torch.eye(20)}
    assert evaluate_pair(kp, kp, EYE, (64, 64), (64, 64))["h_err"] < 1e-6
    calls = []

    def fake(xy1, xy2, H, size, trials, px, method):  # noqa: ANN001, ANN202
        calls.append((xy1.shape[0], trials, px, method))
        return 1.5

    monkeypatch.setattr(repeatability_module, "steady_corner_error", fake)
    out = evaluate_pair(kp, kp, EYE, (64, 64), (64, 64), homography_trials=7, ransac_px=2.0, ransac_method="magsac")
    assert out["h_err"] == 1.5 and calls == [(20, 7, 2.0, "magsac")]
    assert out["h_err_floor"] < 1e-4                                   # the floor is not the estimator's


def test_floor_is_taken_over_the_matches_after_the_match_steps() -> None:
    xy = torch.rand(20, 2, dtype=torch.float64) * 60 + 2
    kp = {"xy": xy, "score": torch.rand(20), "desc": torch.eye(20)}

    def off_by(px: float):  # a match step that moves every second point by px
        return lambda xy1, xy2, d1, d2: (xy1, xy2 + torch.tensor([px, 0.0], dtype=xy2.dtype))

    assert evaluate_pair(kp, kp, EYE, (64, 64), (64, 64), relocate=off_by(0.5))["h_err_floor"] == pytest.approx(0.5, abs=1e-4)
    assert evaluate_pair(kp, kp, EYE, (64, 64), (64, 64), relocate=off_by(1.5))["h_err_floor"] == math.inf
    assert evaluate_pair(kp, kp, EYE, (64, 64), (64, 64), relocate=off_by(1.5), floor_px=2.0)["h_err_floor"] == pytest.approx(1.5, abs=1e-4)


def test_hand_made_case_counts_both_directions() -> None:
    H = torch.tensor([[1.0, 0, 10], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)  # image 2 = image 1 shifted right 10 px
    xy1 = torch.tensor([[5.0, 5.0], [20.0, 5.0], [30.0, 30.0]], dtype=torch.float64)
    # warped: (15, 5), (30, 5), (40, 30). Image 2 points: (15.5, 5) near the first (0.5 px),
    # (32, 5) near the second (2 px), (20, 20) near nothing, (31, 6) also near the second (~1.41 px)
    xy2 = torch.tensor([[15.5, 5.0], [32.0, 5.0], [20.0, 20.0], [31.0, 6.0]], dtype=torch.float64)
    r3 = repeatability(xy1, xy2, H, 3.0)
    # 1 -> 2: kp1[0], kp1[1] repeat (kp1[2] at 10 px from (31, 6)), 2 -> 1: kp2[0], kp2[1], kp2[3] repeat
    assert r3["repeatability"].item() == pytest.approx(5 / 7)
    d = [0.5, math.sqrt(2), 0.5, 2.0, math.sqrt(2)]
    assert r3["loc_error"].item() == pytest.approx(sum(d) / 5, rel=1e-6)
    r1 = repeatability(xy1, xy2, H, 1.0)
    assert r1["repeatability"].item() == pytest.approx(2 / 7)


def test_only_covisible_top_k_points_count() -> None:
    H = torch.tensor([[1.0, 0, 10], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    xy = torch.tensor([[5.0, 5.0], [35.0, 5.0], [8.0, 8.0], [2.0, 2.0]], dtype=torch.float64)
    score = torch.tensor([0.1, 0.9, 0.5, 0.7])
    # (35, 5) maps to (45, 5), outside a 40 px wide image 2
    assert select_keypoints(xy, score, H, (40, 40), (40, 40), top_k=2).tolist() == [3, 2]
    kp1 = {"xy": xy, "score": score}
    kp2 = {"xy": xy[[0, 2, 3]] + torch.tensor([10.0, 0.0], dtype=torch.float64), "score": score[[0, 2, 3]]}
    assert evaluate_pair(kp1, kp2, H, (40, 40), (40, 40), settings=((300, 1.0),))["rep_300_1px"] == 1.0


def test_metric_class_averages_over_pairs() -> None:
    metric = Repeatability(top_k=10, threshold=1.0)
    xy = torch.tensor([[5.0, 5.0], [9.0, 9.0]], dtype=torch.float64)
    metric.update(xy, torch.ones(2), xy, torch.ones(2), EYE, (20, 20), (20, 20))
    metric.update(xy, torch.ones(2), xy + 5, torch.ones(2), EYE, (20, 20), (20, 20))
    assert metric.compute().item() == pytest.approx(0.5)


def test_dedupe_keeps_one_point_per_location() -> None:
    xy = torch.tensor([[5.0, 5.0], [5.3, 5.0], [9.0, 9.0], [5.1, 5.2]], dtype=torch.float64)
    score = torch.tensor([0.5, 0.9, 0.4, 0.1])
    assert select_keypoints(xy, score, EYE, (20, 20), (20, 20), top_k=10).tolist() == [1, 0, 2, 3]
    assert select_keypoints(xy, score, EYE, (20, 20), (20, 20), top_k=10, dedupe_px=1.0).tolist() == [1, 2]


def test_dedupe_also_thins_the_points_the_homography_is_estimated_from() -> None:
    """Six of the best points of image 1 are three corners and their twins 0.5 px away: without dedupe only
    three correct matches reach the estimate (too few for a homography); with it the six distinct corners do."""
    corners = torch.tensor([[8.0, 8.0], [50.0, 10.0], [12.0, 52.0], [48.0, 46.0], [30.0, 20.0], [20.0, 35.0],
                            [40.0, 30.0], [25.0, 12.0]], dtype=torch.float64)
    order = torch.arange(8, dtype=torch.float64)
    twins = corners + torch.tensor([0.5, 0.0], dtype=torch.float64)
    kp1 = {"xy": torch.cat([corners, twins]), "score": torch.cat([1.0 - 0.01 * order, 0.995 - 0.01 * order]).float(),
           "desc": torch.eye(16)}  # the twins' descriptors match nothing in image 2
    shift = torch.tensor([[1.0, 0.0, 3.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    kp2 = {"xy": corners + torch.tensor([3.0, 0.0], dtype=torch.float64), "score": (1.0 - 0.01 * order).float(),
           "desc": torch.eye(16)[:8]}
    plain = evaluate_pair(kp1, kp2, shift, (64, 64), (64, 64), settings=((6, 1.0),), homography_top_k=6)
    deduped = evaluate_pair(kp1, kp2, shift, (64, 64), (64, 64), settings=((6, 1.0),), homography_top_k=6, dedupe_px=1.0)
    assert plain["h_err"] == math.inf
    assert deduped["h_err"] < 1e-6
    assert deduped["rep_6_1px"] == 1.0 and plain["rep_6_1px"] < 1.0  # the twins take repeatability slots too


def test_negative_dedupe_is_refused() -> None:
    xy = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="dedupe_px"):
        select_keypoints(xy, torch.ones(2), EYE, (20, 20), (20, 20), top_k=2, dedupe_px=-1.0)
