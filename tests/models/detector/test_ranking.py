"""Fixed Harris positions ranked by a learned score: the repeat targets and their cross-entropy, the match
targets (``mutual_match_correct``), ``rank_by``, ``harris_score``, ``peaks_from="harris"`` in detection and
training, and bad values."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from neurocorr.errors import ConfigError
from neurocorr.models.detector.descriptor import PolarDescriptor
from neurocorr.models.detector.keypoints import Keypoints, detect_keypoints, rank_by, score_peaks
from neurocorr.models.detector.lightning_model import DetectorModule
from neurocorr.models.detector import lightning_model
from neurocorr.models.detector.loss import mutual_match_correct, repeat_bce, repeat_targets
from neurocorr.models.detector.torch_model import EquivariantDetector, handcrafted_responses, squashed_to_log
from tests.models.detector.test_training import crops, train_steps


def shift(dx: float, dy: float) -> torch.Tensor:
    return torch.tensor([[[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]]])


def ranked_net(**kwargs) -> EquivariantDetector:
    return EquivariantDetector(layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, head_hidden=4, descriptor_channels=4,
                               handcrafted=(0.0,), harris_skip=4.0, **kwargs)


def ranked_module(net: EquivariantDetector | None = None, **kwargs) -> DetectorModule:
    kwargs = {"score_weight": 0.0, "peaks_from": "harris", "rank_weight": 1.0, "rank_top_k": 16, "rank_candidates": 64, **kwargs}
    return DetectorModule(net=net or ranked_net(), descriptor=PolarDescriptor((2.0, 4.0), 4), desc_top_k=8,
                          optimizer=functools.partial(torch.optim.AdamW, lr=1e-2), **kwargs)


def randomise_head(net: EquivariantDetector) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.score_head.parameters():
            p.copy_(torch.randn(p.shape, generator=g))


def test_repeat_targets_are_one_where_the_warp_lands_on_a_peak_and_fall_with_distance() -> None:
    xy = torch.tensor([[[10.0, 10.0], [20.0, 5.0], [30.0, 30.0]]])
    other = torch.tensor([[[12.0, 10.0], [22.0, 6.0], [100.0, 100.0]]])
    t = repeat_targets(xy, other, torch.ones(1, 3, dtype=torch.bool), shift(2.0, 0.0), sigma=1.0)
    assert t.shape == (1, 3)
    torch.testing.assert_close(t[0, :2], torch.tensor([1.0, math.exp(-0.5)]))
    assert t[0, 2] < 1e-6                                               # nothing repeats it
    wider = repeat_targets(xy, other, torch.ones(1, 3, dtype=torch.bool), shift(2.0, 0.0), sigma=2.0)
    assert wider[0, 1] > t[0, 1]                                        # a wider sigma forgives more
    none = repeat_targets(xy, other, torch.zeros(1, 3, dtype=torch.bool), shift(2.0, 0.0))
    assert torch.equal(none, torch.zeros(1, 3))                         # invalid peaks do not count


def test_repeat_targets_and_bce_reject_bad_values() -> None:
    xy = torch.zeros(1, 2, 2)
    with pytest.raises(ConfigError, match="sigma"):
        repeat_targets(xy, xy, torch.ones(1, 2, dtype=torch.bool), shift(0, 0), sigma=0.0)
    with pytest.raises(ValueError, match="xy_other"):
        repeat_targets(xy, xy[0], torch.ones(1, 2, dtype=torch.bool), shift(0, 0))
    with pytest.raises(ValueError, match="share a shape"):
        repeat_bce(torch.rand(1, 3), torch.rand(1, 2), torch.ones(1, 3, dtype=torch.bool))


def test_repeat_bce_is_the_cross_entropy_over_valid_points_and_pulls_scores_to_the_targets() -> None:
    score = torch.tensor([[0.9, 0.2, 0.6, 0.5]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 0.3, 0.7]])
    valid = torch.tensor([[True, True, True, False]])
    loss = repeat_bce(score, target, valid)
    expected = F.binary_cross_entropy(score[:, :3], target[:, :3])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert score.grad[0, 3] == 0                                        # the invalid point is left alone
    assert score.grad[0, 0] < 0 and score.grad[0, 1] > 0 and score.grad[0, 2] > 0  # towards 1, 0, 0.3


def test_rank_by_rescores_at_the_keypoint_pixel_and_resorts_valid_points_first() -> None:
    xy = torch.tensor([[[1.2, 1.0], [3.0, 2.0], [0.0, 0.0], [2.0, 3.4]]])
    kp = Keypoints(xy=xy, score=torch.tensor([[0.9, 0.8, 0.7, 0.0]]), angle=torch.tensor([[0.1, 0.2, 0.3, 0.4]]),
                   valid=torch.tensor([[True, True, True, False]]))
    score = torch.zeros(1, 1, 5, 5)
    score[0, 0, 1, 1], score[0, 0, 2, 3], score[0, 0, 0, 0], score[0, 0, 3, 2] = 0.2, 0.6, 0.4, 0.99
    ranked = rank_by(kp, score)
    torch.testing.assert_close(ranked.score, torch.tensor([[0.6, 0.4, 0.2, 0.99]]))  # the invalid one last
    torch.testing.assert_close(ranked.xy[0, :3], xy[0, [1, 2, 0]])
    torch.testing.assert_close(ranked.angle, torch.tensor([[0.2, 0.3, 0.1, 0.4]]))
    assert ranked.valid.tolist() == [[True, True, True, False]]
    with pytest.raises(ValueError, match="score map"):
        rank_by(kp, score[0])


def test_harris_score_is_the_untrained_score_and_does_not_move_when_the_head_trains() -> None:
    torch.manual_seed(0)
    net = ranked_net().eval()
    image = crops(2, 40)["image"].float() / 255
    with torch.no_grad():
        untrained, fixed = net(image).score, net.harris_score(image)
        torch.testing.assert_close(fixed, untrained)
        torch.testing.assert_close(fixed, torch.sigmoid(4.0 * handcrafted_responses(image, (0.0,))[:, :1]))
        randomise_head(net)
        net.harris_skip.fill_(7.0)
        assert not torch.allclose(net(image).score, untrained)          # the score changed ...
        torch.testing.assert_close(net.harris_score(image), fixed)      # ... the positions map did not
    with pytest.raises(ConfigError, match="harris_skip"):
        EquivariantDetector(layer_1=1, layer_2=1, layer_3=1).harris_score(image)


def test_peaks_from_harris_keeps_harris_positions_and_ranks_them_by_the_score() -> None:
    torch.manual_seed(0)
    net = ranked_net()
    randomise_head(net)
    module = ranked_module(net).eval()
    image = crops(1, 48)["image"].float() / 255
    with torch.no_grad():
        kp, desc, score = module.detect(image)
        harris = detect_keypoints(net.harris_score(image), net(image).orientation, module.top_k, 0.0, module.nms_window,
                                  module.detect_border, module.subpixel)
    n = int(kp.valid.sum())
    assert n == int(harris.valid.sum()) > 10 and desc.shape[:2] == kp.xy.shape[:2]
    same = torch.cdist(kp.xy[0, :n], harris.xy[0, :n], compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert same.max() < 1e-6                                            # the same positions ...
    assert not torch.equal(kp.xy[0, :n], harris.xy[0, :n])              # ... in another order
    assert torch.all(kp.score[0, :n - 1] >= kp.score[0, 1:n])
    pixel = kp.xy[0, :n].round().long()
    torch.testing.assert_close(kp.score[0, :n], score[0, 0, pixel[:, 1], pixel[:, 0]])


def test_the_ranking_loss_trains_the_score_head_and_leaves_the_positions() -> None:
    torch.manual_seed(0)
    module = ranked_module()
    batch = module.on_after_batch_transfer(crops(3, 48), 0)
    image = batch["image1"]
    with torch.no_grad():
        before = module.net.harris_score(image)
    head = [p.detach().clone() for p in module.net.score_head.parameters()]
    losses = train_steps(module, batch, 3)
    assert torch.isfinite(losses["rank_loss"]) and losses["rank_loss"] > 0 and "kp_loss" not in losses
    assert not all(torch.equal(a, b) for a, b in zip(head, module.net.score_head.parameters()))
    with torch.no_grad():
        torch.testing.assert_close(module.net.harris_score(image), before)


def test_the_ranking_loss_lowers_the_score_of_points_that_do_not_repeat() -> None:
    # view 2 is noise unrelated to view 1: no view-1 peak repeats, so every target is 0 and the
    # learned score at the peaks must fall
    torch.manual_seed(0)
    module = ranked_module(desc_weight=0.0, ori_weight=0.0)
    batch = module.on_after_batch_transfer(crops(2, 48), 0)
    batch["image2"] = torch.rand_like(batch["image2"])
    first = float(module.compute_loss(batch)["rank_loss"])
    last = float(train_steps(module, batch, 15)["rank_loss"])  # the loss of the 15th step's parameters
    assert last < 0.7 * first


@pytest.mark.parametrize("kwargs, message", [
    ({"peaks_from": "corners"}, "peaks_from"),
    ({"peaks_from": "score", "rank_weight": 1.0}, "rank_weight"),
    ({"rank_weight": -1.0}, "rank_weight"),
    ({"rank_sigma": 0.0}, "rank_sigma"),
    ({"rank_top_k": 0}, "rank_top_k"),
    ({"rank_top_k": 65}, "rank_candidates"),
    ({"scales": [1.0, 0.5]}, "one scale"),
    ({"rank_target": "reliability"}, "rank_target"),
    ({"subpixel_map": "score"}, "subpixel_map"),
    ({"peaks_from": "score", "rank_weight": 0.0, "subpixel_map": "harris_log"}, "subpixel_map"),
])
def test_ranking_options_reject_bad_values(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        ranked_module(**kwargs)


def test_peaks_from_harris_needs_the_harris_skip() -> None:
    net = EquivariantDetector(layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, head_hidden=4, descriptor_channels=4)
    with pytest.raises(ConfigError, match="harris_skip"):
        ranked_module(net)


def test_the_ranking_options_compose_with_the_photos_experiment(make_cfg, tmp_path) -> None:
    from neurocorr.checkpoints import build_model
    from tests.conftest import TINY_DATA

    cfg = make_cfg("experiment=detector_photos_cpu", "model.peaks_from=harris", "model.rank_weight=1.0",
                   *TINY_DATA["textures"](tmp_path))
    module = build_model(cfg.model)
    assert module.peaks_from == "harris" and module.rank_weight == 1.0 and module.rank_sigma == 1.0
    with module.step_rng():
        batch = module.on_after_batch_transfer(crops(2, 48), 0)
    losses = module.compute_loss(batch)
    losses["loss"].backward()
    last = module.net.score_head[-1]  # starts at zero beside the Harris skip, and the loss reaches it
    assert losses["rank_loss"] > 0 and last.weight.grad is not None and last.weight.grad.abs().sum() > 0


def test_the_log_harris_input_tells_strong_corners_apart_and_needs_handcrafted_responses() -> None:
    torch.manual_seed(0)
    net = ranked_net(harris_log_input=True).eval()
    assert net.score_head[0].in_channels == ranked_net().score_head[0].in_channels + 1
    image = crops(1, 40)["image"].float() / 255
    seen = {}
    net.score_head.register_forward_hook(lambda module, args, out: seen.update(x=args[0]))
    with torch.no_grad():
        net(image)
        x = handcrafted_responses(image, (0.0,))[:, :1] / (1 - handcrafted_responses(image, (0.0,))[:, :1].abs())
    torch.testing.assert_close(seen["x"][:, -1:], torch.log1p(x.abs()), rtol=1e-3, atol=1e-4)
    assert seen["x"][:, -1:].max() > 2 * seen["x"][:, -1:].median()     # not squashed flat at the top
    with pytest.raises(ConfigError, match="harris_log_input"):
        EquivariantDetector(layer_1=1, layer_2=1, layer_3=1, harris_log_input=True)


def test_the_export_says_where_keypoints_come_from() -> None:
    from neurocorr.models.detector.export import preprocessing

    assert preprocessing(ranked_module())["keypoints"].startswith("peaks of the peak_map output, sigmoid(4 x Harris)")
    assert "log(1 + |x|)" not in preprocessing(ranked_module())["keypoints"]
    assert preprocessing(ranked_module(subpixel_map="harris_log"))["keypoints"].endswith("not on the sigmoid")
    assert preprocessing(ranked_module(peaks_from="score", rank_weight=0.0))["keypoints"] == "peaks of the score map, ranked by the score"


def test_squashed_to_log_inverts_the_squash() -> None:
    x = torch.tensor([-1e4, -3.0, -0.5, 0.0, 0.5, 3.0, 1e4])
    torch.testing.assert_close(squashed_to_log(x / (1 + x.abs())), torch.sign(x) * torch.log1p(x.abs()), rtol=1e-3, atol=1e-5)


def test_the_log_skip_ranks_as_harris_untrained_and_a_bounded_head_reorders_only_near_equal_corners() -> None:
    torch.manual_seed(0)
    image = crops(1, 48)["image"].float() / 255
    net = ranked_net(harris_skip_form="log", score_residual=0.5).eval()
    with torch.no_grad():
        net.harris_skip.fill_(1.0)
        harris = net.harris_score(image).flatten()
        untrained = net(image).score.flatten()
        assert torch.equal(untrained.argsort(stable=True), harris.argsort(stable=True))  # the head starts at zero
        randomise_head(net)
        trained = net(image).score.flatten()
    log_x = squashed_to_log(handcrafted_responses(image, (0.0,))[:, :1]).flatten()
    i, j = torch.randint(0, log_x.numel(), (2, 20000), generator=torch.Generator().manual_seed(2))
    apart = (log_x[i] - log_x[j]).abs() > 2 * 0.5 + 1e-3    # Harris ratios beyond exp(2 x bound)
    close = ~apart & (log_x[i] != log_x[j])
    kept = (trained[i] > trained[j]) == (log_x[i] > log_x[j])
    assert apart.sum() > 1000 and kept[apart].all()         # never reordered
    assert not kept[close].all()                            # the head does reorder near-equal ones


def test_a_bad_harris_skip_form_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="harris_skip_form"):
        ranked_net(harris_skip_form="linear")
    with pytest.raises(ConfigError, match="harris_skip > 0"):
        EquivariantDetector(layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, head_hidden=4, descriptor_channels=4,
                            handcrafted=(0.0,), harris_skip=0.0, harris_skip_form="log")


def test_mutual_match_correct_needs_a_mutual_nearest_neighbour_at_the_warp() -> None:
    xy1 = torch.tensor([[[10.0, 10.0], [30.0, 12.0], [20.0, 40.0], [50.0, 50.0]]])
    xy2 = xy1 + torch.tensor([3.0, -1.0])                                 # view 2 = view 1 shifted
    H, valid = shift(3.0, -1.0), torch.ones(1, 4, dtype=torch.bool)
    desc = torch.eye(4)[None]
    ok1, ok2 = mutual_match_correct(desc, desc, valid, valid, xy1, xy2, H)
    assert ok1.all() and ok2.all()                                        # every descriptor finds its own point
    swapped = desc[:, [1, 0, 2, 3]]                                       # points 0 and 1 matched to each other
    ok1, ok2 = mutual_match_correct(desc, swapped, valid, valid, xy1, xy2, H)
    assert ok1.tolist() == [[False, False, True, True]] and ok2.tolist() == [[False, False, True, True]]
    ok1, _ = mutual_match_correct(desc, desc, valid, valid, xy1, xy2, shift(6.5, -1.0), px=3.0)
    assert not ok1.any()                                                  # matched, but 3.5 px off the warp
    one_way = torch.stack([desc[0, 0], desc[0, 0], desc[0, 2], desc[0, 3]])[None]  # view 2's 0 and 1 look alike
    ok1, ok2 = mutual_match_correct(desc, one_way, valid, valid, xy1, xy2, H)
    assert not ok1[0, 1] and not ok2[0, 1] and ok1[0, 2:].all()           # point 1's nearest is not mutual
    gone = valid.clone()
    gone[0, 2] = False
    ok1, ok2 = mutual_match_correct(desc, desc, valid, gone, xy1, xy2, H)
    assert not ok1[0, 2] and not ok2[0, 2] and ok1[0, [0, 1, 3]].all()   # its correspondent does not take part


def test_mutual_match_correct_rejects_bad_input() -> None:
    desc, xy, valid = torch.eye(3)[None], torch.zeros(1, 3, 2), torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(ConfigError, match="px"):
        mutual_match_correct(desc, desc, valid, valid, xy, xy, shift(0, 0), px=0.0)
    with pytest.raises(ValueError, match="desc2"):
        mutual_match_correct(desc, desc[:, :, :2], valid, valid, xy, xy, shift(0, 0))
    with pytest.raises(ValueError, match="valid"):
        mutual_match_correct(desc, desc, valid[:, :2], valid, xy, xy, shift(0, 0))


def test_the_match_target_is_the_repeat_target_where_the_descriptor_matches_and_zero_elsewhere(monkeypatch) -> None:
    seen: dict[str, torch.Tensor] = {}

    def spy_targets(*args, **kwargs):
        seen.setdefault("repeat", [])
        seen["repeat"].append(repeat_targets(*args, **kwargs))
        return seen["repeat"][-1]

    def spy_match(*args, **kwargs):
        seen["ok"] = mutual_match_correct(*args, **kwargs)
        return seen["ok"]

    def spy_bce(score, target, valid):
        seen["target"] = target
        return repeat_bce(score, target, valid)

    for name, spy in (("repeat_targets", spy_targets), ("mutual_match_correct", spy_match), ("repeat_bce", spy_bce)):
        monkeypatch.setattr(lightning_model, name, spy)
    module = ranked_module(rank_target="match")
    views = module.on_after_batch_transfer(crops(), 0)
    same = {**views, "image2": views["image1"].clone(), "mask2": views["mask1"].clone(), "H": torch.eye(3).repeat(4, 1, 1)}
    same["image2"][2:] = views["image1"][2:].flip(0)   # pairs 0, 1: one view twice (all match); 2, 3: two images
    losses = module.compute_loss(same)
    repeat, ok = torch.cat(seen["repeat"], 1), torch.cat(seen["ok"], 1)
    torch.testing.assert_close(seen["target"], repeat * ok)
    assert ok[:2].sum() > 10 * ok[2:].sum()           # one view twice matches; two images hardly ever do ...
    assert ((repeat[2:] > 0.5) & ~ok[2:]).any()       # ... so their chance repeats are labelled 0
    assert 0 < float(losses["rank_matched"]) < 1
    seen.clear()
    ranked_module(rank_target="repeat").compute_loss(same)
    assert "ok" not in seen and torch.equal(seen["target"], torch.cat(seen["repeat"], 1))


def test_a_saturated_peak_is_refined_on_the_map_given_not_on_its_plateau() -> None:
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    true = torch.tensor([10.3, 12.35])
    bump = torch.exp(-((xx - true[0]) ** 2 + (yy - true[1]) ** 2) / (2 * 2.0**2))[None, None]
    saturated = torch.sigmoid(12 * bump)                                  # nearly flat on top, the same peak
    for mode in ("1d", "2d"):
        flat_fit, _, _ = score_peaks(saturated, 1, 0.0, 3, 2, mode)
        fit, _, _ = score_peaks(saturated, 1, 0.0, 3, 2, mode, refine_on=bump.log())  # the log of a Gaussian: exact
        assert (fit[0, 0] - true).norm() < 1e-3 < (flat_fit[0, 0] - true).norm()
    with pytest.raises(ValueError, match="refine_on"):
        score_peaks(saturated, 1, refine_on=bump[..., :-1])


def test_harris_log_refines_the_same_keypoints_in_the_same_order() -> None:
    torch.manual_seed(0)
    net = ranked_net()
    randomise_head(net)
    image = crops(1, 48)["image"].float() / 255
    with torch.no_grad():
        fitted = ranked_module(net, subpixel_map="peaks", subpixel="1d").eval().detect(image)[0]
        logged = ranked_module(net, subpixel_map="harris_log", subpixel="1d").eval().detect(image)[0]
        harris, log_harris = net.harris_score_and_log(image)
        torch.testing.assert_close(harris, net.harris_score(image))
    order = log_harris.flatten().argsort()
    assert (harris.flatten()[order].diff() >= 0).all()                  # an increasing function of it
    n = int(fitted.valid.sum())
    assert n > 10 and torch.equal(fitted.valid, logged.valid) and torch.equal(fitted.score[:, :n], logged.score[:, :n])
    torch.testing.assert_close(fitted.xy[:, :n].round(), logged.xy[:, :n].round())  # the same pixels, order ...
    assert (fitted.xy[:, :n] - logged.xy[:, :n]).abs().max() > 0.05                 # ... placed by another fit
