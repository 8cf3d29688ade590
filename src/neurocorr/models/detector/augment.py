"""Training views for the detector, made batched on the device: two random homographic warps of
each crop on zero-padded canvases, and photometric changes drawn independently for each view.

Every draw uses torch's global RNG, so the caller wraps the call in ``step_rng()`` (the family
contract). Images are ``(B, C, S, S)`` float in [0, 1]; homographies are 3x3 in pixels (pixel
centres at integer coordinates, ``neurocorr.ops.geometry``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable
from kornia.filters import gaussian_blur2d

from neurocorr.data.synthetic.homography_sequences import random_homographies
from neurocorr.errors import ConfigError
from neurocorr.ops.geometry import homography_grid


@dataclass(frozen=True)
class WarpRanges:
    """View 2 relative to the crop: rotation uniform in [0, ``max_angle_deg``], zoom log-uniform in
    ``zoom``, shear, perspective (corner displacement as a fraction of the size) and translation
    (fraction of the size). View 1: rotation in [0, ``max_angle_deg``], zoom in ``zoom1``, so
    both views show padding edges and the relative zoom stays near ``zoom``."""

    max_angle_deg: float = 360.0
    zoom: tuple[float, float] = (0.5, 2.0)
    zoom1: tuple[float, float] = (0.85, 1.2)
    shear: float = 0.1
    perspective: float = 0.1
    translate: float = 0.1

    def __post_init__(self) -> None:
        for key in ("zoom", "zoom1"):
            lo, hi = getattr(self, key)
            if not 0 < lo <= hi:
                raise ConfigError(f"model.warp.{key} must be (low, high) with 0 < low <= high, got {(lo, hi)}")


@dataclass(frozen=True)
class Photometric:
    """Ranges of the per-view photometric changes (each drawn per image): contrast (log-uniform
    gain), brightness (additive), gamma (log-uniform), a linear illumination ramp (gain change
    across the image), Gaussian blur sigma (px, with probability ``p_blur``), Gaussian noise std,
    JPEG quality (with probability ``p_jpeg``)."""

    contrast: tuple[float, float] = (0.6, 1.5)
    brightness: float = 0.15
    gamma: tuple[float, float] = (0.6, 1.6)
    ramp: float = 0.3
    blur: tuple[float, float] = (0.3, 1.5)
    p_blur: float = 0.3
    noise: float = 0.03
    jpeg: tuple[float, float] = (30.0, 95.0)
    p_jpeg: float = 0.3
    enabled: bool = True


def _log_uniform(n: int, bounds: Sequence[float], device: torch.device) -> torch.Tensor:
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return torch.exp(lo + torch.rand(n, device=device) * (hi - lo))


def photometric(image: torch.Tensor, p: Photometric) -> torch.Tensor:
    """``image`` ``(B, C, H, W)`` in [0, 1] with fresh random photometric changes per image."""
    if not p.enabled:
        return image
    b, c, h, w = image.shape
    dev = image.device
    gain = _log_uniform(b, p.contrast, dev).view(b, 1, 1, 1)
    offset = ((torch.rand(b, device=dev) * 2 - 1) * p.brightness).view(b, 1, 1, 1)
    theta = torch.rand(b, device=dev) * 2 * math.pi
    ys = torch.linspace(-1, 1, h, device=dev).view(1, h, 1)
    xs = torch.linspace(-1, 1, w, device=dev).view(1, 1, w)
    ramp = 1 + (torch.rand(b, device=dev) * p.ramp).view(b, 1, 1) * (theta.cos().view(b, 1, 1) * xs + theta.sin().view(b, 1, 1) * ys)
    x = (image * gain * ramp[:, None] + offset).clamp(0, 1)
    x = x.clamp(min=1e-4) ** _log_uniform(b, p.gamma, dev).view(b, 1, 1, 1)
    if p.p_blur > 0:
        sigma = p.blur[0] + torch.rand(b, device=dev) * (p.blur[1] - p.blur[0])
        k = 2 * math.ceil(2.5 * p.blur[1]) + 1
        blurred = gaussian_blur2d(x, (k, k), torch.stack([sigma, sigma], 1))
        x = torch.where((torch.rand(b, device=dev) < p.p_blur).view(b, 1, 1, 1), blurred, x)
    x = (x + torch.randn_like(x) * (torch.rand(b, device=dev) * p.noise).view(b, 1, 1, 1)).clamp(0, 1)
    if p.p_jpeg > 0:
        quality = p.jpeg[0] + torch.rand(b, device=dev) * (p.jpeg[1] - p.jpeg[0])
        rgb = x if c == 3 else x[:, :1].expand(-1, 3, -1, -1)
        coded = jpeg_codec_differentiable(rgb.contiguous(), quality).clamp(0, 1)
        coded = coded if c == 3 else coded.mean(1, keepdim=True)
        x = torch.where((torch.rand(b, device=dev) < p.p_jpeg).view(b, 1, 1, 1), coded, x)
    return x


def warp_with_mask(image: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp ``image`` ``(B, C, S, S)`` by ``H`` ``(B, 3, 3)`` on an ``S x S`` zero canvas: (warped,
    validity mask ``(B, 1, S, S)`` in {0, 1}, the grid used)."""
    size = image.shape[-2:]
    grid = homography_grid(H, size, size).to(image.dtype)
    ones = torch.ones_like(image[:, :1])
    warped = F.grid_sample(torch.cat([image, ones], 1), grid, align_corners=True)
    return warped[:, :-1], (warped[:, -1:] > 0.999).to(image.dtype), grid


def make_views(crops: torch.Tensor, ranges: WarpRanges, photo: Photometric) -> dict[str, torch.Tensor]:
    """Two views of each crop ``(B, C, S, S)`` in [0, 1]: ``image1``, ``image2``, their validity masks
    ``mask1``, ``mask2`` ``(B, 1, S, S)``, and ``H`` ``(B, 3, 3)`` float32 mapping view 1 to view 2.
    Padding stays exactly 0 (as in rotated or shrunk test images); noise and blur come before it."""
    b, _, s, _ = crops.shape
    kw = dict(shear=ranges.shear, perspective=ranges.perspective * 2 / s, translate=ranges.translate)
    H1 = random_homographies(b, s, None, max_angle_deg=ranges.max_angle_deg, scale=ranges.zoom1, shear=0.0,
                             perspective=0.0, translate=0.0).to(crops.device)
    H2 = random_homographies(b, s, None, max_angle_deg=ranges.max_angle_deg, scale=ranges.zoom, **kw).to(crops.device)
    both = torch.cat([H1, H2]).float()
    views, masks, _ = warp_with_mask(torch.cat([crops, crops]), both)
    views = photometric(views, photo) * masks
    image1, image2 = views.chunk(2)
    mask1, mask2 = masks.chunk(2)
    H = (H2 @ torch.linalg.inv(H1)).float()
    return {"image1": image1, "image2": image2, "mask1": mask1, "mask2": mask2, "H": H}
