"""Gaussian keypoint heatmaps: one channel per keypoint class, points of a class combined by max.

Pixel convention (see ``ops.peaks``): the centre of pixel ``(row i, column j)`` is ``(x=j, y=i)``.
"""

from __future__ import annotations

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
    xs = torch.arange(w, dtype=dtype, device=points.device)
    ys = torch.arange(h, dtype=dtype, device=points.device)
    dx2 = (xs.view(1, 1, w) - points[..., 0:1].to(dtype)) ** 2  # (B, N, W)
    dy2 = (ys.view(1, 1, h) - points[..., 1:2].to(dtype)) ** 2  # (B, N, H)
    d2 = dy2.unsqueeze(-1) + dx2.unsqueeze(-2)  # (B, N, H, W)
    g = torch.exp(-d2 / (2.0 * sigma**2))
    g = torch.where(d2 <= (cutoff * sigma) ** 2, g, torch.zeros_like(g))
    for k in range(num_classes):
        mask = (labels == k).view(b, n, 1, 1)
        out[:, k] = torch.where(mask, g, torch.zeros_like(g)).amax(dim=1)
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
