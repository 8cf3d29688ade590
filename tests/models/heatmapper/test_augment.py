"""Augmentation moves keypoints exactly as it moves the image: warp a rendered heatmap as an image
and compare it with the heatmap rendered at the moved points."""

from __future__ import annotations

import torch

from neurocorr.models.heatmapper.augment import KeypointAugment
from neurocorr.models.heatmapper.heatmaps import render_gaussian_heatmaps
from neurocorr.ops.peaks import find_peaks


def test_warped_heatmap_equals_heatmap_of_moved_points() -> None:
    torch.manual_seed(0)
    b, size, sigma = 6, 64, 3.0
    points = 16 + torch.rand(b, 4, 2) * 32
    labels = torch.tensor([[0, 1, 1, 2]]).expand(b, 4).clone()
    heat = render_gaussian_heatmaps(points, labels, 3, (size, size), sigma, cutoff=6.0)
    # scale 1: a rigid motion keeps the Gaussian's sigma, so the two heatmaps must agree pixel by pixel
    augment = KeypointAugment(rotation=180.0, scale=(1.0, 1.0), translate=0.1, brightness=0.0, contrast=0.0)
    warped, moved, kept = augment(heat, points, labels)
    assert not torch.allclose(moved, points, atol=1.0)  # it did move them
    expected = render_gaussian_heatmaps(moved, kept, 3, (size, size), sigma, cutoff=6.0)
    inside = kept >= 0
    assert inside.float().mean() > 0.5
    # compare only around points still inside (warped borders are zero-padded)
    assert (warped - expected).abs().max() < 0.03


def test_scaled_warp_moves_peaks_to_the_moved_points() -> None:
    torch.manual_seed(3)
    b, size = 6, 64
    points = 20 + torch.rand(b, 1, 2) * 24
    labels = torch.zeros(b, 1, dtype=torch.long)
    heat = render_gaussian_heatmaps(points, labels, 3, (size, size), 2.5, cutoff=6.0)
    warped, moved, kept = KeypointAugment(180.0, (0.8, 1.25), 0.05, 0.0, 0.0)(heat, points, labels)
    found = find_peaks(warped[:, :1], top_k=1, threshold=0.3)
    ok = kept[:, 0] >= 0
    assert ok.all() and found.valid[:, 0, 0].all()
    assert (found.xy[:, 0, 0] - moved[:, 0]).norm(dim=-1).max() < 0.3


def test_points_leaving_the_image_are_dropped_and_photometric_stays_in_range() -> None:
    torch.manual_seed(1)
    images = torch.rand(8, 3, 32, 32)
    points = torch.tensor([[[0.0, 0.0], [16.0, 16.0]]]).expand(8, 2, 2).clone()
    labels = torch.tensor([[0, 1]]).expand(8, 2).clone()
    out, moved, kept = KeypointAugment(rotation=90.0, scale=(1.5, 1.5), translate=0.0)(images, points, labels)
    assert out.min() >= 0 and out.max() <= 1
    assert (kept[:, 0] == -1).all()  # the corner point leaves the image when scaled 1.5x about the centre
    assert (kept[:, 1] == 1).all()
    # rotation and scale about the centre (15.5, 15.5): distance 0.5 * sqrt(2) becomes 1.5 times that
    radius = (moved[:, 1] - 15.5).norm(dim=-1)
    assert torch.allclose(radius, torch.full((8,), 1.5 * 0.5 * 2**0.5), atol=1e-4)


def test_brightness_and_contrast_keep_the_mean_up_to_the_bias() -> None:
    torch.manual_seed(4)
    images = 0.25 + 0.5 * torch.rand(8, 3, 16, 16)  # away from the clamp
    no_warp = KeypointAugment(rotation=0.0, scale=(1.0, 1.0), translate=0.0, brightness=0.1, contrast=0.2)
    torch.manual_seed(5)
    out, _, _ = no_warp(images, torch.zeros(8, 1, 2) + 8, torch.zeros(8, 1, dtype=torch.long))
    torch.manual_seed(5)
    no_warp.sample_matrix(8, 16, 16, images.device)  # the same draws as in forward
    gain = 1 + (torch.rand(8, 1, 1, 1) * 2 - 1) * 0.2
    bias = (torch.rand(8, 1, 1, 1) * 2 - 1) * 0.1
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, ((images - mean) * gain + mean + bias).clamp(0, 1), atol=1e-5, rtol=1e-5)


def test_sampled_matrix_is_kornias_rotation_about_the_centre_plus_the_shift() -> None:
    from kornia.geometry.transform import get_rotation_matrix2d

    augment = KeypointAugment(rotation=120.0, scale=(0.7, 1.3), translate=0.2)
    torch.manual_seed(6)
    matrix = augment.sample_matrix(5, 24, 40, torch.device("cpu"))
    torch.manual_seed(6)
    draws = torch.rand(5, 4)
    angle = (draws[:, 0] * 2 - 1) * 120.0
    scale = 0.7 + 0.6 * draws[:, 1]
    expected = get_rotation_matrix2d(torch.tensor([[19.5, 11.5]]).expand(5, 2), angle, scale[:, None].expand(5, 2))
    expected[:, :, 2] += (draws[:, 2:] * 2 - 1) * 0.2 * torch.tensor([40.0, 24.0])
    torch.testing.assert_close(matrix, expected, atol=1e-5, rtol=1e-5)
    assert matrix.abs().max() > 0 and not torch.allclose(matrix[0], matrix[1])


def test_uint8_images_augment_as_their_float_version() -> None:
    images = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    points, labels = torch.full((4, 2, 2), 10.0), torch.zeros(4, 2, dtype=torch.long)
    augment = KeypointAugment(rotation=30.0, brightness=0.2, contrast=0.3)
    torch.manual_seed(7)
    from_uint8 = augment(images, points, labels)
    torch.manual_seed(7)
    from_float = augment(images.float() / 255, points, labels)
    assert from_uint8[0].dtype == torch.float32 and from_uint8[0].max() <= 1
    for ours, theirs in zip(from_uint8, from_float):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
