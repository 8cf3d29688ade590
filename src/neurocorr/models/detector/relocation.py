"""Scale-covariant relocation of matched keypoints, before the homography is estimated.

A keypoint found at full resolution is localised at the finest scale. When one image of a pair sees the
scene zoomed in, the same corner is then localised at two different physical scales, and a corner
detector's peak moves with the scale it is measured at (the corner of a rounded structure drifts along
its bisector), so the two points of a correct match do not correspond exactly. The level pair at which a
match's multi-level descriptors agree (:func:`matched_level_pairs`) says the zoom between its two points:
the zoomed-in image's point is found again on a response map of that image resized to the other image's
scale (the nearest 3x3 peak within ``radius`` px of that map, 1-D quadratic fits) and mapped back. This is
Harris-Laplace's scale-covariant localisation, done per match because the relative scale is known only
once the points are matched. A match whose levels agree, or whose point finds no peak within the radius,
keeps its points.

Pixel convention: :mod:`neurocorr.ops.peaks` (pixel centres at integer coordinates).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from neurocorr.errors import ConfigError
from neurocorr.models.detector.keypoints import level_size
from neurocorr.models.detector.torch_model import resize_level
from neurocorr.ops.geometry import resize_points
from neurocorr.ops.peaks import nms_mask, refine_subpixel

ResponseMap = Callable[[torch.Tensor], torch.Tensor]  # grey image (1, 1, h, w) in [0, 1] -> response (1, 1, h, w)


def matched_level_pairs(desc1: torch.Tensor, desc2: torch.Tensor) -> torch.Tensor:
    """The level pair ``(M, 2)`` (long: level of ``desc1``, level of ``desc2``) at which each match's
    multi-level descriptors ``desc1`` ``(M, L, D)`` and ``desc2`` ``(M, L, D)`` are closest (L2)."""
    if desc1.dim() != 3 or desc1.shape != desc2.shape:
        raise ValueError(f"matched_level_pairs expects two (M, L, D) tensors of one shape, got "
                         f"{tuple(desc1.shape)} and {tuple(desc2.shape)}")
    levels = desc1.shape[1]
    best = torch.cdist(desc1.float(), desc2.float()).flatten(1).argmin(1)
    return torch.stack([best // levels, best % levels], 1)


def as_grey_batch(image: torch.Tensor) -> torch.Tensor:
    """An image ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)`` as one grey ``(1, 1, H, W)`` float batch."""
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"matched points need an image (H, W), (1, H, W) or (3, H, W), got {tuple(image.shape)}")
    return image.float().mean(0, keepdim=True)[None]


def relocate_points(image: torch.Tensor, xy: torch.Tensor, ratio: float, response: ResponseMap,
                    radius: float = 1.5) -> torch.Tensor:
    """Points ``xy`` ``(K, 2)`` (px) of ``image`` (``(H, W)``, ``(1, H, W)`` or ``(3, H, W)``, values in [0, 1])
    moved to the nearest 3x3 peak of ``response`` on the image resized by ``ratio`` (0 < ratio <= 1) within
    ``radius`` px of that resized map, refined by 1-D quadratic fits and mapped back to full-size pixels.
    Points with no positive peak within the radius are returned unchanged. Returns ``(K, 2)``, ``xy``'s dtype."""
    if xy.dim() != 2 or xy.shape[-1] != 2:
        raise ValueError(f"relocate_points expects points (K, 2), got {tuple(xy.shape)}")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"relocation ratio must be in (0, 1], got {ratio}")
    if radius <= 0:
        raise ValueError(f"relocation radius must be > 0 px, got {radius}")
    grey = as_grey_batch(image)
    if xy.shape[0] == 0:
        return xy.clone()
    full_h, full_w = grey.shape[-2:]
    h, w = level_size((full_h, full_w), ratio)
    resp = response(resize_level(grey, (h, w)))
    peak = nms_mask(resp, 3)[0, 0] & (resp[0, 0] > 0)
    q = resize_points(xy.double(), (full_h, full_w), (h, w))
    reach = int(radius) + 1
    steps = torch.arange(-reach, reach + 1)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    cand = q.round().long()[:, None, :] + torch.stack([dx.flatten(), dy.flatten()], 1)[None]  # (K, C, 2) x, y
    inside = (cand[..., 0] >= 1) & (cand[..., 0] <= w - 2) & (cand[..., 1] >= 1) & (cand[..., 1] <= h - 2)
    cx, cy = cand[..., 0].clamp(0, w - 1), cand[..., 1].clamp(0, h - 1)
    dist2 = (cand.double() - q[:, None, :]).pow(2).sum(-1)
    ok = inside & peak[cy, cx] & (dist2 <= radius * radius)
    dist2 = dist2.masked_fill(~ok, float("inf"))
    pick = dist2.argmin(1)
    found = ok.any(1)
    rows = torch.arange(len(q))
    flat = (cy[rows, pick] * w + cx[rows, pick])[found]
    out = xy.clone()
    if flat.numel():
        fitted = refine_subpixel(resp.double(), flat[None, None])[0, 0]  # (F, 2) level px
        back = resize_points(fitted, (h, w), (full_h, full_w))
        out[found] = back.to(xy.dtype)
    return out


def relocate_matches(image1: torch.Tensor, image2: torch.Tensor, xy1: torch.Tensor, xy2: torch.Tensor,
                     desc1: torch.Tensor, desc2: torch.Tensor, scales: Sequence[float], response: ResponseMap,
                     radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Matched points ``xy1`` ``(M, 2)`` of ``image1`` and ``xy2`` ``(M, 2)`` of ``image2`` (images as in
    :func:`relocate_points`), with their descriptors ``(M, L, D)`` at the pyramid ``scales`` (``L`` of them),
    each match's zoomed-in point relocated at the other point's scale (see the module docstring).
    Returns the new ``(xy1, xy2)``; descriptors of one level ``(M, D)`` give the points unchanged."""
    if xy1.shape != xy2.shape or xy1.dim() != 2 or xy1.shape[-1] != 2:
        raise ValueError(f"matched points must be two (M, 2) tensors, got {tuple(xy1.shape)} and {tuple(xy2.shape)}")
    if desc1.dim() == 2 or xy1.shape[0] == 0:
        return xy1.clone(), xy2.clone()
    if desc1.shape[0] != xy1.shape[0] or desc1.shape[1] != len(scales):
        raise ValueError(f"descriptors {tuple(desc1.shape)} do not fit {xy1.shape[0]} matches at {len(scales)} scales")
    levels = matched_level_pairs(desc1, desc2)
    s = torch.tensor([float(v) for v in scales], dtype=torch.float64)
    ratio = s[levels[:, 0]] / s[levels[:, 1]]  # > 1: image 2 sees the structure larger (zoomed in)
    out1, out2 = xy1.clone(), xy2.clone()
    ratio = ratio.round(decimals=6)
    for r in torch.unique(ratio).tolist():
        if abs(r - 1.0) < 1e-6:
            continue
        sel = ratio == r
        if r < 1.0:  # image 1 zoomed in: find its point again at image 2's scale
            out1[sel] = relocate_points(image1, xy1[sel], r, response, radius)
        else:
            out2[sel] = relocate_points(image2, xy2[sel], 1.0 / r, response, radius)
    return out1, out2


class MatchRelocation(nn.Module):
    """Module form of :func:`relocate_matches` for fixed ``scales``, ``response`` and ``radius`` (px)."""

    def __init__(self, scales: Sequence[float], response: ResponseMap, radius: float = 1.5) -> None:
        super().__init__()
        if not scales:
            raise ConfigError("match relocation needs the descriptor's pyramid scales (model.describe_scales)")
        if radius <= 0:
            raise ConfigError(f"match relocation radius must be > 0 px, got {radius}")
        self.scales, self.response, self.radius = [float(v) for v in scales], response, float(radius)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, xy1: torch.Tensor, xy2: torch.Tensor,
                desc1: torch.Tensor, desc2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return relocate_matches(image1, image2, xy1, xy2, desc1, desc2, self.scales, self.response, self.radius)

    def apply(self, image1: torch.Tensor, image2: torch.Tensor, xy1: torch.Tensor, xy2: torch.Tensor,
              desc1: torch.Tensor, desc2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The match-step form (:class:`~neurocorr.models.detector.alignment.MatchSteps`): :meth:`forward`'s
        points and ``keep`` ``(M,)`` bool, all True (relocation leaves every match in)."""
        out1, out2 = self(image1, image2, xy1, xy2, desc1, desc2)
        return out1, out2, torch.ones(len(xy1), dtype=torch.bool)
