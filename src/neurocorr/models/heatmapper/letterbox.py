"""Letterboxing: any image (any size, any aspect) into a ``size`` x ``size`` model input, and the
pixel maps between the two frames.

The image is resized to keep its aspect, its long side becoming ``size``: content ``(cw, ch)`` =
``(round(W * size / L), round(H * size / L))`` with ``L = max(W, H)``, placed at ``offset`` =
``((size - cw) // 2, (size - ch) // 2)``; the rest is zero (black). Pixel centres sit at integer
coordinates in both frames, so with ``scale = (cw / W, ch / H)``::

    input    = (original + 0.5) * scale - 0.5 + offset
    original = (input - offset + 0.5) / scale - 0.5
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def letterbox_geometry(width: int, height: int, size: int) -> tuple[tuple[int, int], tuple[float, float], tuple[int, int]]:
    """``(cw, ch)`` content size in input pixels, ``scale`` (x, y) and ``offset`` (x, y) for an image of
    ``width`` x ``height`` pixels letterboxed into ``size`` x ``size``."""
    long_side = max(width, height)
    cw = max(1, int(round(width * size / long_side)))
    ch = max(1, int(round(height * size / long_side)))
    return (cw, ch), (cw / width, ch / height), ((size - cw) // 2, (size - ch) // 2)


def letterbox_image(image: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[float, float], tuple[int, int]]:
    """``image`` ``(C, H, W)`` uint8 -> ``(C, size, size)`` uint8 (antialiased bilinear resize, zero
    border), with the ``scale`` and ``offset`` of :func:`letterbox_geometry`."""
    h, w = image.shape[-2:]
    (cw, ch), scale, (ox, oy) = letterbox_geometry(w, h, size)
    if (cw, ch) != (w, h):
        resized = F.interpolate(image.unsqueeze(0).float(), size=(ch, cw), mode="bilinear", antialias=True, align_corners=False)
        image = resized[0].round().clamp(0, 255).to(torch.uint8)
    if (cw, ch) == (size, size):
        return image.contiguous(), scale, (ox, oy)
    out = torch.zeros(image.shape[0], size, size, dtype=torch.uint8)
    out[:, oy : oy + ch, ox : ox + cw] = image
    return out, scale, (ox, oy)


def to_input(points: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Original-image pixels ``(..., N, 2)`` -> letterboxed-input pixels; ``scale``/``offset`` ``(..., 2)``."""
    return (points + 0.5) * scale.unsqueeze(-2) - 0.5 + offset.unsqueeze(-2)


def to_original(points: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Letterboxed-input pixels ``(B, ..., 2)`` -> original-image pixels; ``scale``/``offset`` ``(B, 2)``
    (broadcast over the middle axes of ``points``)."""
    shape = (scale.shape[0],) + (1,) * (points.dim() - 2) + (2,)
    return (points - offset.view(shape) + 0.5) / scale.view(shape) - 0.5
