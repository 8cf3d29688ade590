"""Moment alignment of drawings: each image is resampled so that its ink is centred, its principal
axis horizontal, its size fixed and its elongation reduced (up to a maximum stretch).

An ellipse, a rectangle, a parallelogram or a triangle keeps its class under any affine map, and the
second moments of its ink fix such a map up to a turn: a thin ellipse becomes a rounder ellipse and a
thin rectangle a squarer one, so the network compares the shapes at the elongation it sees most,
instead of two near-identical double lines. The stretch is capped (``max_stretch``): it also widens
the stroke across the long axis by the same factor.

The ink of an image is its distance from the median (the paper) of its grey levels, so dark ink on
light paper and light ink on a dark board count alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OUTPUT_STD = 0.45   # the ink's standard deviation along each axis after alignment, in [-1, 1] image units
MIN_STD = 0.02      # a blank image is left at its own size (no division by a zero spread)


def alignment_matrices(images: torch.Tensor, max_stretch: float) -> torch.Tensor:
    """``(B, 2, 3)`` ``affine_grid`` maps (output -> input coordinates) aligning ``(B, C, S, S)`` images."""
    b, _, h, w = images.shape
    grey = images.float().mean(1)                                              # (B, H, W)
    paper = grey.flatten(1).median(1).values
    ink = (grey - paper[:, None, None]).abs()
    mass = ink.sum((1, 2)).clamp_min(1e-6)
    ys = (2 * torch.arange(h, device=images.device, dtype=torch.float32) + 1) / h - 1
    xs = (2 * torch.arange(w, device=images.device, dtype=torch.float32) + 1) / w - 1
    px = (ink.sum(1) * xs).sum(1) / mass                                       # (B,) centre of the ink
    py = (ink.sum(2) * ys).sum(1) / mass
    dx, dy = xs[None, None, :] - px[:, None, None], ys[None, :, None] - py[:, None, None]
    cov = torch.stack([(ink * dx * dx).sum((1, 2)), (ink * dx * dy).sum((1, 2)),
                       (ink * dx * dy).sum((1, 2)), (ink * dy * dy).sum((1, 2))], 1).view(b, 2, 2) / mass[:, None, None]
    variances, axes = torch.linalg.eigh(cov)                                    # ascending: short axis first
    std = variances.clamp_min(MIN_STD**2).sqrt()
    long_std = std[:, 1]
    short_std = torch.maximum(std[:, 0], long_std / max_stretch)
    # output x runs along the long axis, output y along the short one
    basis = torch.stack([axes[:, :, 1] * long_std[:, None], axes[:, :, 0] * short_std[:, None]], 2) / OUTPUT_STD
    centre = torch.stack([px, py], 1)[:, :, None]
    return torch.cat([basis, centre], 2)


def align_by_moments(images: torch.Tensor, max_stretch: float = 3.0) -> torch.Tensor:
    """``(B, C, S, S)`` images in [0, 1], each centred, turned and stretched by its ink moments
    (see the module docstring); pixels from outside the image repeat its border."""
    theta = alignment_matrices(images, max_stretch).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
