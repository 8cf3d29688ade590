"""2-D sub-pixel peaks, detection over a pyramid with scale-space NMS, homography estimation and its AUC."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neurocorr.models.detector.descriptor import PolarDescriptor
from neurocorr.models.detector import homography
from neurocorr.models.detector.homography import (corner_error, corners, estimate_homography, floor_corner_error, homography_auc,
                                                  steady_corner_error)
from neurocorr.models.detector.keypoints import (describe_levels, detect_per_level, detect_pyramid, laplacian_levels,
                                                run_levels, score_peaks, snap_to_finest)
from neurocorr.models.detector.table import summarise
from neurocorr.models.detector.torch_model import DetectorOutput, EquivariantDetector
from neurocorr.ops.geometry import warp_points
from neurocorr.ops.peaks import refine_subpixel, refine_subpixel_2d


def quadratic_peak(cx: float, cy: float, size: int = 15) -> torch.Tensor:
    """A tilted elliptic paraboloid (strong x-y cross term) with its maximum at (cx, cy)."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    dx, dy = xs - cx, ys - cy
    return (10 - (dx * dx + dy * dy + 1.6 * dx * dy))[None, None]


def test_2d_fit_recovers_a_tilted_peak_that_the_1d_fits_miss() -> None:
    score = quadratic_peak(7.3, 6.8)
    flat = score.flatten(2).argmax(2, keepdim=True)
    exact = refine_subpixel_2d(score, flat)[0, 0, 0]
    one_d = refine_subpixel(score, flat)[0, 0, 0]
    torch.testing.assert_close(exact, torch.tensor([7.3, 6.8], dtype=torch.float64))
    assert (one_d - torch.tensor([7.3, 6.8], dtype=torch.float64)).norm() > 0.1
    xy, s, valid = score_peaks(score, top_k=1, border=1)
    torch.testing.assert_close(xy[0, 0], exact)


def test_2d_fit_falls_back_where_the_fit_is_no_maximum() -> None:
    score = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    score[..., 2, 2], score[..., 2, 3] = 1.0, 1.0                    # a ridge: singular Hessian
    flat = torch.tensor([[[12]]])
    torch.testing.assert_close(refine_subpixel_2d(score, flat), refine_subpixel(score, flat))


class BlobNet(torch.nn.Module):
    """Score = the image itself; orientation uniform; features = the image (a stand-in network)."""

    def forward(self, image: torch.Tensor) -> DetectorOutput:
        b, _, h, w = image.shape
        return DetectorOutput(score=image, orientation=torch.full((b, 8, h, w), 1 / 8), features=image)


def test_pyramid_detection_keeps_one_keypoint_per_structure_at_its_best_scale() -> None:
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((xs - 30) ** 2 + (ys - 34) ** 2) / (2 * 6.0**2))[None, None]
    describe = lambda f, xy, a: torch.cat([xy, a[..., None]], -1)  # noqa: E731
    kp, desc, best = detect_pyramid(BlobNet(), describe, blob, [1.0, 0.5], top_k=5, threshold=0.5, border=2)
    assert int(kp.valid.sum()) == 1                                   # the blob once, not once per scale
    assert (kp.xy[0, 0] - torch.tensor([30.0, 34.0])).norm() < 0.5
    assert best.shape == blob.shape and desc.shape == (1, 5, 3)
    kp_bare, no_desc, _ = detect_pyramid(BlobNet(), None, blob, [1.0, 0.5], top_k=5, threshold=0.5, border=2)
    assert no_desc is None                                            # a caller that describes the points itself
    assert torch.equal(kp_bare.xy, kp.xy) and torch.equal(kp_bare.angle, kp.angle)


def test_pyramid_detection_reuses_levels_the_caller_has_run() -> None:
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((xs - 30) ** 2 + (ys - 34) ** 2) / (2 * 6.0**2))[None, None]
    calls: list[tuple[int, ...]] = []
    net = BlobNet()
    net.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    fresh, _, best = detect_pyramid(net, None, blob, [1.0, 0.5], top_k=5, threshold=0.5, border=2)
    assert len(calls) == 2                                            # one run per level
    levels = run_levels(net, blob, [1.0, 0.5])
    calls.clear()
    reused, _, best_reused = detect_pyramid(net, None, blob, [1.0, 0.5], top_k=5, threshold=0.5, border=2, levels=levels)
    assert calls == []                                                # the network is not run again
    assert torch.equal(reused.xy, fresh.xy) and torch.equal(best_reused, best)
    with pytest.raises(ValueError, match="precomputed levels"):
        detect_pyramid(net, None, blob, [1.0, 0.5], top_k=5, levels=levels[:1])


@pytest.mark.parametrize("options", [{}, {"handcrafted": (0.0, 2.0), "harris_skip": 4.0, "descriptor_image": (0.0, 1.0)}],
                         ids=["plain", "handcrafted_skip_descriptor_image"])
def test_levels_read_for_their_descriptors_skip_the_score_and_nothing_else(options: dict) -> None:
    torch.manual_seed(0)
    net = EquivariantDetector(group_order=4, layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, **options).eval()
    with torch.no_grad():
        net.score_head[-1].weight.normal_()
        image = torch.rand(1, 1, 96, 80)  # level 0.5 large enough for the normalised image's 8 px window
        full = run_levels(net, image, [1.0, 0.5])
        partial = run_levels(net, image, [1.0, 0.5], scored=[1.0])
    assert torch.equal(partial[0][1].score, full[0][1].score) and partial[1][1].score is None
    for (level_a, out_a), (level_b, out_b) in zip(full, partial):
        assert torch.equal(level_a, level_b)
        assert torch.equal(out_a.orientation, out_b.orientation) and torch.equal(out_a.features, out_b.features)
    assert full[1][1].score is not None and full[1][1].score.std() > 1e-4


@pytest.mark.parametrize("autograd", [True, False], ids=["e2cnn", "plain-twins"])
def test_a_pyramid_of_pyramids_passes_each_size_through_the_blocks_once(autograd: bool) -> None:
    torch.manual_seed(0)
    net = EquivariantDetector(group_order=4, layer_1=1, layer_2=1, layer_3=1, pyramid_levels=3,
                              handcrafted=(0.0, 2.0), harris_skip=4.0).eval()
    with torch.no_grad():
        net.score_head[-1].weight.normal_()
    sizes: list[tuple[int, ...]] = []
    first_block = net.block1 if autograd else net._plain_twins()[0][0]  # without autograd the twins run
    first_block.register_forward_hook(
        lambda module, args, out: sizes.append(tuple(getattr(args[0], "tensor", args[0]).shape[-2:])))
    image = torch.rand(1, 1, 64, 48)
    with torch.set_grad_enabled(autograd):
        levels = run_levels(net, image, [1.0, 0.7071, 0.5])
        assert len(sizes) == len(set(sizes)) < 9                          # each size once, not 3 passes x 3 levels
        assert {(64, 48), (45, 34), (32, 24), (23, 17), (16, 12)} <= set(sizes)  # the image's own pyramid among them
        sizes.clear()
        alone = net(image)
    assert len(sizes) == 3
    for a, b in zip(levels[0][1], alone):  # the image's own level: the network's outputs, bit for bit
        assert torch.equal(a, b)
    assert [tuple(level.shape[-2:]) for level, _ in levels] == [(64, 48), (45, 34), (32, 24)]
    assert all(out.score is not None and out.features.shape[-2:] == level.shape[-2:] for level, out in levels)
    with pytest.raises(ValueError, match="with_score"):
        net.pyramid(image, [(64, 48)], [True, False])


def test_per_level_detection_keeps_a_structure_at_each_level_unless_deduplicated() -> None:
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((xs - 30) ** 2 + (ys - 34) ** 2) / (2 * 6.0**2))[None, None]
    levels = run_levels(BlobNet(), blob, [1.0, 0.5])
    maps = [out.score for _, out in levels]
    kp, desc, lvl = detect_per_level(levels, maps, (64, 64), top_k=5, threshold=0.5, border=2)
    assert kp.xy.shape == (1, 5, 2) and desc is None and lvl.shape == (1, 5)
    assert int(kp.valid.sum()) == 2 and sorted(lvl[kp.valid].tolist()) == [0, 1]   # once per level
    assert ((kp.xy[kp.valid] - torch.tensor([30.0, 34.0])).norm(dim=1) < 0.5).all()  # both mapped to the blob
    assert bool(kp.valid[0, :2].all()) and kp.score[0, 0] >= kp.score[0, 1]           # ranked together, valid first
    one, _, lvl_one = detect_per_level(levels, maps, (64, 64), top_k=5, threshold=0.5, border=2, dedupe_px=2.0)
    assert int(one.valid.sum()) == 1 and int(lvl_one[one.valid]) == 0                  # the finest one kept


def test_per_level_detection_maps_coarse_peaks_and_describes_in_their_level() -> None:
    fine = torch.zeros(1, 1, 64, 64)
    coarse = torch.zeros(1, 1, 32, 32)
    coarse[0, 0, 12, 10] = 1.0                                          # a peak the fine level does not have
    levels = [(torch.zeros(1, 1, 64, 64), BlobNet()(fine)), (torch.zeros(1, 1, 32, 32), BlobNet()(coarse))]
    describe = lambda f, xy, a: xy  # noqa: E731  (the level's own coordinates)
    kp, desc, lvl = detect_per_level(levels, [fine, coarse], (64, 64), top_k=3, threshold=0.5, border=2,
                                     subpixel=False, describe=describe)
    assert int(kp.valid.sum()) == 1 and int(lvl[0, 0]) == 1
    torch.testing.assert_close(kp.xy[0, 0], torch.tensor([20.5, 24.5]))  # (p + 0.5) / 0.5 - 0.5
    torch.testing.assert_close(desc[0, 0], torch.tensor([10.0, 12.0]))
    with pytest.raises(ValueError, match="peak maps"):
        detect_per_level(levels, [fine], (64, 64), top_k=3)
    with pytest.raises(ValueError, match="dedupe_px"):
        detect_per_level(levels, [fine, coarse], (64, 64), top_k=3, dedupe_px=-1.0)


def test_snap_to_finest_moves_points_onto_the_fine_peak_beside_them() -> None:
    fine = quadratic_peak(7.3, 6.8)
    # next to the peak; far from any; outside the map (an invalid slot of a padded top-k)
    xy = torch.tensor([[[8.0, 6.0], [1.0, 13.0], [-40.0, 90.0]]], dtype=torch.float64)
    snapped = snap_to_finest(fine, xy)
    torch.testing.assert_close(snapped[0, 0], torch.tensor([7.3, 6.8], dtype=torch.float64))
    torch.testing.assert_close(snapped[0, 1:], xy[0, 1:])                # no fine maximum beside them: kept
    with pytest.raises(ValueError, match="snap_to_finest"):
        snap_to_finest(fine[0], xy)


@pytest.mark.parametrize("blob_sigma, level", [(2.0, 0), (4.0, 2)])
def test_laplacian_levels_pick_the_blob_s_characteristic_scale(blob_sigma: float, level: int) -> None:
    ys, xs = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    blob = torch.exp(-((xs - 48) ** 2 + (ys - 48) ** 2) / (2 * blob_sigma**2))[None, None]
    scales = [1.0, 0.7071, 0.5]
    levels = [blob if s == 1.0 else F.interpolate(blob, scale_factor=s, mode="bilinear", antialias=True) for s in scales]
    xy = torch.tensor([[[48.0, 48.0]]])
    # the LoG of sigma 2 level px answers most where the blob is 2 px wide: level 1 for 2 px, level 0.5 for 4 px
    assert laplacian_levels(levels, xy, (96, 96)).item() == level


def image_as_features(image: torch.Tensor) -> DetectorOutput:
    """A stand-in network: the image is its own feature map, the orientation bin 0 everywhere."""
    orientation = torch.zeros(image.shape[0], 8, *image.shape[-2:])
    orientation[:, 0] = 1
    return DetectorOutput(score=image[:, :1], orientation=orientation, features=image)


def test_describe_levels_reads_a_zoomed_image_at_the_matching_level() -> None:
    g = torch.Generator().manual_seed(0)
    image1 = F.avg_pool2d(torch.rand(1, 1, 132, 132, generator=g), 5, 1)                     # (1, 1, 128, 128)
    image2 = F.interpolate(image1, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    xy1 = torch.tensor([[[40.0, 50.0], [70.5, 33.2], [90.0, 90.0]]])
    xy2 = (xy1 + 0.5) * 0.5 - 0.5                                      # the same places in the half-size image
    describe = PolarDescriptor((2.0, 4.0), 6)
    d1 = describe_levels(run_levels(image_as_features, image1, [1.0, 0.5]), describe, xy1, (128, 128))
    d2 = describe_levels(run_levels(image_as_features, image2, [1.0, 0.5]), describe, xy2, (64, 64))
    assert d1.shape == (1, 3, 2, 1 + 2 * 6)
    torch.testing.assert_close(d1[0, :, 1], d2[0, :, 0])               # image 1 at 1/2 = image 2 at full size
    assert (d1[0, :, 0] - d2[0, :, 0]).norm(dim=-1).min() > 0.05        # at the same level they differ


def test_homography_from_exact_matches_has_zero_corner_error() -> None:
    H = torch.tensor([[0.9, -0.2, 12.0], [0.25, 1.1, -4.0], [1e-4, -2e-4, 1.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    xy1 = torch.rand(40, 2, generator=g, dtype=torch.float64) * 100
    xy2 = warp_points(xy1, H)
    xy2[:8] += 30.0                                                    # outliers
    for method in ("usac", "ransac", "magsac"):
        assert corner_error(estimate_homography(xy1, xy2, method=method), H, (100, 120)) < 1e-3, method
    with pytest.raises(ValueError, match="lmeds"):
        estimate_homography(xy1, xy2, method="lmeds")
    assert estimate_homography(xy1[:3], xy2[:3]) is None and corner_error(None, H, (10, 10)) == math.inf
    assert corners((3, 5)).tolist() == [[0, 0], [4, 0], [4, 2], [0, 2]]


def test_steady_corner_error_is_the_median_over_orders_of_the_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    H = torch.tensor([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    xy1 = torch.rand(30, 2, generator=g, dtype=torch.float64) * 50
    xy2 = warp_points(xy1, H)
    xy2[:6] += 20.0                                                    # outliers
    one = steady_corner_error(xy1, xy2, H, (50, 60))                   # one trial: the plain estimate of this order
    assert one == corner_error(estimate_homography(xy1, xy2), H, (50, 60)) and one < 1e-3
    # an estimator whose result depends on the order: the error of trial t is t px (the first order gives 0)
    seen: list[torch.Tensor] = []

    def by_order(a: torch.Tensor, b: torch.Tensor, px: float, seed: int, method: str) -> torch.Tensor:
        seen.append(a.clone())
        return H + torch.tensor([[0.0, 0.0, float(len(seen) - 1)], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)

    monkeypatch.setattr(homography, "estimate_homography", by_order)
    assert steady_corner_error(xy1, xy2, H, (50, 60), trials=5) == pytest.approx(2.0)   # median of 0, 1, 2, 3, 4
    assert torch.equal(seen[0], xy1) and not torch.equal(seen[1], xy1)                  # first as given, then reordered
    assert sorted(seen[1][:, 0].tolist()) == sorted(xy1[:, 0].tolist())                 # the same matches
    with pytest.raises(ValueError, match="trials"):
        steady_corner_error(xy1, xy2, H, (50, 60), trials=0)
    with pytest.raises(ValueError, match="matched points"):
        steady_corner_error(xy1, xy2[:5], H, (50, 60))


def test_floor_is_the_least_squares_fit_through_the_truly_correct_matches() -> None:
    H = torch.tensor([[0.9, -0.2, 12.0], [0.25, 1.1, -4.0], [1e-4, -2e-4, 1.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    xy1 = torch.rand(60, 2, generator=g, dtype=torch.float64) * 100
    xy2 = warp_points(xy1, H)
    xy2[:20] += 25.0                                                   # outliers: no estimator could use them
    assert floor_corner_error(xy1, xy2, H, (100, 120)) < 1e-4
    # correct matches all displaced the same way: the floor is that displacement (the fit follows them)
    shifted = warp_points(xy1, H) + torch.tensor([0.6, 0.0], dtype=torch.float64)
    assert floor_corner_error(xy1, shifted, H, (100, 120)) == pytest.approx(0.6, abs=1e-4)
    # beyond inlier_px they no longer count: fewer than four left -> no estimate
    assert floor_corner_error(xy1, shifted, H, (100, 120), inlier_px=0.5) == math.inf
    assert floor_corner_error(xy1[:3], warp_points(xy1[:3], H), H, (100, 120)) == math.inf
    # the floor never exceeds what RANSAC gets from the same matches here
    noisy = warp_points(xy1, H) + torch.randn(60, 2, generator=g, dtype=torch.float64) * 0.3
    noisy[:20] += 25.0
    ransac = corner_error(estimate_homography(xy1, noisy), H, (100, 120))
    assert floor_corner_error(xy1, noisy, H, (100, 120)) <= ransac + 1e-9
    with pytest.raises(ValueError, match="inlier_px"):
        floor_corner_error(xy1, xy2, H, (100, 120), inlier_px=0.0)
    with pytest.raises(ValueError, match="matched points"):
        floor_corner_error(xy1, xy2[:5], H, (100, 120))


def test_auc_of_corner_errors() -> None:
    assert homography_auc([0.0, 0.0], 3.0) == pytest.approx(1.0)
    assert homography_auc([math.inf, math.inf], 3.0) == 0.0
    # one pair at 1 px of two: recall 0.5 from 1 px on -> area 0.5 * (3 - 1) / 3, plus the ramp from 0 to 1 px
    assert homography_auc([1.0, math.inf], 3.0) == pytest.approx((0.5 * 1 / 2 + 0.5 * 2) / 3)
    rows = [{"method": "m", "sequence": "s", "pair": i, "h_err": e} for i, e in enumerate([0.0, 2.0, math.inf])]
    for row, floor in zip(rows, [0.0, 0.5, 1.0]):
        row["h_err_floor"] = floor
    entry = [e for e in summarise(rows, ("h_auc_3px", "h_floor_3px")) if e["sequence"] == "average"][0]
    assert entry["h_auc_3px"] == pytest.approx(homography_auc([0.0, 2.0, math.inf], 3.0))
    assert entry["h_floor_3px"] == pytest.approx(homography_auc([0.0, 0.5, 1.0], 3.0))


def test_subpixel_modes_and_handcrafted_responses_ignore_contrast() -> None:
    from neurocorr.models.detector.torch_model import handcrafted_responses

    score = quadratic_peak(7.3, 6.8).float()
    xy2, _, _ = score_peaks(score, top_k=1, subpixel="2d")
    xy1, _, _ = score_peaks(score, top_k=1, subpixel="1d")
    xy0, _, _ = score_peaks(score, top_k=1, subpixel="none")
    assert xy0[0, 0].tolist() == [7.0, 7.0] and not torch.allclose(xy1, xy2)
    with pytest.raises(ValueError, match="subpixel"):
        score_peaks(score, subpixel="3d")
    image = torch.rand(2, 1, 32, 32)
    r = handcrafted_responses(image, (1.0, 2.0))
    assert r.shape == (2, 4, 32, 32) and r.abs().max() < 1
    torch.testing.assert_close(handcrafted_responses(0.3 * image + 0.2, (1.0, 2.0)), r, atol=1e-4, rtol=1e-3)
    harris_only = handcrafted_responses(image, (1.0, 2.0), hessian=False)  # the same Harris maps, no Hessian
    assert harris_only.shape == (2, 2, 32, 32)
    torch.testing.assert_close(harris_only, r[:, 0::2])


def test_harris_skip_makes_the_untrained_score_a_monotone_map_of_harris() -> None:
    from neurocorr.errors import ConfigError
    from neurocorr.models.detector.torch_model import EquivariantDetector, handcrafted_responses

    torch.manual_seed(0)
    net = EquivariantDetector(layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, handcrafted=(1.0,), harris_skip=4.0).eval()
    image = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        score = net(image).score
    harris = handcrafted_responses(image, (1.0,))[:, :1]
    torch.testing.assert_close(score, torch.sigmoid(4.0 * harris))
    with pytest.raises(ConfigError, match="harris_skip"):
        EquivariantDetector(harris_skip=4.0)


def test_score_residual_bounds_what_the_head_adds_to_harris() -> None:
    from neurocorr.errors import ConfigError
    from neurocorr.models.detector.torch_model import EquivariantDetector, handcrafted_responses

    torch.manual_seed(0)
    kwargs = dict(layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, handcrafted=(1.0,), harris_skip=4.0)
    bounded, free = EquivariantDetector(score_residual=0.5, **kwargs), EquivariantDetector(**kwargs)
    free.load_state_dict(bounded.state_dict())
    for net in (bounded, free):
        torch.nn.init.normal_(net.score_head[-1].weight, std=5.0)  # a head far from its zero start
        torch.nn.init.constant_(net.score_head[-1].bias, 3.0)
    image = torch.rand(1, 1, 40, 40)
    harris = 4.0 * handcrafted_responses(image, (1.0,))[:, :1]
    with torch.no_grad():
        added = torch.logit(bounded.eval()(image).score.double()) - harris
        added_free = torch.logit(free.eval()(image).score.double()) - harris
    assert added.abs().max() <= 0.5 + 1e-4 and added_free.abs().max() > 1.0
    # float32 sigmoids of large logits: the inverse is good to ~1e-3 there
    torch.testing.assert_close(added, 0.5 * torch.tanh(added_free / 0.5), atol=2e-3, rtol=1e-3)
    for bad in ({"score_residual": -1.0, **kwargs}, {"score_residual": 0.5}):
        with pytest.raises(ConfigError, match="score_residual"):
            EquivariantDetector(**bad)
