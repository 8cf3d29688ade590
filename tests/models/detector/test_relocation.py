"""Scale-covariant relocation of matches (``relocation.py``): smoke, shapes, bad input, module equals
function, the zoom case it exists for, and its wiring into the evaluation and the module's config."""

from __future__ import annotations

import pytest
import torch

from neurocorr.errors import ConfigError
from neurocorr.models.detector.baselines import harris_map, hessian_map
from neurocorr.models.detector.keypoints import level_size
from neurocorr.models.detector.relocation import (MatchRelocation, matched_level_pairs, relocate_matches,
                                                  relocate_points)
from neurocorr.models.detector.repeatability import evaluate_pair
from neurocorr.models.detector.torch_model import resize_level
from neurocorr.ops.peaks import find_peaks
from tests.models.detector.test_training import tiny_module


def rounded_square(size: int = 96) -> torch.Tensor:
    """``(1, H, W)`` in [0, 1]: a bright square, its edges blurred by 0.7 px."""
    image = torch.zeros(1, 1, size, size)
    image[..., 30:70, 26:66] = 1.0
    k = torch.exp(-torch.arange(-9, 10, dtype=torch.float32) ** 2 / (2 * 0.7**2))
    k = k / k.sum()
    image = torch.nn.functional.conv2d(image, k.view(1, 1, 1, -1), padding=(0, 9))
    image = torch.nn.functional.conv2d(image, k.view(1, 1, -1, 1), padding=(9, 0))
    return image[0]


def corner_near(image: torch.Tensor, xy: tuple[float, float]) -> torch.Tensor:
    """The Harris peak (1-D fits) of ``image`` ``(1, H, W)`` nearest to ``xy``."""
    peaks = find_peaks(harris_map(image[None]), top_k=50, threshold=0.0, window=3, border=2)
    pts = peaks.xy[0, 0][peaks.valid[0, 0]].double()
    return pts[(pts - torch.tensor(xy, dtype=torch.float64)).norm(dim=1).argmin()]


def zoom_pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image A, image B = A at half size, and the top-left corner found at full resolution in each."""
    a = rounded_square()
    b = resize_level(a[None], level_size(tuple(a.shape[-2:]), 0.5))[0]
    return a, b, corner_near(a, (26.0, 30.0)), corner_near(b, (12.5, 14.5))


def half(xy: torch.Tensor) -> torch.Tensor:
    return (xy + 0.5) * 0.5 - 0.5  # A's pixels -> B's


def one_hot_levels(first: int, second: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Descriptors ``(1, 2, 3)`` of one match whose only agreeing level pair is (``first``, ``second``)."""
    eye = torch.eye(3)
    d1 = torch.stack([eye[2], eye[2]])[None].clone()
    d2 = torch.stack([eye[1], eye[1]])[None].clone()
    d1[0, first], d2[0, second] = eye[0], eye[0]
    return d1, d2


def test_zoomed_in_point_is_found_again_at_the_other_image_s_scale() -> None:
    a, b, pa, pb = zoom_pair()
    before = (half(pa) - pb).norm()
    assert before > 0.3  # a corner's Harris peak lies about a window inside it: measured in pixels, it moves with zoom
    d1, d2 = one_hot_levels(1, 0)  # A read at level 0.5 matches B at full size: A is zoomed in
    ra, rb = relocate_matches(a, b, pa[None], pb[None], d1, d2, [1.0, 0.5], harris_map, 1.5)
    torch.testing.assert_close(rb[0], pb)
    assert (half(ra[0]) - pb).norm() < 0.1 * before
    # the same match the other way round relocates image 2's point
    rb2, ra2 = relocate_matches(b, a, pb[None], pa[None], d2, d1, [1.0, 0.5], harris_map, 1.5)
    torch.testing.assert_close(rb2[0], pb)
    torch.testing.assert_close(ra2, ra)


def test_points_stay_where_levels_agree_or_no_peak_is_near() -> None:
    a, b, pa, pb = zoom_pair()
    same = one_hot_levels(1, 1)
    ra, rb = relocate_matches(a, b, pa[None], pb[None], *same, [1.0, 0.5], harris_map, 1.5)
    torch.testing.assert_close((ra, rb), (pa[None], pb[None]))
    flat = torch.full_like(a, 0.5)  # no corner anywhere
    xy = torch.tensor([[40.0, 40.0], [3.0, 90.0]], dtype=torch.float64)
    torch.testing.assert_close(relocate_points(flat, xy, 0.5, harris_map, 1.5), xy)
    single = torch.randn(1, 4)  # one level: nothing says the zoom
    torch.testing.assert_close(relocate_matches(a, b, pa[None], pb[None], single, single, [1.0], harris_map)[0], pa[None])


def test_shapes_dtypes_and_empty_input() -> None:
    a, b, pa, pb = zoom_pair()
    xy = torch.stack([pa, pa + 1, pa - 2]).float()
    out = relocate_points(a, xy, 0.5, hessian_map, 1.5)
    assert out.shape == (3, 2) and out.dtype == torch.float32
    empty = torch.zeros(0, 2)
    assert relocate_points(a, empty, 0.5, harris_map).shape == (0, 2)
    r1, r2 = relocate_matches(a, b, empty, empty, torch.zeros(0, 2, 3), torch.zeros(0, 2, 3), [1.0, 0.5], harris_map)
    assert r1.shape == r2.shape == (0, 2)
    rgb = a.expand(3, -1, -1)
    torch.testing.assert_close(relocate_points(rgb, xy, 0.5, harris_map), relocate_points(a, xy, 0.5, harris_map))
    pairs = matched_level_pairs(*one_hot_levels(0, 1))
    assert pairs.tolist() == [[0, 1]] and pairs.dtype == torch.long


def test_bad_input_is_named() -> None:
    a = rounded_square()
    with pytest.raises(ValueError, match="ratio"):
        relocate_points(a, torch.zeros(1, 2), 1.5, harris_map)
    with pytest.raises(ValueError, match="radius"):
        relocate_points(a, torch.zeros(1, 2), 0.5, harris_map, 0.0)
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        relocate_points(a, torch.zeros(2, 3), 0.5, harris_map)
    with pytest.raises(ValueError, match="image"):
        relocate_points(torch.zeros(2, 8, 8), torch.zeros(1, 2), 0.5, harris_map)
    with pytest.raises(ValueError, match="one shape"):
        matched_level_pairs(torch.zeros(2, 3, 4), torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="scales"):
        relocate_matches(a, a, torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 3, 4), torch.zeros(1, 3, 4),
                         [1.0, 0.5], harris_map)
    with pytest.raises(ConfigError, match="describe_scales"):
        MatchRelocation([], harris_map)
    with pytest.raises(ConfigError, match="radius"):
        MatchRelocation([1.0, 0.5], harris_map, -1.0)


def test_module_equals_function() -> None:
    a, b, pa, pb = zoom_pair()
    d1, d2 = one_hot_levels(1, 0)
    module = MatchRelocation([1.0, 0.5], harris_map, 1.5)
    torch.testing.assert_close(module(a, b, pa[None], pb[None], d1, d2),
                               relocate_matches(a, b, pa[None], pb[None], d1, d2, [1.0, 0.5], harris_map, 1.5))
    # as a match step: the same points, and every match kept for the homography
    out1, out2, keep = module.apply(a, b, pa[None], pb[None], d1, d2)
    torch.testing.assert_close((out1, out2), module(a, b, pa[None], pb[None], d1, d2))
    assert keep.dtype == torch.bool and keep.tolist() == [True]


def test_evaluate_pair_estimates_the_homography_from_relocated_matches() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(40, 2, generator=g, dtype=torch.float64) * 90 + 5
    desc = torch.nn.functional.normalize(torch.randn(40, 8, generator=g), dim=1)
    kp = {"xy": xy, "score": torch.linspace(1, 0.1, 40), "desc": desc}
    H = torch.eye(3, dtype=torch.float64)
    seen = []

    def shift(xy1, xy2, d1, d2):
        seen.append(len(xy1))
        return xy1, xy2 + torch.tensor([6.0, 0.0], dtype=xy2.dtype)

    plain = evaluate_pair(kp, kp, H, (100, 100), (100, 100), ((10, 3.0),), homography_top_k=40)
    moved = evaluate_pair(kp, kp, H, (100, 100), (100, 100), ((10, 3.0),), homography_top_k=40, relocate=shift)
    assert plain["h_err"] < 1e-6 and seen == [40]
    assert abs(moved["h_err"] - 6.0) < 1e-6 and moved["match_acc"] == plain["match_acc"]  # matching: detected points


def test_evaluation_relocates_only_methods_described_by_the_model() -> None:
    image = rounded_square()
    module = tiny_module(describe_scales=[1.0, 0.5], baselines=["sift", "harris"], model_descriptor_baselines=["harris"])
    on = module.evaluation
    assert on._match_steps(module, "model", image, image) is not None
    assert on._match_steps(module, "harris", image, image) is not None
    assert on._match_steps(module, "sift", image, image) is None
    off = tiny_module(describe_scales=[1.0, 0.5], model_descriptor_baselines=["harris"], relocate_px=0.0, align_px=0.0)
    one_level = tiny_module(relocate_px=1.5, align_px=0.0)
    assert off.evaluation._match_steps(off, "model", image, image) is None
    assert one_level.evaluation._match_steps(one_level, "model", image, image) is None


@pytest.mark.parametrize("value", [-1.0, "far", True, 200.0])
def test_module_rejects_a_bad_relocation_radius(value) -> None:
    with pytest.raises(ConfigError, match="model.relocate_px"):
        tiny_module(relocate_px=value)


def test_module_relocates_only_with_several_describe_levels() -> None:
    assert tiny_module().match_relocation() is None  # one descriptor per point: no level pair to read
    assert tiny_module(describe_scales=[1.0, 0.5], relocate_px=0.0).match_relocation() is None
    relocation = tiny_module(describe_scales=[1.0, 0.5]).match_relocation()
    assert relocation.scales == [1.0, 0.5] and relocation.radius == 1.5 and relocation.response is harris_map
    assert tiny_module(describe_scales=[1.0, 0.5]).match_relocation("hessian").response is hessian_map
