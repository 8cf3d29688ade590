"""Keypoints from the detector's maps: NMS + threshold + top-k + 2-D sub-pixel refinement
(``ops.peaks``), border removal, an orientation per keypoint, and detection over an image pyramid
with scale-space NMS. Pixel centres at integer coordinates."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from neurocorr.models.detector.torch_model import DetectorOutput, orientation_angle
from neurocorr.ops.peaks import find_peaks, refine_subpixel_2d


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


SUBPIXEL = {True: "2d", False: "none", "2d": "2d", "1d": "1d", "none": "none"}


def score_peaks(score: torch.Tensor, top_k: int = 300, threshold: float = 0.0, nms_window: int = 3, border: int = 4,
                subpixel: bool | str = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peaks of a score map ``(B, 1, H, W)``: (xy ``(B, K, 2)``, score ``(B, K)``, valid ``(B, K)``),
    refined by a 2-D quadratic fit (``subpixel`` True or ``2d``), 1-D fits along x and y (``1d``),
    or left on the pixel grid (False or ``none``)."""
    if score.dim() != 4 or score.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, H, W) score map, got {tuple(score.shape)}")
    mode = SUBPIXEL.get(subpixel)
    if mode is None:
        raise ValueError(f"subpixel must be true, false, '2d', '1d' or 'none', got {subpixel!r}")
    peaks = find_peaks(score, top_k=top_k, threshold=threshold, window=nms_window, border=border, subpixel=mode == "1d")
    xy = peaks.xy
    if mode == "2d":
        flat = (xy[..., 1].round().long() * score.shape[-1] + xy[..., 0].round().long())
        xy = refine_subpixel_2d(score, flat)
    return xy[:, 0], peaks.score[:, 0], peaks.valid[:, 0]


def detect_keypoints(score: torch.Tensor, orientation: torch.Tensor, top_k: int = 300, threshold: float = 0.0,
                     nms_window: int = 5, border: int = 4, subpixel: bool | str = True) -> Keypoints:
    """Keypoints of a score map ``(B, 1, H, W)`` with orientations from ``(B, N, H, W)``."""
    xy, s, valid = score_peaks(score, top_k, threshold, nms_window, border, subpixel)
    return Keypoints(xy=xy, score=s, angle=keypoint_angles(orientation, xy), valid=valid)


Describe = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def detect_pyramid(net: Callable[[torch.Tensor], DetectorOutput], describe: Describe, image: torch.Tensor,
                   scales: Sequence[float], top_k: int, threshold: float = 0.0, nms_window: int = 3,
                   border: int = 4, subpixel: bool | str = True) -> tuple[Keypoints, torch.Tensor, torch.Tensor]:
    """Keypoints over an image pyramid with scale-space NMS.

    The network runs on ``image`` ``(B, C, H, W)`` resized by each of ``scales``; each score map is
    resized back to ``H x W``; a point is kept where the maximum over scales is a local maximum in
    ``nms_window`` (so the same structure seen at two scales gives one keypoint, at the scale that
    answers most). Orientation and descriptor (``describe(features, xy, angle)``) are read in the
    level of the keypoint's scale, at the keypoint's position in that level.

    Returns (keypoints, descriptors ``(B, K, D)``, the max-over-scales score map ``(B, 1, H, W)``).
    """
    h, w = image.shape[-2:]
    outs, maps, sizes = [], [], []
    for s in scales:
        size = (max(16, round(h * s)), max(16, round(w * s)))
        level = image if size == (h, w) else F.interpolate(image, size=size, mode="bilinear", antialias=True,
                                                           align_corners=False)
        out = net(level)
        outs.append(out)
        sizes.append(size)
        maps.append(out.score if size == (h, w) else F.interpolate(out.score, size=(h, w), mode="bilinear",
                                                                    align_corners=False))
    stack = torch.cat(maps, 1)                                                       # (B, L, H, W)
    best, level = stack.max(1, keepdim=True)
    xy, score, valid = score_peaks(best, top_k, threshold, nms_window, border, subpixel)
    flat = (xy.round().long()[..., 1].clamp(0, h - 1) * w + xy.round().long()[..., 0].clamp(0, w - 1))
    lvl = level.flatten(1).gather(1, flat)                                           # (B, K)
    angle = torch.zeros_like(score)
    desc = None
    for i, (out, (lh, lw)) in enumerate(zip(outs, sizes)):
        ratio = xy.new_tensor([lw / w, lh / h])
        xy_l = (xy + 0.5) * ratio - 0.5
        a_l = keypoint_angles(out.orientation, xy_l)
        d_l = describe(out.features, xy_l, a_l)
        pick = lvl == i
        angle = torch.where(pick, a_l, angle)
        desc = d_l if desc is None else torch.where(pick[..., None], d_l, desc)
    return Keypoints(xy=xy, score=score, angle=angle, valid=valid), desc, best
