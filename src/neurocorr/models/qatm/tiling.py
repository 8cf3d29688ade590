"""Feature maps of arbitrarily large images, computed tile by tile with a halo.

All taps of the backbone are resized to one grid of ``stride`` pixels per cell and concatenated.
Tiles start on multiples of ``align`` = lcm(deepest tap stride, stride) and carry a halo wider
than the backbone's receptive radius, so the tiled map equals the one-shot map while peak memory
is that of one tile.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Encoder = Callable[[torch.Tensor], Sequence[torch.Tensor]]


def fuse_taps(taps: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Resize every ``(B, C_k, h_k, w_k)`` tap to ``size`` (bilinear) and concatenate on channels."""
    out = [t if tuple(t.shape[-2:]) == tuple(size) else F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in taps]
    return torch.cat(out, dim=1)


def alignment(max_tap_stride: int, stride: int) -> int:
    return max_tap_stride * stride // math.gcd(max_tap_stride, stride)


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad ``(B, 3, H, W)`` at the bottom and right to multiples of ``multiple``."""
    h, w = image.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    return F.pad(image, (0, pw, 0, ph), mode="replicate") if ph or pw else image


def encode_fused(encoder: Encoder, image: torch.Tensor, stride: int, align: int) -> torch.Tensor:
    """One-shot fused features ``(B, C, ceil(H/stride), ceil(W/stride))`` of ``(B, 3, H, W)``."""
    h, w = image.shape[-2:]
    padded = pad_to_multiple(image, align)
    fused = fuse_taps(encoder(padded), (padded.shape[-2] // stride, padded.shape[-1] // stride))
    return fused[..., : -(-h // stride), : -(-w // stride)]


def encode_tiled(
    encoder: Encoder, image: torch.Tensor, stride: int, align: int, halo: int, tile: int
) -> torch.Tensor:
    """Fused features of ``(1, 3, H, W)`` computed in ``tile`` x ``tile`` pixel tiles.

    Args:
        halo: pixels of context around each tile (rounded up to a multiple of ``align``).
        tile: tile side in pixels (rounded up to a multiple of ``align``).
    Returns: ``(1, C, ceil(H/stride), ceil(W/stride))``, equal to :func:`encode_fused`.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"encode_tiled expects one image (1, 3, H, W), got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    halo = -(-halo // align) * align
    tile = max(align, -(-tile // align) * align)
    padded = pad_to_multiple(image, align)
    hp, wp = padded.shape[-2:]
    if hp <= tile and wp <= tile:
        return encode_fused(encoder, image, stride, align)
    out: torch.Tensor | None = None
    for y0 in range(0, hp, tile):
        for x0 in range(0, wp, tile):
            ya, xa = max(0, y0 - halo), max(0, x0 - halo)
            yb, xb = min(hp, y0 + tile + halo), min(wp, x0 + tile + halo)
            crop = padded[..., ya:yb, xa:xb]
            fused = fuse_taps(encoder(crop), ((yb - ya) // stride, (xb - xa) // stride))
            if out is None:
                out = fused.new_empty(1, fused.shape[1], hp // stride, wp // stride)
            cy, cx = (y0 - ya) // stride, (x0 - xa) // stride
            th, tw = (min(hp, y0 + tile) - y0) // stride, (min(wp, x0 + tile) - x0) // stride
            out[..., y0 // stride : y0 // stride + th, x0 // stride : x0 // stride + tw] = fused[..., cy : cy + th, cx : cx + tw]
    assert out is not None
    return out[..., : -(-h // stride), : -(-w // stride)]
