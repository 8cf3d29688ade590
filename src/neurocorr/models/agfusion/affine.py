"""Random class-keeping affine warps of a batch of drawings: any rotation, a change of size and of
aspect ratio, a shift; one warp per image, batched in one ``grid_sample``.

A drawn ellipse stays an ellipse when it is turned or stretched (and a rectangle a rectangle), so
these warps multiply a small real training set (a few hundred drawings) without changing a label.
Pixels from outside the image repeat its border (paper, for drawings on paper).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neurocorr.errors import ConfigError


class RandomAffine(nn.Module):
    """Warp ``(B, C, S, S)`` images in [0, 1], each by its own random affine map.

    Args:
        rotation_deg: rotated by a uniform angle in +- this, degrees.
        scale: the figure's size is multiplied by a log-uniform factor in this range.
        aspect: range ``[low, high]`` (``low >= 1``) of a log-uniform stretch: x or y (before the
            rotation) becomes that many times longer than the other, the area kept.
        translate: shifted by up to this share of the image side along each axis.
    """

    def __init__(self, rotation_deg: float = 180.0, scale: Sequence[float] = (0.8, 1.15),
                 aspect: Sequence[float] = (1.0, 1.5), translate: float = 0.1) -> None:
        super().__init__()
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ConfigError(f"model.augment_affine.scale must be a range [low, high] of positive factors, got {list(scale)}")
        if len(aspect) != 2 or not 1 <= aspect[0] <= aspect[1]:
            raise ConfigError(f"model.augment_affine.aspect must be a range [low, high] with 1 <= low <= high, got {list(aspect)}")
        if translate < 0 or rotation_deg < 0:
            raise ConfigError(f"model.augment_affine: rotation_deg and translate must be >= 0, got {rotation_deg}, {translate}")
        self.rotation = math.radians(rotation_deg)
        self.scale = (math.log(scale[0]), math.log(scale[1]))
        self.aspect = (math.log(aspect[0]), math.log(aspect[1]))
        self.translate = translate

    def matrices(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``(n, 2, 3)`` maps from output to input coordinates (``affine_grid``'s convention)."""
        u = torch.rand(n, 6, generator=generator)
        angle = self.rotation * (2 * u[:, 0] - 1)
        scale = torch.exp(self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 1])
        stretch = torch.exp(self.aspect[0] + (self.aspect[1] - self.aspect[0]) * u[:, 2])
        stretch = torch.where(u[:, 3] < 0.5, stretch, 1 / stretch)  # the long axis along x or y
        # forward map: stretch along x (area kept), rotate, scale; the grid needs its inverse
        forward = torch.zeros(n, 2, 2)
        cos, sin = angle.cos(), angle.sin()
        sx, sy = scale * stretch.sqrt(), scale / stretch.sqrt()
        forward[:, 0, 0], forward[:, 0, 1] = cos * sx, -sin * sy
        forward[:, 1, 0], forward[:, 1, 1] = sin * sx, cos * sy
        shift = self.translate * 2 * (2 * u[:, 4:6] - 1)                      # in [-1, 1] units
        inverse = torch.linalg.inv(forward)
        return torch.cat([inverse, -(inverse @ shift[:, :, None])], 2)

    def forward(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        theta = self.matrices(images.shape[0], generator).to(images.device, images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
