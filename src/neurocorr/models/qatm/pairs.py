"""Self-supervised template pairs, made on the device in one batched pass: a random crop of an image
(the template, with its surroundings) and a geometrically and photometrically warped copy of the
image (the scene) holding the crop at a known box.

Random numbers come from the global generator: call inside the module's ``step_rng()``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import kornia.geometry.transform as KT
import torch


#: (scale range, rotation degrees, perspective) of pairs that move only as much as consecutive video
#: frames do: the ``pairs.mild`` share of training pairs and every other validation picture pair
MILD_WARP = ((0.9, 1.1), 5.0, 0.03)


class WarpedPairs(NamedTuple):
    """``template (B, 3, T + 2c, T + 2c)`` (the template with ``c`` pixels of context), ``scene
    (B, 3, S, S)`` and ``box (B, 4)`` xywh: the axis-aligned box of the warped template in the scene."""

    template: torch.Tensor
    scene: torch.Tensor
    box: torch.Tensor


def _uniform(n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=like.device, dtype=like.dtype)


def warped_pairs(
    images: torch.Tensor, template_size: int, context: int, scene_size: int,
    scale: Sequence[float] = (0.7, 1.4), rotation: float = 20.0, perspective: float = 0.15,
) -> WarpedPairs:
    """Template pairs from ``images`` ``(B, 3, H, W)`` float in [0, 1] (H, W >= T + 2c).

    The template is the ``T`` x ``T`` crop at a random place (with ``c`` context pixels around it);
    the scene is the image under a random homography: scale log-uniform in ``scale``, rotation in
    +-``rotation`` degrees, a perspective tilt up to ``perspective`` (corner displacement as a share of
    the template size) and a random shift that keeps the warped template inside the ``S`` x ``S`` scene.
    The warp samples outside the image by reflection.
    """
    b, _, h, w = images.shape
    t, c = int(template_size), int(context)
    if min(h, w) < t + 2 * c:
        raise ValueError(f"images of {h}x{w} are too small for templates of {t} px with {c} px context")
    ref = images.new_zeros(())
    x0 = (torch.rand(b, device=images.device) * (w - t - 2 * c + 1)).floor() + c  # template top-left
    y0 = (torch.rand(b, device=images.device) * (h - t - 2 * c + 1)).floor() + c
    span_px = torch.arange(t + 2 * c, device=images.device)
    rows = (y0.long().view(b, 1) - c + span_px).view(b, -1, 1)
    cols = (x0.long().view(b, 1) - c + span_px).view(b, 1, -1)
    batch = torch.arange(b, device=images.device).view(b, 1, 1)
    template = images.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()

    # homography: template corners -> a random quadrilateral of side ~ scale * T inside the scene
    s = torch.exp(_uniform(b, math.log(scale[0]), math.log(scale[1]), ref))
    a = torch.deg2rad(_uniform(b, -rotation, rotation, ref))
    half = 0.5 * t
    unit = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=images.device)
    corners = unit * half + (perspective * t) * (2 * torch.rand(b, 4, 2, device=images.device) - 1) * 0.5
    rot = torch.stack([torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a)], -1).view(b, 2, 2)
    dst = torch.einsum("bij,bkj->bki", rot, corners) * s.view(b, 1, 1)
    lo, hi = dst.amin(1), dst.amax(1)  # (B, 2) extent around the centre
    span = (scene_size - (hi - lo)).clamp_min(0)
    centre = torch.rand(b, 2, device=images.device) * span - lo
    dst = dst + centre.view(b, 1, 2)
    src = unit * half + torch.stack([x0 + half, y0 + half], -1).view(b, 1, 2)
    homography = KT.get_perspective_transform(src, dst)
    scene = KT.warp_perspective(images, homography, (scene_size, scene_size), mode="bilinear", padding_mode="reflection")
    lo, hi = dst.amin(1).clamp(0, scene_size), dst.amax(1).clamp(0, scene_size)
    box = torch.cat([lo, hi - lo], -1)
    return WarpedPairs(template, scene, box)


def photometric(images: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Random gain, contrast, colour tint, gamma, blur-free noise of ``(B, 3, H, W)`` in [0, 1]."""
    if strength <= 0:
        return images
    b = images.shape[0]
    shape = (b, 1, 1, 1)
    dev, dt = images.device, images.dtype
    gain = 1 + strength * 0.3 * (2 * torch.rand(shape, device=dev, dtype=dt) - 1)
    tint = 1 + strength * 0.1 * (2 * torch.rand(b, 3, 1, 1, device=dev, dtype=dt) - 1)
    contrast = 1 + strength * 0.3 * (2 * torch.rand(shape, device=dev, dtype=dt) - 1)
    gamma = torch.exp(strength * 0.3 * (2 * torch.rand(shape, device=dev, dtype=dt) - 1))
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    out = ((images - mean) * contrast + mean) * gain * tint
    out = out.clamp(1e-4, 1) ** gamma
    return (out + strength * 0.02 * torch.randn_like(out)).clamp(0, 1)
