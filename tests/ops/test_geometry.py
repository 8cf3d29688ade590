"""Homographies: points and images move together (pixel centres at integers), visibility, conversions."""

from __future__ import annotations

import math

import pytest
import torch

from neurocorr.ops.geometry import (affine_grid, covisible, homography_grid, resize_points, scale_homography, shift_origin, visibility_mask,
                                    warp_image, warp_mask, warp_points)


def rotation_about(cx: float, cy: float, deg: float, scale: float = 1.0) -> torch.Tensor:
    a = math.radians(deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return torch.tensor([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0, 0, 1]], dtype=torch.float64)


def test_warp_points_identity_inverse_and_projective() -> None:
    pts = torch.rand(2, 7, 2, dtype=torch.float64) * 50
    assert torch.allclose(warp_points(pts, torch.eye(3, dtype=torch.float64)), pts)
    H = rotation_about(20, 10, 33, 1.3)
    H[2, :2] = torch.tensor([1e-3, -2e-3])
    back = warp_points(warp_points(pts, H), torch.linalg.inv(H))
    assert torch.allclose(back, pts, atol=1e-9)
    # the projective divide: H = diag(1, 1, 2) halves coordinates
    assert torch.allclose(warp_points(pts, torch.diag(torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))), pts / 2)


def test_image_and_points_move_together_at_subpixel_accuracy() -> None:
    """A bright blob at a known point is found, after warping the image, where warp_points puts it."""
    h = w = 41
    x0, y0 = 14.0, 22.0
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    blob = torch.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * 1.5**2))[None, None]
    H = rotation_about(20, 20, 90)  # exact on the pixel grid about the centre pixel (20, 20)
    H[0, 2] += 1.5
    out = warp_image(blob, H[None].float(), (h, w))
    expected = warp_points(torch.tensor([[x0, y0]], dtype=torch.float64), H)[0]
    weights = out[0, 0] / out[0, 0].sum()
    centroid = torch.stack([(weights * xs).sum(), (weights * ys).sum()]).double()
    assert torch.allclose(centroid, expected, atol=0.02), (centroid, expected)
    # a pure 90-degree rotation is torch.rot90 in this convention
    rot = warp_image(blob, rotation_about(20, 20, 90)[None].float(), (h, w))
    # (x, y) -> (40 - y, x): torch.rot90 by -1 (clockwise on screen), exactly
    assert torch.allclose(rot, torch.rot90(blob, -1, (2, 3)), atol=1e-5)


def test_masks_and_visibility() -> None:
    H = torch.tensor([[1.0, 0, 10], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)  # shift right by 10 px
    vis = visibility_mask(H[None], (20, 30), (20, 30))
    assert vis[0, 0, :, :20].all() and not vis[0, 0, :, 20:].any()
    mask = warp_mask(torch.ones(1, 1, 20, 30), H[None].float(), (20, 30))
    assert not mask[0, 0, :, :10].any() and mask[0, 0, :, 11:].all()
    pts = torch.tensor([[5.0, 5.0], [25.0, 5.0], [-3.0, 5.0]], dtype=torch.float64)
    assert covisible(pts, H, (20, 30), (20, 30)).tolist() == [True, False, False]


def test_scale_homography_and_origin_shift() -> None:
    H = rotation_about(15, 12, 25, 1.1)
    pts = torch.rand(9, 2, dtype=torch.float64) * 30
    # resize both images by 0.5 in the pixel-centre convention: x' = 0.5 (x + 0.5) - 0.5
    Hs = scale_homography(H, 0.5, 0.5)
    small = 0.5 * (pts + 0.5) - 0.5
    assert torch.allclose(warp_points(small, Hs), 0.5 * (warp_points(pts, H) + 0.5) - 0.5, atol=1e-9)
    # a homography written for 1-based coordinates, converted to 0-based
    H1 = shift_origin(H, -1.0)  # H for 1-based coordinates
    assert torch.allclose(warp_points(pts + 1, H1) - 1, warp_points(pts, H), atol=1e-9)
    assert torch.allclose(shift_origin(H1, 1.0), H, atol=1e-12)


def test_homography_grid_warps_like_warp_image() -> None:
    g = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 20, 24, generator=g)
    H = torch.eye(3).repeat(2, 1, 1)
    H[0, :2, 2] = torch.tensor([2.5, -1.25])                                         # a shift
    H[1] = torch.tensor([[0.9, -0.3, 4.0], [0.3, 0.9, 1.0], [1e-3, -5e-4, 1.0]])     # rotation + perspective
    for size_to in ((20, 24), (15, 30)):
        grid = homography_grid(H, (20, 24), size_to)
        assert grid.shape == (2, *size_to, 2)
        warped = torch.nn.functional.grid_sample(image, grid, align_corners=True)
        torch.testing.assert_close(warped, warp_image(image, H, size_to), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="3, 3"):
        homography_grid(torch.eye(2)[None], (4, 4), (4, 4))


def test_affine_grid_warps_like_kornia_warp_affine() -> None:
    from kornia.geometry.transform import warp_affine

    from neurocorr.models.heatmapper.augment import KeypointAugment

    torch.manual_seed(2)
    images = torch.rand(4, 3, 24, 30)
    matrix = KeypointAugment(180.0, (0.7, 1.3), 0.2).sample_matrix(4, 24, 30, images.device)
    warped = torch.nn.functional.grid_sample(images, affine_grid(matrix, (24, 30), (24, 30)), align_corners=True)
    torch.testing.assert_close(warped, warp_affine(images, matrix, (24, 30), align_corners=True), atol=1e-5, rtol=1e-4)
    smaller = torch.nn.functional.grid_sample(images, affine_grid(matrix, (24, 30), (17, 21)), align_corners=True)
    torch.testing.assert_close(smaller, warp_affine(images, matrix, (17, 21), align_corners=True), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"\(B, 2, 3\)"):
        affine_grid(torch.eye(3)[None], (4, 4), (4, 4))


def test_resize_points_follows_pixel_centres_and_agrees_with_scale_homography() -> None:
    xy = torch.tensor([[0.0, 0.0], [3.0, 1.0], [-0.5, -0.5]], dtype=torch.float64)
    # halving a 4 x 8 image: pixel centres 0 and 1 meet at 0.25 of the new grid, the image's corner stays put
    assert resize_points(xy, (4, 8), (2, 4)).tolist() == [[-0.25, -0.25], [1.25, 0.25], [-0.5, -0.5]]
    torch.testing.assert_close(resize_points(resize_points(xy, (4, 8), (2, 4)), (2, 4), (4, 8)), xy)
    H = scale_homography(torch.eye(3, dtype=torch.float64), 1.0, 0.5)
    torch.testing.assert_close(resize_points(xy, (4, 8), (2, 4)), warp_points(xy, H))
