"""Losses of the detector: a triplet loss on score maps (SSIM or normalised-MSE distance) and a
triplet loss on descriptors.

Score-map triplet: anchor = warp(score(image)), positive = score(warped image), negative = the
score of another warped image of the batch, all compared inside a validity mask.
``loss = relu(d(anchor, positive) - d(anchor, negative) + margin)``.

- ``ssim``: ``d = (1 - SSIM) / 2`` averaged over the mask, in [0, 1]; margin 1 by default (the
  seed's margin of 2 could never be met, since ``d_an - d_ap <= 1``, so the loss never switched off).
- ``mse``: normalised squared error ``|a - b|^2 / (|a|^2 + |b|^2)`` over the mask, in [0, 2]
  (the seed's NMRE); margin 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.metrics import ssim as kornia_ssim
from torch import nn

from neurocorr.errors import ConfigError


def masked_mean(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-sample mean of ``x`` ``(B, C, H, W)`` over ``mask`` ``(B, 1, H, W)`` -> ``(B,)``."""
    mask = mask.expand_as(x)
    return (x * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=eps)


def ssim_distance(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, window: int = 5) -> torch.Tensor:
    """``(1 - SSIM) / 2`` averaged over ``mask``: ``(B,)`` in [0, 1]. Maps ``(B, 1, H, W)`` in [0, 1]."""
    s = kornia_ssim(a, b, window_size=window, max_val=1.0, padding="same")
    return masked_mean((1 - s) / 2, mask)


def nmse_distance(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``|a - b|^2 / (|a|^2 + |b|^2)`` over ``mask``: ``(B,)`` in [0, 2]."""
    num = ((a - b) ** 2 * mask).flatten(1).sum(1)
    den = ((a**2 + b**2) * mask).flatten(1).sum(1)
    return num / den.clamp(min=eps)


class ScoreMapTriplet(nn.Module):
    """Triplet loss on score maps. ``forward(anchor, positive, negative, mask)`` -> scalar; all
    ``(B, 1, H, W)``; ``mask`` 1 where the three maps are valid.

    Args:
        distance: ``ssim`` or ``mse``.
        margin: triplet margin (1 suits ``ssim``, 2 suits ``mse``).
        window: SSIM window size (odd).
    """

    def __init__(self, distance: str = "ssim", margin: float = 1.0, window: int = 5) -> None:
        super().__init__()
        if distance not in ("ssim", "mse"):
            raise ConfigError(f"loss.distance must be 'ssim' or 'mse', got {distance!r}")
        if window < 3 or window % 2 == 0:
            raise ConfigError(f"loss.window must be an odd number >= 3, got {window}")
        if distance == "ssim" and margin > 1:
            raise ConfigError(f"loss.margin={margin} with SSIM distance in [0, 1] can never be met; use <= 1")
        self.distance, self.margin, self.window = distance, float(margin), int(window)

    def dist(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return ssim_distance(a, b, mask, self.window) if self.distance == "ssim" else nmse_distance(a, b, mask)

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        d_ap = self.dist(anchor, positive, mask)
        d_an = self.dist(anchor, negative, mask)
        return F.relu(d_ap - d_an + self.margin).mean()


def descriptor_triplet(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, valid: torch.Tensor,
                       margin: float = 0.5) -> torch.Tensor:
    """Triplet loss on unit descriptors ``(B, K, D)`` (L2 distance), averaged over ``valid`` ``(B, K)``."""
    d_ap = (anchor - positive).norm(dim=-1)
    d_an = (anchor - negative).norm(dim=-1)
    loss = F.relu(d_ap - d_an + margin)
    v = valid.to(loss.dtype)
    return (loss * v).sum() / v.sum().clamp(min=1.0)
