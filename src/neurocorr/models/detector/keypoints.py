"""Keypoints from the detector's maps: NMS + threshold + top-k + sub-pixel (``ops.peaks``), border
removal, and an orientation per keypoint. Pixel centres at integer coordinates."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from neurocorr.models.detector.torch_model import orientation_angle
from neurocorr.ops.peaks import find_peaks


class Keypoints(NamedTuple):
    """``K`` keypoints per image, sorted by score. xy: ``(B, K, 2)`` px; score: ``(B, K)``;
    angle: ``(B, K)`` radians (image coordinates, x right, y down); valid: ``(B, K)`` bool."""

    xy: torch.Tensor
    score: torch.Tensor
    angle: torch.Tensor
    valid: torch.Tensor


def sample_maps(maps: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``maps`` ``(B, C, H, W)`` at points ``xy`` ``(B, K, 2)`` -> ``(B, K, C)``."""
    h, w = maps.shape[-2:]
    grid = torch.stack([2 * xy[..., 0] / max(w - 1, 1) - 1, 2 * xy[..., 1] / max(h - 1, 1) - 1], -1)
    out = F.grid_sample(maps, grid.unsqueeze(1).to(maps.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, 0].transpose(1, 2)


def keypoint_angles(orientation: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Angle ``(B, K)`` of each keypoint from the orientation distribution ``(B, N, H, W)``."""
    return orientation_angle(sample_maps(orientation, xy))


def detect_keypoints(score: torch.Tensor, orientation: torch.Tensor, top_k: int = 300, threshold: float = 0.0,
                     nms_window: int = 5, border: int = 4, subpixel: bool = True) -> Keypoints:
    """Keypoints of a score map ``(B, 1, H, W)`` with orientations from ``(B, N, H, W)``."""
    if score.dim() != 4 or score.shape[1] != 1:
        raise ValueError(f"detect_keypoints expects a (B, 1, H, W) score map, got {tuple(score.shape)}")
    peaks = find_peaks(score, top_k=top_k, threshold=threshold, window=nms_window, border=border, subpixel=subpixel)
    xy, s, valid = peaks.xy[:, 0], peaks.score[:, 0], peaks.valid[:, 0]
    return Keypoints(xy=xy, score=s, angle=keypoint_angles(orientation, xy), valid=valid)
