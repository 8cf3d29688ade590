"""Keypoint-aware augmentation, batched on the device: one random affine warp (rotation, scale,
shift) per image, applied by ``grid_sample`` to the image and with the same matrix to its keypoints,
after a brightness and contrast jitter of the image. Heatmaps are rendered afterwards from the moved points."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neurocorr.ops.geometry import affine_grid


def transform_points(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply ``matrix`` ``(B, 2, 3)`` to ``points`` ``(B, N, 2)`` (x, y) pixels."""
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, :, 2].unsqueeze(1)


def warp_with_points(
    images: torch.Tensor, points: torch.Tensor, labels: torch.Tensor, matrix: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp images ``(B, C, H, W)`` and points ``(B, N, 2)`` by ``matrix`` ``(B, 2, 3)`` (source ->
    destination pixels, pixel centres at integer coordinates); points leaving the image get label -1."""
    h, w = images.shape[-2:]
    warped = F.grid_sample(images, affine_grid(matrix, (h, w), (h, w)).to(images.dtype), mode="bilinear",
                           padding_mode="zeros", align_corners=True)
    moved = transform_points(points, matrix.to(points.dtype))
    inside = (moved[..., 0] >= -0.5) & (moved[..., 0] <= w - 0.5) & (moved[..., 1] >= -0.5) & (moved[..., 1] <= h - 0.5)
    return warped, moved, torch.where(inside, labels, torch.full_like(labels, -1))


class KeypointAugment(nn.Module):
    """Random rotation in [-rotation, rotation] degrees, scale in ``scale``, shift up to
    ``translate`` x size, brightness shift up to ``brightness`` and contrast factor in
    [1 - contrast, 1 + contrast].

    forward(images ``(B, 3, H, W)`` float in [0, 1] or uint8, points ``(B, N, 2)``, labels ``(B, N)``)
    -> float images in [0, 1], points, labels, transformed.
    """

    def __init__(self, rotation: float = 180.0, scale: Sequence[float] = (0.8, 1.2), translate: float = 0.1,
                 brightness: float = 0.2, contrast: float = 0.2) -> None:
        super().__init__()
        self.rotation, self.scale, self.translate = float(rotation), tuple(float(s) for s in scale), float(translate)
        self.brightness, self.contrast = float(brightness), float(contrast)

    def sample_matrix(self, b: int, h: int, w: int, device: torch.device) -> torch.Tensor:
        """``(B, 2, 3)`` source -> destination pixel maps: a rotation by a uniform angle in
        [-rotation, rotation] degrees (counter-clockwise on screen, as ``cv2.getRotationMatrix2D``
        and ``kornia.geometry.transform.get_rotation_matrix2d``) and a uniform scale about the image
        centre, then a uniform shift of up to ``translate`` x the size."""
        draws = torch.rand(b, 4, device=device)
        angle = torch.deg2rad((draws[:, 0] * 2 - 1) * self.rotation)
        scale = self.scale[0] + (self.scale[1] - self.scale[0]) * draws[:, 1]
        shift = (draws[:, 2:] * 2 - 1) * self.translate * torch.tensor([w, h], device=device, dtype=draws.dtype)
        a, c = scale * torch.cos(angle), scale * torch.sin(angle)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        # [[a, c, (1 - a) cx - c cy + sx], [-c, a, c cx + (1 - a) cy + sy]]
        return torch.stack([a, c, (1 - a) * cx - c * cy + shift[:, 0], -c, a, c * cx + (1 - a) * cy + shift[:, 1]], 1).view(b, 2, 3)

    def forward(self, images: torch.Tensor, points: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if images.dim() != 4 or points.dim() != 3 or labels.shape != points.shape[:2]:
            raise ValueError(f"expected images (B,C,H,W), points (B,N,2), labels (B,N); got {tuple(images.shape)}, "
                             f"{tuple(points.shape)}, {tuple(labels.shape)}")
        b, _, h, w = images.shape
        matrix = self.sample_matrix(b, h, w, images.device)
        gain = 1 + (torch.rand(b, 1, 1, 1, device=images.device) * 2 - 1) * self.contrast
        bias = (torch.rand(b, 1, 1, 1, device=images.device) * 2 - 1) * self.brightness
        to_unit = 1.0 / 255.0 if images.dtype == torch.uint8 else 1.0
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32  # the mean of uint8 or half in float32
        mean = images.sum(dim=(1, 2, 3), keepdim=True, dtype=dtype) * (to_unit / images[0].numel())
        # brightness and contrast of the source image, (x - mean) * gain + mean + bias, as one multiply-add
        # that also converts uint8 to [0, 1]; then the warp (its zero padding stays black)
        images = torch.addcmul(mean * (1 - gain) + bias, images, gain * to_unit).clamp_(0, 1)
        return warp_with_points(images, points, labels, matrix)
