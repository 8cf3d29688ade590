"""Image filters shared by the handcrafted responses, the descriptor input and the affine shapes."""

from __future__ import annotations

import math

import torch
from kornia.filters import gaussian_blur2d


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` blurred by a Gaussian of ``sigma`` px (> 0), kernel out to 3 sigma, borders
    reflected."""
    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")
