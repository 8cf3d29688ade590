"""Random elements of the dihedral group D4 (the 8 flips and 90-degree rotations of a square),
one per image, applied to a whole batch in one gather.

Element ``k`` in 0..7 of an image ``x`` ``(C, S, S)``: ``torch.rot90(x, k % 4, dims=(-2, -1))``,
after a transpose of the last two axes when ``k >= 4``. The 8 elements are the identity, three
rotations, the two flips and the two diagonal reflections, each drawn with probability 1/8.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import nn


@functools.lru_cache(maxsize=16)
def dihedral_index(size: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """``(8, size * size)`` long: row ``k`` lists, for each output pixel, the flat input pixel that
    element ``k`` moves there. Cached per (size, device): every training batch asks for the same
    table (callers index it, never write to it)."""
    grid = torch.arange(size * size, device=device).view(size, size)
    rows = [torch.rot90(grid.t() if k >= 4 else grid, k % 4, dims=(0, 1)).reshape(-1) for k in range(8)]
    return torch.stack(rows)


def apply_dihedral(images: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
    """Apply element ``elements[b]`` (long ``(B,)`` in 0..7) to square images ``(B, C, S, S)``."""
    if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"apply_dihedral expects square images (B, C, S, S), got {tuple(images.shape)}")
    if elements.shape != images.shape[:1]:
        raise ValueError(f"apply_dihedral: one element per image needed, got {tuple(elements.shape)} for {images.shape[0]}")
    b, c, s, _ = images.shape
    index = dihedral_index(s, images.device)[elements.to(images.device)]                # (B, S*S)
    return images.flatten(2).gather(2, index[:, None, :].expand(b, c, s * s)).view(b, c, s, s)


def random_dihedral(images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Each square image ``(B, C, S, S)`` under a uniformly drawn element of D4 (drawn on the CPU
    from ``generator`` or the global RNG, so a seed gives the same draws on any device)."""
    elements = torch.randint(8, (images.shape[0],), generator=generator)
    return apply_dihedral(images, elements)


class RandomDihedral(nn.Module):
    """Module form of :func:`random_dihedral`: random flips and 90-degree rotations, batched."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return random_dihedral(images)
