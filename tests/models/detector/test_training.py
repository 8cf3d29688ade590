"""Training pieces: seeded two-view warps with padding and photometric changes, the score-map and
descriptor losses, the loss going down on the CPU, the family contract's parts."""

from __future__ import annotations

import functools

import pytest
import torch

from neurocorr.errors import ConfigError
from neurocorr.models.detector.augment import Photometric, WarpRanges, make_views, photometric
from neurocorr.models.detector.descriptor import PolarDescriptor
from neurocorr.ops.affine_shape import AffineShape
from neurocorr.models.detector.lightning_model import DetectorModule
from neurocorr.models.detector.loss import (IndexProposal, PeakyRepeatability, ScoreMapTriplet, hardest_in_batch_triplet,
                                           ring_offsets, shifted_negative_triplet, window_soft_argmax)
from neurocorr.models.detector.torch_model import EquivariantDetector
from neurocorr.ops.geometry import warp_image


def tiny_module(**kwargs) -> DetectorModule:
    net = EquivariantDetector(layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, head_hidden=4, descriptor_channels=4)
    kwargs.setdefault("loss", PeakyRepeatability(patch=8))
    return DetectorModule(net=net, descriptor=PolarDescriptor((2.0, 4.0), 4), desc_top_k=8,
                          optimizer=functools.partial(torch.optim.Adam, lr=1e-2), **kwargs)


def crops(n: int = 4, size: int = 40) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size + 4, size + 4, generator=g), 5, 1)
    return {"image": (smooth * 255).to(torch.uint8)}


def train_steps(module: DetectorModule, batch: dict[str, torch.Tensor], steps: int, lr: float = 1e-2) -> dict[str, torch.Tensor]:
    """``steps`` AdamW steps of ``module`` on one two-view ``batch``; the last step's losses."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr)
    for _ in range(steps):
        losses = module.compute_loss(batch)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    return losses


def test_views_are_seeded_by_the_step_and_leave_the_global_rng_alone() -> None:
    module = tiny_module()
    state = torch.get_rng_state()
    first = module.on_after_batch_transfer(crops(), 0)
    second = module.on_after_batch_transfer(crops(), 0)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first["H"], second["H"]) and torch.equal(first["image2"], second["image2"])
    assert not torch.allclose(first["H"][0], first["H"][1])           # fresh per sample
    module.rng_seed = 1
    assert not torch.allclose(module.on_after_batch_transfer(crops(), 0)["H"], first["H"])


def test_views_cover_zoom_and_full_rotation_with_exact_zero_padding() -> None:
    torch.manual_seed(0)
    image = crops(64, 48)["image"].float() / 255
    views = make_views(image, WarpRanges(), Photometric(enabled=False))
    H = views["H"].double()
    scale = H[:, :2, :2].det().abs().sqrt()
    assert scale.min() < 0.75 and scale.max() > 1.4                   # zoom out and in
    angle = torch.atan2(H[:, 1, 0], H[:, 0, 0])
    assert angle.min() < -2.5 and angle.max() > 2.5                   # the full circle
    for key in ("1", "2"):
        pad = views[f"mask{key}"] == 0
        assert pad.any() and (views[f"image{key}"][pad] == 0).all()
    # view 2 is view 1 moved by H where both are valid
    moved = warp_image(views["image1"], views["H"], (48, 48))
    inside = (warp_image(views["mask1"], views["H"], (48, 48)) > 0.999) & (views["mask2"] > 0)
    assert (moved - views["image2"])[inside].abs().mean() < 0.03


def test_photometric_changes_are_drawn_per_image_and_can_be_off() -> None:
    torch.manual_seed(0)
    image = torch.rand(4, 1, 32, 32)
    a, b = photometric(image, Photometric()), photometric(image, Photometric())
    assert a.shape == image.shape and 0 <= a.min() and a.max() <= 1
    assert not torch.allclose(a, b) and not torch.allclose(a[0] - image[0], a[1] - image[1])
    assert torch.equal(photometric(image, Photometric(enabled=False)), image)
    with pytest.raises(ConfigError, match="zoom"):
        WarpRanges(zoom=(2.0, 0.5))


def test_peaky_loss_prefers_agreeing_sharp_maps() -> None:
    loss = PeakyRepeatability(patch=8)
    mask = torch.ones(1, 1, 32, 32)
    peaks = torch.zeros(1, 1, 32, 32)
    peaks[..., 4::8, 4::8] = 1.0
    flat = torch.full_like(peaks, 0.9)
    shifted = peaks.roll(3, -1)
    assert loss(peaks, peaks, peaks, mask) < 0.2                       # agree and peaky
    assert loss(peaks, shifted, peaks, mask) > loss(peaks, peaks, peaks, mask) + 0.5
    assert loss(flat, flat, flat, mask) > 0.9                          # saturated maps are not rewarded
    with pytest.raises(ConfigError, match="patch"):
        PeakyRepeatability(patch=2)


def test_window_soft_argmax_finds_each_cells_peak_in_map_pixels() -> None:
    score = torch.zeros(2, 1, 20, 17)                       # cropped to 2 x 2 cells of 8 px
    score[0, 0, 5, 9] = 1.0                                 # cell (row 0, col 1)
    score[1, 0, 12, 3] = 0.5                                # cell (row 1, col 0)
    xy, top = window_soft_argmax(score, 8, temperature=0.01)
    assert xy.shape == (2, 2, 2, 2) and top.shape == (2, 2, 2)
    torch.testing.assert_close(xy[0, 0, 1], torch.tensor([9.0, 5.0]))
    torch.testing.assert_close(xy[1, 1, 0], torch.tensor([3.0, 12.0]))
    torch.testing.assert_close(xy[0, 1, 1], torch.tensor([11.5, 11.5]))  # a flat cell: its centre
    assert top[0, 0, 1] == 1.0 and top[1, 1, 0] == 0.5 and top[0, 1, 0] == 0.0
    with pytest.raises(ValueError, match="8-px window"):
        window_soft_argmax(torch.zeros(1, 1, 6, 20), 8, 0.1)


def test_index_proposal_wants_coinciding_sharp_peaks_and_has_gradients() -> None:
    loss = IndexProposal(windows=(8, 16), temperature=0.02, peaky_weight=0.0)
    mask = torch.ones(1, 1, 32, 32)
    peaks = torch.zeros(1, 1, 32, 32)
    peaks[..., 3::8, 5::8] = 1.0
    assert loss(peaks, peaks, peaks, mask) < 1e-6
    one_px, three_px = loss(peaks, peaks.roll(1, -1), peaks, mask), loss(peaks, peaks.roll(3, -1), peaks, mask)
    assert 0 < one_px < three_px
    outside = torch.zeros_like(mask)
    outside[..., :16, :] = 1                                # the shifted half outside the mask: not counted
    half = peaks.clone()
    half[..., 16:, :] = peaks[..., 16:, :].roll(3, -1)
    assert loss(peaks, half, peaks, outside) < 1e-6 < loss(peaks, half, peaks, mask)
    anchor = torch.rand(1, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    # the cell weights are detached on purpose, so gradcheck the positions, and see the loss reach them
    assert torch.autograd.gradcheck(lambda a: window_soft_argmax(a, 8, 0.5)[0], (anchor,))
    IndexProposal(windows=(8,), temperature=0.5, peaky_weight=0.0)(anchor, torch.rand_like(anchor), anchor,
                                                                   torch.ones_like(anchor)).backward()
    assert torch.isfinite(anchor.grad).all() and anchor.grad.abs().sum() > 0
    with_peaky = IndexProposal(windows=(8,), temperature=0.02, peaky_weight=1.0, patch=8)
    flat = torch.full_like(peaks, 0.9)
    assert with_peaky(flat, flat, flat, mask) > with_peaky(peaks, peaks, peaks, mask) + 0.5  # flat maps lose
    for bad in ({"windows": []}, {"windows": [1]}, {"temperature": 0.0}):
        with pytest.raises(ConfigError):
            IndexProposal(**bad)


def test_hardest_in_batch_triplet_takes_the_closest_wrong_descriptor() -> None:
    a = torch.nn.functional.normalize(torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.6, 0.8]]]), dim=-1)
    p = a.clone()
    xy = torch.tensor([[[0.0, 0.0], [50.0, 0.0]], [[0.0, 0.0], [50.0, 0.0]]])
    valid = torch.ones(2, 2, dtype=torch.bool)
    loss = hardest_in_batch_triplet(a, p, valid, xy, margin=1.0)
    # d_ap = 0; the hardest negatives: (0,1)<->(1,1) at 0.632, (1,0) at distance sqrt(2) from (0,1)
    d = torch.cdist(a.flatten(0, 1), p.flatten(0, 1)).fill_diagonal_(float("inf"))
    expected = torch.relu(1.0 - torch.minimum(d.min(0).values, d.min(1).values)).mean()
    torch.testing.assert_close(loss, expected)
    # two points of one image closer than exclude_px are not each other's negatives
    near = torch.zeros(1, 2, 2)
    assert hardest_in_batch_triplet(a[:1], p[:1], valid[:1], near, exclude_px=8.0) == 0


def test_shifted_negative_triplet_takes_the_closest_shifted_descriptor() -> None:
    a = torch.nn.functional.normalize(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), dim=-1)
    p = a.clone()
    far = torch.nn.functional.normalize(torch.tensor([[[[-1.0, 0.0], [0.0, -1.0]], [[1.0, 0.0], [-1.0, 0.0]]]]), dim=-1)
    valid = torch.ones(1, 2, dtype=torch.bool)
    # point 0: shifted descriptors at distance 2 and sqrt(2) -> no loss with margin 0.2;
    # point 1: both shifted descriptors at distance sqrt(2) -> no loss either
    assert shifted_negative_triplet(a, p, far, valid, margin=0.2) == 0
    near = far.clone()
    near[0, 1, 1] = torch.nn.functional.normalize(torch.tensor([0.1, 1.0]), dim=0)  # almost point 1's positive
    d_as = (a[0, 1] - near[0, 1, 1]).norm()
    expected = torch.relu(0.2 - d_as) / 2  # point 0 contributes 0; mean over the two valid points
    torch.testing.assert_close(shifted_negative_triplet(a, p, near, valid, margin=0.2), expected)
    # invalid points do not count
    only0 = torch.tensor([[True, False]])
    assert shifted_negative_triplet(a, p, near, only0, margin=0.2) == 0
    with pytest.raises(ValueError, match=r"\(B, K, S, D\)"):
        shifted_negative_triplet(a, p, near[:, :, 0], valid)
    offsets = ring_offsets(2.0, 8)
    assert offsets.shape == (8, 2)
    torch.testing.assert_close(offsets.norm(dim=-1), torch.full((8,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(offsets.sum(0), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="radius"):
        ring_offsets(0.0)


def test_shifted_negatives_add_a_loss_that_trains_position_sensitive_descriptors() -> None:
    torch.manual_seed(0)
    module = tiny_module(desc_shift_px=2.0, desc_shift_margin=0.5)
    batch = module.on_after_batch_transfer(crops(3, 40), 0)
    first = module.compute_loss(batch)
    assert "shift_loss" in first and 0 < float(first["shift_loss"]) < float(first["desc_loss"]) + 1e-6
    last = train_steps(module, batch, 15)
    assert float(last["shift_loss"]) < float(first["shift_loss"]), (first["shift_loss"], last["shift_loss"])
    assert "shift_loss" not in tiny_module().compute_loss(batch)  # off by default
    for bad in ({"desc_shift_px": -1.0}, {"desc_shift_margin": 0.0}):
        with pytest.raises(ConfigError, match="desc_shift"):
            tiny_module(**bad)


def test_losses_include_padding_orientation_and_descriptor_terms() -> None:
    module = tiny_module()
    batch = module.on_after_batch_transfer(crops(3, 40), 0)
    losses = module.compute_loss(batch)
    assert set(losses) == {"kp_loss", "pad_loss", "ori_loss", "desc_loss", "loss"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["pad_loss"] > 0
    with pytest.raises(ConfigError, match="desc_mining"):
        tiny_module(desc_mining="random")
    roll = tiny_module(desc_mining="roll", loss=ScoreMapTriplet("ssim", 1.0))
    assert torch.isfinite(roll.compute_loss(batch)["desc_loss"])


def test_loss_decreases_over_a_few_steps_on_the_cpu() -> None:
    torch.manual_seed(0)
    module = tiny_module()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    batch = module.on_after_batch_transfer(crops(4, 40), 0)  # the same views every step: this tests the optimisation
    losses = []
    for _ in range(12):
        loss = module.compute_loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.02, losses


def test_contract_parts_batch_of_one_and_validation_metrics() -> None:
    module = tiny_module(eval_settings=[[100, 2.0]])
    assert module.validation_metrics() == ["val/loss", "val/rep_100_2px", "val/match_acc", "val/rep_match"]
    assert module.missing_batch_keys(["image1", "image2"]) == ["H"]
    assert module.missing_batch_keys(["image"]) == []
    with pytest.raises(TypeError):
        DetectorModule(EquivariantDetector(), optimizer=torch.optim.Adam)  # keyword-only
    with pytest.raises(ConfigError, match="scales"):
        tiny_module(scales=[1.0, 2.0])
    with pytest.raises(ConfigError, match="describe_scales"):
        tiny_module(describe_scales=[1.0, 0.0])
    with pytest.raises(ConfigError, match="ransac_method"):
        tiny_module(ransac_method="lmeds")
    for trials in (0, 2.5, True):
        with pytest.raises(ConfigError, match="homography_trials"):
            tiny_module(homography_trials=trials)
    b = module.on_after_batch_transfer(crops(1, 32), 0)
    with pytest.raises(ConfigError, match="batch_size >= 2"):
        module.compute_loss(b)


def test_score_weight_zero_freezes_the_harris_score_and_trains_the_descriptor() -> None:
    torch.manual_seed(0)
    net = EquivariantDetector(layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, head_hidden=4, descriptor_channels=4,
                              handcrafted=(0.0,), harris_skip=4.0)
    module = DetectorModule(net=net, descriptor=PolarDescriptor((2.0, 4.0), 4), desc_top_k=8, score_weight=0.0,
                            optimizer=functools.partial(torch.optim.AdamW, lr=1e-2))
    batch = module.on_after_batch_transfer(crops(3, 40), 0)
    head = [p.detach().clone() for p in net.score_head.parameters()] + [net.harris_skip.detach().clone()]
    desc_before = net.descriptor_head.weight.detach().clone()
    losses = train_steps(module, batch, 2)
    assert "kp_loss" not in losses and "pad_loss" not in losses and "desc_loss" in losses
    after = list(net.score_head.parameters()) + [net.harris_skip]
    assert all(torch.equal(a, b) for a, b in zip(head, after))           # the score is untouched
    assert not torch.equal(desc_before, net.descriptor_head.weight)      # the descriptor trained
    net.eval()
    with torch.no_grad():  # score = sigmoid(skip x Harris): its order is Harris's
        score = net(batch["image1"]).score
    from neurocorr.models.detector.torch_model import handcrafted_responses
    harris = handcrafted_responses(batch["image1"], (0.0,))[:, :1]
    torch.testing.assert_close(score, torch.sigmoid(4.0 * harris))


def test_describe_scales_give_every_keypoint_a_descriptor_per_level() -> None:
    torch.manual_seed(0)
    module = tiny_module(top_k=20, describe_scales=[1.0, 0.5]).eval()
    image = module.on_after_batch_transfer(crops(2, 48), 0)["image1"]
    with torch.no_grad():
        kp, desc, score = module.detect(image)
        borrowed = module.describe(image, kp.xy)                       # what Harris / Hessian points are given
        module.describe_scales = []
        plain_kp, plain, _ = module.detect(image)
    assert desc.shape == (2, 20, 2, plain.shape[-1]) and score.shape == (2, 1, 48, 48)
    torch.testing.assert_close(borrowed, desc)
    torch.testing.assert_close(plain_kp.xy, kp.xy)                     # the levels change descriptors only
    torch.testing.assert_close(desc[:, :, 0], plain)                   # level 1.0 is the one-level descriptor
    torch.testing.assert_close(desc.norm(dim=-1), torch.ones(2, 20, 2))


def test_per_level_pyramid_detection_finds_points_on_each_level() -> None:
    torch.manual_seed(0)
    module = tiny_module(top_k=400, scales=[1.0, 0.5], pyramid_nms="per_level", describe_scales=[1.0, 0.5]).eval()
    image = module.on_after_batch_transfer(crops(2, 48), 0)["image1"]
    with torch.no_grad():
        kp, desc, score = module.detect(image)
        module.level_dedupe_px = 8.0                                   # coarse points this close to a fine one
        deduped, _, _ = module.detect(image)
        module.scales = [1.0]
        fine, _, _ = module.detect(image)
    assert desc.shape == (2, 400, 2, desc.shape[-1]) and score.shape == (2, 1, 48, 48)
    ranked = torch.where(kp.valid, kp.score, torch.full_like(kp.score, -1.0))
    assert bool((ranked[:, :-1] >= ranked[:, 1:]).all())                # all levels ranked together, valid first
    n, n_deduped, n_fine = (int(k.valid.sum()) for k in (kp, deduped, fine))
    assert n_fine < n and n_fine <= n_deduped < n                      # the coarse level adds points, some near fine ones
    near_fine = torch.cdist(kp.xy[0][kp.valid[0]], fine.xy[0][fine.valid[0]]).min(1).values
    assert int((near_fine < 0.05).sum()) >= int(fine.valid[0].sum())  # the fine level's points are all there
    # (0.05 px: a 1-D fit on the sigmoid's flat top moves with the last bits of the network's output)


def test_per_level_points_without_describe_scales_are_described_in_their_own_level() -> None:
    torch.manual_seed(0)
    module = tiny_module(top_k=60, scales=[1.0, 0.5], pyramid_nms="per_level").eval()
    image = module.on_after_batch_transfer(crops(1, 48), 0)["image1"]
    with torch.no_grad():
        kp, desc, _ = module.detect(image)
        module.scales = [1.0]
        fine, fine_desc, _ = module.detect(image)
    assert desc.shape == (1, 60, fine_desc.shape[-1])
    d = torch.cdist(kp.xy[0], fine.xy[0]).masked_fill(~fine.valid[0][None], float("inf"))
    dist, j = d.min(1)
    same = kp.valid[0] & (dist < 1e-3) & (kp.score[0] == fine.score[0][j])  # the fine level's own points
    assert int(same.sum()) > 0 and int((kp.valid[0] & ~same).sum()) > 0   # and coarse ones besides
    torch.testing.assert_close(desc[0][same], fine_desc[0][j[same]], atol=1e-4, rtol=0)
    coarse = kp.valid[0] & ~same
    assert float((desc[0][coarse].norm(dim=-1) - 1).abs().max()) < 1e-5
    with torch.no_grad():
        at_full_resolution = module.describe(image, kp.xy)[0]
    assert float((desc[0][coarse] - at_full_resolution[coarse]).abs().max()) > 1e-3  # read in the coarse level


@pytest.mark.parametrize("levels", [[], [1.0, 0.5]])
def test_affine_shapes_change_descriptors_not_keypoints(levels: list) -> None:
    torch.manual_seed(0)
    module = tiny_module(top_k=20, describe_scales=levels).eval()
    image = module.on_after_batch_transfer(crops(2, 48), 0)["image1"]
    with torch.no_grad():
        kp, circles, _ = module.detect(image)
        module.affine = AffineShape(sigma=3.0, max_ratio=4.0)
        kp_a, ellipses, _ = module.detect(image)
        borrowed = module.describe(image, kp_a.xy)                      # what Harris / Hessian points are given
    torch.testing.assert_close(kp_a.xy, kp.xy)
    assert ellipses.shape == circles.shape
    assert float((ellipses - circles).abs().max()) > 1e-3              # the rings moved
    torch.testing.assert_close(borrowed, ellipses)                      # baselines are described alike


@pytest.mark.parametrize("bad", [{"affine_sigma": -1.0}, {"affine_max_ratio": 0.5},
                                 {"affine_sigma": 5.0, "scales": [1.0, 0.5]}])
def test_bad_affine_settings_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError, match="affine_sigma"):
        tiny_module(**bad)


def test_negative_evaluation_dedupe_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.dedupe_px"):
        tiny_module(dedupe_px=-0.5)


@pytest.mark.parametrize("bad", [{"pyramid_nms": "orb"}, {"level_dedupe_px": -1.0},
                                 {"pyramid_nms": "per_level", "snap_finest": True}])
def test_bad_pyramid_settings_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError, match="pyramid_nms|snap_finest"):
        tiny_module(scales=[1.0, 0.5], **bad)


def test_validation_logs_repeatability_matching_and_their_mean() -> None:
    module = tiny_module(eval_settings=[[50, 3.0]], top_k=50)
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))  # type: ignore[method-assign]
    views = module.on_after_batch_transfer(crops(2, 40), 0)
    batch = {"image1": (views["image1"] * 255).to(torch.uint8), "image2": (views["image2"] * 255).to(torch.uint8),
             "H": views["H"].double()}
    module.eval()
    with torch.no_grad():
        module.validation_step(module.on_after_batch_transfer(batch, 0), 0)
        module.on_validation_epoch_end()
    rep, match = logged["val/rep_50_3px"], logged["val/match_acc"]
    assert 0 < rep <= 1 and 0 <= match <= 1 and abs(logged["val/rep_match"] - (rep + match) / 2) < 1e-6


def test_the_index_proposal_loss_composes_and_trains_the_score(make_cfg, tmp_path) -> None:
    from neurocorr.checkpoints import build_model
    from tests.conftest import TINY_DATA

    cfg = make_cfg("experiment=detector_photos_cpu", "loss=msip", "model.score_weight=1.0", "loss.windows=[8,16]",
                   *TINY_DATA["textures"](tmp_path))
    module = build_model(cfg.model)
    assert isinstance(module.loss_fn, IndexProposal) and module.loss_fn.windows == (8, 16)
    with module.step_rng():
        batch = module.on_after_batch_transfer(crops(2, 48), 0)
    losses = module.compute_loss(batch)
    assert torch.isfinite(losses["loss"]) and losses["kp_loss"] > 0
    losses["loss"].backward()
    last = module.net.score_head[-1]  # starts at zero beside the Harris skip, and the loss reaches it
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
