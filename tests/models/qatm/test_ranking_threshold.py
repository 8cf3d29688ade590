"""Scores that mean something across scenes: the ranking term of the matching loss (every template
in every scene of the batch), bare training templates, and the box threshold calibrated on
validation pairs and kept in checkpoints (model.match.min_score=auto)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from neurocorr.backbones.vgg import vgg19_features
from neurocorr.models.qatm.boxes import extract_boxes
from neurocorr.models.qatm.lightning_model import QATMModule
from neurocorr.models.qatm.losses import ScoreMapCrossEntropy, ScoreMapRanking
from neurocorr.models.qatm.torch_model import MatchResult, QATMNet
from neurocorr.models.qatm.training import ThresholdCalibration, bare_templates, calibrate_threshold, cross_log_scores


def peak_maps(heights: list[list[float]], h: int = 6, w: int = 7) -> torch.Tensor:
    """``(B, B, h, w)`` log maps with a peak of ``heights[i][j]`` at cell (3, 2) over a floor of -5."""
    maps = torch.full((len(heights), len(heights), h, w), -5.0)
    maps[..., 2, 3] = torch.tensor(heights)
    return maps


def test_ranking_term_wants_the_own_scene_a_margin_above_the_others():
    loss = ScoreMapRanking(margin=1.0, weight=1.0)
    centres = torch.tensor([[3.0, 2.0], [3.0, 2.0]])
    separated = peak_maps([[0.0, -2.0], [-2.0, 0.0]])
    confused = peak_maps([[0.0, -0.2], [-0.2, 0.0]])  # each template nearly as good in the other scene
    ce = ScoreMapCrossEntropy()(separated[[0, 1], [0, 1]], centres)
    torch.testing.assert_close(loss(separated, centres), ce)  # gap 2 > margin: the cross-entropy alone
    assert float(loss(confused, centres)) == pytest.approx(float(ce) + 0.8, abs=1e-5)
    assert loss(separated[[0, 1], [0, 1]], centres) == ce  # (B, H, W) maps: no other scenes


def test_every_template_in_every_scene_and_alpha_learns_through_the_ranking():
    torch.manual_seed(0)
    net = QATMNet(vgg19_features(width=0.125), learn_alpha=True)
    g = torch.Generator().manual_seed(1)
    templates = F.interpolate(torch.rand(3, 3, 8, 8, generator=g), size=(40, 40), mode="bilinear")
    scenes = F.interpolate(torch.rand(3, 3, 12, 12, generator=g), size=(64, 64), mode="bilinear")
    cross = cross_log_scores(net, templates, scenes, context=8, stride=4)
    assert cross.shape == (3, 3, 16, 16)
    torch.testing.assert_close(cross[[0, 1, 2], [0, 1, 2]], net.pair_log_scores(templates, scenes, 8, 4), atol=1e-4, rtol=1e-4)
    finite = torch.isfinite(cross)
    cross.masked_fill(~finite, 0).sum().backward()
    assert net.qatm.alpha.grad is not None and float(net.qatm.alpha.grad.abs()) > 0


def test_bare_templates_replace_the_context_by_reflection():
    torch.manual_seed(0)
    t = torch.rand(4, 3, 24, 24)
    assert torch.equal(bare_templates(t, 4, 0.0), t)
    bare = bare_templates(t, 4, 1.0)
    torch.testing.assert_close(bare, F.pad(t[..., 4:-4, 4:-4], (4, 4, 4, 4), mode="reflect"))
    assert torch.equal(bare[..., 4:-4, 4:-4], t[..., 4:-4, 4:-4])


def test_calibrated_threshold_lies_between_present_and_absent_scores():
    t = calibrate_threshold(torch.tensor([0.8, 0.9, 1.2]), torch.tensor([0.2, 0.3, 0.5]))
    assert 0.5 < t < 0.8 and t == pytest.approx((0.5 * 0.8) ** 0.5)
    overlap = calibrate_threshold(torch.tensor([0.4, 0.9, 1.0, 1.1]), torch.tensor([0.2, 0.3, 0.5, 0.6]))
    assert 0.6 < overlap <= 0.9  # one positive lost, every negative rejected
    assert calibrate_threshold(torch.tensor([1.0]), torch.tensor([])) != calibrate_threshold(torch.tensor([1.0]), torch.tensor([]))  # NaN


def test_calibration_takes_negatives_from_pairs_of_another_template():
    cal = ThresholdCalibration()
    a, b = torch.zeros(3, 4, 4, dtype=torch.uint8), torch.ones(3, 4, 4, dtype=torch.uint8)
    scene_a1, scene_a2, scene_b = (torch.full((3, 8, 8), v, dtype=torch.uint8) for v in (1, 2, 3))
    assert cal.other_scene(a) is None
    cal.remember(a, scene_a1)
    assert cal.other_scene(a) is None  # only scenes of the same template so far
    cal.remember(a, scene_a2)
    assert cal.other_scene(b) is scene_a2
    cal.remember(b, scene_b)
    assert cal.other_scene(a) is scene_b and cal.other_scene(b) is scene_a2


def one_template(best: float) -> MatchResult:
    fs = torch.zeros(1, 8, 8)
    fs[0, 4, 4] = best
    return MatchResult(fs, fs, 4, torch.tensor([[2, 2]]), torch.tensor([[8, 8]]))


def test_min_score_auto_comes_from_the_checkpointed_calibration():
    assert len(extract_boxes(one_template(0.5), min_score=0.6).score) == 0
    assert len(extract_boxes(one_template(0.7), min_score=0.6).score) == 1
    make = functools.partial(QATMModule, objective="matching", loss=ScoreMapRanking(), evaluation={"baselines": []},
                             optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
                             match={"scales": [1.0], "min_score": "auto"})
    model = make(net=QATMNet(vgg19_features(width=0.125)))
    assert model.match_args["min_score"] is None  # not calibrated yet
    model.score_threshold.fill_(0.42)
    state = model.state_dict()
    again = make(net=QATMNet(vgg19_features(width=0.125)))
    again.load_state_dict(state)
    assert again.match_args["min_score"] == pytest.approx(0.42) and again.match_args["scales"] == [1.0]
    del state["score_threshold"]  # a checkpoint from before the calibration still loads (threshold unset)
    again.load_state_dict(state)
    assert again.match_args["min_score"] is None
