"""Alignment of matches by their image patches (``alignment.py``): the rotated and the zoomed case it exists
for, rejection, shapes, bad input, module equals function, and its place among the module's match steps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neurocorr.errors import ConfigError
from neurocorr.models.detector.alignment import MatchAlignment, MatchSteps, align_matches
from neurocorr.models.detector.relocation import MatchRelocation
from neurocorr.ops.filters import gaussian_blur
from tests.models.detector.test_training import tiny_module


def texture(size: int = 128, seed: int = 0) -> torch.Tensor:
    """``(1, H, W)`` in [0, 1]: smooth random texture (noise blurred by 2 px)."""
    g = torch.Generator().manual_seed(seed)
    image = gaussian_blur(torch.rand(1, 1, size, size, generator=g), 2.0)
    return ((image - image.min()) / (image.max() - image.min()))[0]


def similarity(xy: torch.Tensor, angle_deg: float, zoom: float, centre1: float, centre2: float) -> torch.Tensor:
    """Points of image 1 ``(K, 2)`` in image 2 = image 1 rotated by ``angle_deg`` and zoomed by ``zoom`` about
    its centre."""
    a = math.radians(angle_deg)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
    return centre2 + zoom * (xy.double() - centre1) @ rot.T


def warped(image: torch.Tensor, angle_deg: float, zoom: float, size2: int) -> torch.Tensor:
    """``image`` ``(1, H, W)`` seen through :func:`similarity`, on a ``size2`` px canvas (bilinear)."""
    size1 = image.shape[-1]
    c1, c2 = (size1 - 1) / 2, (size2 - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(size2, dtype=torch.float64), torch.arange(size2, dtype=torch.float64),
                            indexing="ij")
    a = math.radians(-angle_deg)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
    back = c1 + (torch.stack([xs, ys], -1) - c2) @ rot.T / zoom  # image 2's pixels in image 1
    grid = (2 * back / (size1 - 1) - 1).float()[None]
    return F.grid_sample(image[None], grid, mode="bilinear", align_corners=True)[0]


def matches(angle_deg: float, zoom: float, size2: int, error_px: float = 0.7):
    """Image 1, image 2, points of image 1 (K, 2), their true positions in image 2 and those positions moved
    ``error_px`` in varied directions (a detector's disagreement)."""
    image1 = texture()
    image2 = warped(image1, angle_deg, zoom, size2)
    g = torch.Generator().manual_seed(1)
    xy1 = torch.rand(12, 2, generator=g, dtype=torch.float64) * 40 + 44
    true2 = similarity(xy1, angle_deg, zoom, 63.5, (size2 - 1) / 2)
    turn = torch.rand(12, generator=g, dtype=torch.float64) * 2 * math.pi
    off = torch.stack([torch.cos(turn), torch.sin(turn)], 1) * error_px * max(zoom, 1.0)
    return image1, image2, xy1, true2, true2 + off


def test_rotated_matches_are_aligned_to_a_tenth_of_a_pixel() -> None:
    image1, image2, xy1, true2, xy2 = matches(angle_deg=70.0, zoom=1.0, size2=128)
    levels = torch.zeros(len(xy1), 2, dtype=torch.long)
    aligned, ok = align_matches(image1, image2, xy1, xy2, levels, [1.0])
    assert ok.all()
    assert (aligned - true2).norm(dim=1).max() < 0.1 < (xy2 - true2).norm(dim=1).min()


def test_zoomed_matches_are_aligned_at_the_level_pair_their_descriptors_matched_at() -> None:
    # image 2 sees image 1 at half size, rotated: image 1's level 0.5 against image 2 at full size
    image1, image2, xy1, true2, xy2 = matches(angle_deg=-30.0, zoom=0.5, size2=64, error_px=0.4)
    levels = torch.tensor([[1, 0]]).repeat(len(xy1), 1)
    aligned, ok = align_matches(image1, image2, xy1, xy2, levels, [1.0, 0.5])
    assert ok.float().mean() >= 0.9
    assert (aligned[ok] - true2[ok]).norm(dim=1).max() < 0.1
    # the same pair read at the finest level pair with this zoom: (2, 1) is (1, 0) one level down
    finer, ok2 = align_matches(image1, image2, xy1, xy2, levels + 1, [1.0, 0.5, 0.25])
    torch.testing.assert_close(finer, aligned)
    assert torch.equal(ok2, ok)


def test_unrelated_patches_keep_their_points() -> None:
    image1, _, xy1, _, xy2 = matches(angle_deg=0.0, zoom=1.0, size2=128)
    other = texture(seed=5)
    levels = torch.zeros(len(xy1), 2, dtype=torch.long)
    aligned, ok = align_matches(image1, other, xy1, xy2, levels, [1.0])
    assert not ok.any()
    assert torch.equal(aligned, xy2)


def test_points_too_near_the_border_keep_their_points() -> None:
    image1, image2, _, _, _ = matches(angle_deg=0.0, zoom=1.0, size2=128)
    xy = torch.tensor([[3.0, 60.0], [60.0, 125.0]], dtype=torch.float64)
    aligned, ok = align_matches(image1, image2, xy, xy + 0.5, torch.zeros(2, 2, dtype=torch.long), [1.0])
    assert not ok.any() and torch.equal(aligned, xy + 0.5)


def test_shapes_dtypes_and_empty_input() -> None:
    image1, image2, xy1, _, xy2 = matches(angle_deg=0.0, zoom=1.0, size2=128)
    levels = torch.zeros(len(xy1), 2, dtype=torch.long)
    aligned, ok = align_matches(image1[0], image2.expand(3, -1, -1), xy1.float(), xy2.float(), levels, [1.0])
    assert aligned.shape == (len(xy1), 2) and aligned.dtype == torch.float32 and ok.dtype == torch.bool
    empty = torch.zeros(0, 2)
    out, ok = align_matches(image1, image2, empty, empty, torch.zeros(0, 2, dtype=torch.long), [1.0])
    assert out.shape == (0, 2) and ok.shape == (0,)


def test_bad_input_is_named() -> None:
    image = texture()
    xy = torch.zeros(3, 2)
    levels = torch.zeros(3, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        align_matches(image, image, xy, torch.zeros(2, 2), levels, [1.0])
    with pytest.raises(ValueError, match="levels"):
        align_matches(image, image, xy, xy, levels[:2], [1.0])
    with pytest.raises(ValueError, match="scales"):
        align_matches(image, image, xy, xy, levels + 1, [1.0])
    with pytest.raises(ValueError, match="window"):
        align_matches(image, image, xy, xy, levels, [1.0], window=1)
    with pytest.raises(ValueError, match="image"):
        align_matches(torch.zeros(2, 5, 8, 8), image, xy, xy, levels, [1.0])
    with pytest.raises(ConfigError, match="min_ncc"):
        MatchAlignment([1.0], min_ncc=1.5)


def test_module_equals_function() -> None:
    image1, image2, xy1, _, xy2 = matches(angle_deg=-30.0, zoom=0.5, size2=64, error_px=0.4)
    eye = torch.eye(4)
    d1 = torch.stack([eye[2], eye[0]])[None].repeat(len(xy1), 1, 1)  # level 1 of image 1 ...
    d2 = torch.stack([eye[0], eye[3]])[None].repeat(len(xy1), 1, 1)  # ... agrees with level 0 of image 2
    out1, out2 = MatchAlignment([1.0, 0.5])(image1, image2, xy1, xy2, d1, d2)
    expected, _ = align_matches(image1, image2, xy1, xy2, torch.tensor([[1, 0]]).repeat(len(xy1), 1), [1.0, 0.5])
    assert torch.equal(out1, xy1)
    torch.testing.assert_close(out2, expected)


def test_module_chains_relocation_then_alignment() -> None:
    assert tiny_module(align_px=0.0).match_steps() is None  # one descriptor level, alignment off: nothing to do
    only = tiny_module().match_steps()
    assert [type(s) for s in only.steps] == [MatchAlignment] and only.steps[0].scales == [1.0]
    both = tiny_module(describe_scales=[1.0, 0.5]).match_steps("hessian")
    assert [type(s) for s in both.steps] == [MatchRelocation, MatchAlignment]
    assert both.steps[1].scales == [1.0, 0.5] and both.steps[1].max_shift == 2.0 and both.steps[1].drop
    assert isinstance(both, MatchSteps)
    assert not tiny_module(align_drop=False).match_steps().steps[0].drop


@pytest.mark.parametrize("drop", [True, False])
def test_steps_keep_only_aligned_matches_when_told_to_drop(drop: bool) -> None:
    image1, image2, xy1, true2, xy2 = matches(angle_deg=70.0, zoom=1.0, size2=128)
    desc = torch.zeros(len(xy1), 4)
    steps = MatchSteps([MatchAlignment([1.0], drop=drop)])
    out1, out2, keep = steps(image1, image2, xy1, xy2, desc, desc)
    assert keep.all() and (out2 - true2).norm(dim=1).max() < 0.1
    # the same matches into an unrelated picture cannot align (as in test_unrelated_patches_keep_their_points)
    image1, _, xy1, _, xy2 = matches(angle_deg=0.0, zoom=1.0, size2=128)
    _, bad2, keep = steps(image1, texture(seed=5), xy1, xy2, desc, desc)
    assert torch.equal(bad2, xy2) and torch.equal(keep, torch.full((len(xy1),), not drop))


def test_evaluation_estimates_from_the_kept_matches_only() -> None:
    image1, _, xy1, _, xy2 = matches(angle_deg=0.0, zoom=1.0, size2=128)
    other = texture(seed=5)
    desc = torch.zeros(len(xy1), 4)
    for drop, expected in ((True, 0), (False, len(xy1))):
        module = tiny_module(relocate_px=0.0, align_drop=drop)
        apply = module.evaluation._match_steps(module, "model", image1, other)
        out1, out2 = apply(xy1, xy2, desc, desc)
        assert len(out1) == len(out2) == expected


@pytest.mark.parametrize("key,value", [("align_px", -1.0), ("align_px", True), ("align_window", 1),
                                       ("align_window", 2.5), ("align_min_ncc", 1.0), ("align_drop", "yes")])
def test_module_rejects_bad_alignment_settings(key, value) -> None:
    with pytest.raises(ConfigError, match=f"model.{key}"):
        tiny_module(**{key: value})
