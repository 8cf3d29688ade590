"""Circular (polar) descriptors: a feature map sampled on rings around each keypoint, starting at
the keypoint's orientation, flattened and L2-normalised. Rotating the image rotates the sampling
pattern with it, so the descriptor of a rotation-equivariant network is rotation-invariant. With an
affine ``shape`` per keypoint (``ops.affine_shape``) the rings become ellipses that follow the local
structure, so a view from another angle is sampled alike."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def polar_grid(xy: torch.Tensor, angle: torch.Tensor, radii: Sequence[float], sectors: int,
               shape: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sample points ``(B, K, R * S, 2)`` (x, y px): for ring r and sector s, the point at distance
    ``radii[r]`` and angle ``angle + 2 pi s / S`` from each keypoint ``xy`` ``(B, K, 2)``.

    ``shape`` ``(B, K, 2, 2)`` (determinant 1, ``ops.affine_shape``): the circle's offsets ``u`` become
    ``shape @ u``, with the orientation measured in the normalised frame (``angle`` mapped by
    ``shape^-1``), so the first sector still points along the keypoint's orientation."""
    if shape is not None:
        if shape.shape != (*xy.shape[:2], 2, 2):
            raise ValueError(f"polar_grid: shape must be {(*xy.shape[:2], 2, 2)}, got {tuple(shape.shape)}")
        shape = shape.to(xy.dtype)
        direction = torch.stack([angle.cos(), angle.sin()], -1).to(xy.dtype)                  # (B, K, 2)
        inverse = torch.stack([torch.stack([shape[..., 1, 1], -shape[..., 0, 1]], -1),
                               torch.stack([-shape[..., 1, 0], shape[..., 0, 0]], -1)], -2)   # adj = inverse (det 1)
        normalised = (inverse @ direction[..., None])[..., 0]
        angle = torch.atan2(normalised[..., 1], normalised[..., 0])
    r = torch.as_tensor(list(radii), dtype=xy.dtype, device=xy.device)                      # (R,)
    phi = 2 * math.pi * torch.arange(sectors, dtype=xy.dtype, device=xy.device) / sectors    # (S,)
    a = angle[..., None].to(xy.dtype) + phi                                                  # (B, K, S)
    dx = r[:, None, None, None] * a.cos()                                                    # (R, B, K, S)
    dy = r[:, None, None, None] * a.sin()
    offsets = torch.stack([dx, dy], -1).permute(1, 2, 0, 3, 4).flatten(2, 3)                  # (B, K, R*S, 2)
    if shape is not None:
        offsets = (shape[:, :, None] @ offsets[..., None])[..., 0]
    return xy[:, :, None, :] + offsets


def polar_descriptor(features: torch.Tensor, xy: torch.Tensor, angle: torch.Tensor,
                     radii: Sequence[float] = (2.0, 4.0, 7.0), sectors: int = 8, centre: bool = False,
                     shape: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Descriptors ``(B, K, C * (1 + R * S))`` (unit L2 norm) of keypoints ``xy`` ``(B, K, 2)`` with
    orientations ``angle`` ``(B, K)`` from ``features`` ``(B, C, H, W)``: the value at the keypoint,
    then ``len(radii) * sectors`` ring samples. Points outside the map read 0. ``centre``: each
    channel's mean over the keypoint's samples is subtracted first, so the descriptor holds the
    pattern around the point, not the features' common level (as normalised cross-correlation does).
    ``shape`` ``(B, K, 2, 2)``: elliptical rings (:func:`polar_grid`)."""
    if features.dim() != 4 or xy.shape[:2] != angle.shape or xy.shape[0] != features.shape[0]:
        raise ValueError(f"polar_descriptor: features (B, C, H, W), xy (B, K, 2), angle (B, K); got "
                         f"{tuple(features.shape)}, {tuple(xy.shape)}, {tuple(angle.shape)}")
    b, c, h, w = features.shape
    k = xy.shape[1]
    points = torch.cat([xy[:, :, None, :], polar_grid(xy, angle, radii, sectors, shape)], dim=2)   # (B, K, 1+RS, 2)
    grid = torch.stack([2 * points[..., 0] / max(w - 1, 1) - 1, 2 * points[..., 1] / max(h - 1, 1) - 1], -1)
    samples = F.grid_sample(features, grid.to(features.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    if centre:
        samples = samples - samples.mean(-1, keepdim=True)                                  # (B, C, K, 1+RS)
    desc = samples.permute(0, 2, 1, 3).reshape(b, k, -1)                                     # (B, K, C*(1+RS))
    return F.normalize(desc, dim=-1)


class PolarDescriptor(nn.Module):
    """Module form of :func:`polar_descriptor`."""

    def __init__(self, radii: Sequence[float] = (2.0, 4.0, 7.0), sectors: int = 8, centre: bool = False) -> None:
        super().__init__()
        self.radii, self.sectors, self.centre = tuple(float(r) for r in radii), int(sectors), bool(centre)

    def forward(self, features: torch.Tensor, xy: torch.Tensor, angle: torch.Tensor,
                shape: Optional[torch.Tensor] = None) -> torch.Tensor:
        return polar_descriptor(features, xy, angle, self.radii, self.sectors, self.centre, shape)
