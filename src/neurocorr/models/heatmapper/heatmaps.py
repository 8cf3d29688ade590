"""Gaussian keypoint heatmaps: one channel per keypoint class, points of a class combined by max.

Pixel convention (see ``neurocorr.ops.peaks``): the centre of pixel ``(row i, column j)`` is ``(x=j, y=i)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def render_gaussian_heatmaps(
    points: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    size: tuple[int, int],
    sigma: float,
    cutoff: float = 3.0,
) -> torch.Tensor:
    """Render float heatmaps ``exp(-d^2 / (2 sigma^2))``, zero where ``d > cutoff * sigma``.

    Args:
        points: ``(B, N, 2)`` float (x, y) in pixels.
        labels: ``(B, N)`` long class index in ``[0, num_classes)``; ``-1`` marks padding.
        num_classes: K, the number of output channels.
        size: ``(H, W)`` of the heatmaps in pixels.
        sigma: standard deviation in pixels (> 0).
        cutoff: radius of the support in units of sigma.
    Returns:
        ``(B, K, H, W)`` float in [0, 1]; the points of one class are combined by max.
    """
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, N, 2), got {tuple(points.shape)}")
    if labels.shape != points.shape[:2]:
        raise ValueError(f"labels must be (B, N) = {tuple(points.shape[:2])}, got {tuple(labels.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    h, w = size
    b, n, _ = points.shape
    dtype = points.dtype if points.is_floating_point() else torch.float32
    out = torch.zeros(b, num_classes, h, w, dtype=dtype, device=points.device)
    if n == 0:
        return out
    # Each Gaussian is cut at cutoff * sigma, so only a (2r+1)^2 window around each point is
    # computed (not the whole (B, N, H, W) grid), then scattered into its class channel by max.
    r = int(math.ceil(cutoff * sigma + 0.5))  # covers the disc for any sub-pixel centre
    offsets = torch.arange(-r, r + 1, device=points.device)
    p = points.to(dtype)
    finite = torch.isfinite(p).all(-1)
    centre = torch.where(finite.unsqueeze(-1), p, torch.zeros_like(p)).round().long()
    xs = centre[..., 0:1] + offsets  # (B, N, S) pixel columns of each window
    ys = centre[..., 1:2] + offsets  # (B, N, S) pixel rows
    dx2 = (xs.to(dtype) - p[..., 0:1]) ** 2
    dy2 = (ys.to(dtype) - p[..., 1:2]) ** 2
    # the Gaussian is separable: an outer product of 1-D factors, with the pixels outside the image
    # and the padding points zeroed in the factors; only the disc test needs the (S, S) distances
    valid = ((labels >= 0) & (labels < num_classes) & finite).unsqueeze(-1)
    gx = torch.where((xs >= 0) & (xs < w), torch.exp(dx2 / (-2.0 * sigma**2)), 0.0)                  # (B, N, S)
    gy = torch.where((ys >= 0) & (ys < h) & valid, torch.exp(dy2 / (-2.0 * sigma**2)), 0.0)         # (B, N, S)
    disc = dy2.unsqueeze(-1) + dx2.unsqueeze(-2) <= (cutoff * sigma) ** 2                           # (B, N, S, S)
    g = torch.where(disc, gy.unsqueeze(-1) * gx.unsqueeze(-2), 0.0)
    channel = labels.clamp(0, num_classes - 1)[..., None, None]
    index = (channel * h + ys.clamp(0, h - 1).unsqueeze(-1)) * w + xs.clamp(0, w - 1).unsqueeze(-2)
    out.view(b, -1).scatter_reduce_(1, index.view(b, -1), g.view(b, -1), reduce="amax")
    return out


class GaussianHeatmaps(nn.Module):
    """Module form of :func:`render_gaussian_heatmaps` with fixed K, size, sigma and cutoff."""

    def __init__(self, num_classes: int, size: tuple[int, int], sigma: float, cutoff: float = 3.0) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.num_classes, self.size, self.sigma, self.cutoff = num_classes, tuple(size), float(sigma), float(cutoff)

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return render_gaussian_heatmaps(points, labels, self.num_classes, self.size, self.sigma, self.cutoff)
