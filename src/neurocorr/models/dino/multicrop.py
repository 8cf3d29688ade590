"""DINO's multi-crop augmentation, batched on the device with kornia.

``MultiCrop(images)``: ``(B, 3, H, W)`` float in [0, 1] -> ``n_global`` crops ``(B, 3, G, G)`` then
``n_local`` crops ``(B, 3, L, L)`` (random resized crops of large / small areas, flips, colour
jitter, grey, blur on the global views). Random draws use torch's global RNG: call it inside the
module's ``step_rng()``.
"""

from __future__ import annotations

from typing import Sequence

import kornia.augmentation as K
import torch
from torch import nn


def _view(size: int, scale: Sequence[float], jitter: float, blur_p: float) -> nn.Sequential:
    layers: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=tuple(scale)),
        K.RandomHorizontalFlip(),
    ]
    if jitter > 0:
        layers.append(K.ColorJitter(0.4 * jitter, 0.4 * jitter, 0.2 * jitter, 0.1 * jitter, p=0.8))
        layers.append(K.RandomGrayscale(p=0.2))
    if blur_p > 0:
        kernel = max(3, (size // 10) | 1)  # odd, about a tenth of the view
        layers.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=blur_p))
    return nn.Sequential(*layers)


class MultiCrop(nn.Module):
    """2 global + N local views of a batch.

    Args:
        global_size, local_size: sides of the global and local crops, px (multiples of a ViT's patch).
        n_global: global views (DINO uses 2; the teacher sees only these).
        n_local: local views (only the student sees them; 0 = none).
        global_scale, local_scale: ranges of the crop area as a share of the image.
        jitter: colour-jitter strength (0 = none, e.g. for line drawings).
        blur_p: probability of a Gaussian blur of a global view.
    """

    def __init__(self, global_size: int = 64, local_size: int = 32, n_global: int = 2, n_local: int = 4,
                 global_scale: Sequence[float] = (0.4, 1.0), local_scale: Sequence[float] = (0.05, 0.4),
                 jitter: float = 1.0, blur_p: float = 0.5) -> None:
        super().__init__()
        if n_global < 1 or n_local < 0 or n_global + n_local < 2:
            raise ValueError(f"multi-crop needs n_global >= 1, n_local >= 0 and two views in all, got {n_global} + {n_local}")
        if global_size < 8 or local_size < 8:
            raise ValueError(f"crop sizes must be >= 8 px, got {global_size} and {local_size}")
        self.n_global, self.n_local = int(n_global), int(n_local)
        self.global_size, self.local_size = int(global_size), int(local_size)
        self.global_view = _view(global_size, global_scale, jitter, blur_p)
        self.local_view = _view(local_size, local_scale, jitter, 0.0)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        views = [self.global_view(images) for _ in range(self.n_global)]
        return views + [self.local_view(images) for _ in range(self.n_local)]
