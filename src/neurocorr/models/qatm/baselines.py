"""Classical baseline for template localisation: OpenCV normalised cross-correlation on pixels."""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np
import torch


def _grey(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` uint8 or float [0, 1] -> ``(H, W)`` float32 grey."""
    img = image.detach().cpu().float()
    if image.dtype == torch.uint8:
        img = img / 255.0
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    return (img * weights).sum(0).numpy().astype(np.float32) if img.shape[0] == 3 else img[0].numpy().astype(np.float32)


def ncc_locate(template_image: torch.Tensor, box: Optional[Sequence[float]], scene: torch.Tensor) -> tuple[torch.Tensor, float, np.ndarray]:
    """Best ``TM_CCOEFF_NORMED`` match of the template in the scene, at the template's own size.

    Args:
        template_image: ``(3, h, w)``; ``box`` (x, y, w, h) cuts the template from it (None = whole).
        scene: ``(3, H, W)``.
    Returns: the box ``(4,)`` xywh (template-sized), its score, and the NCC map ``(H - h + 1, W - w + 1)``.
    """
    t = _grey(template_image)
    if box is not None:
        x, y, w, h = (int(round(float(v))) for v in box)
        t = t[y : y + h, x : x + w]
    s = _grey(scene)
    h, w = t.shape
    if h > s.shape[0] or w > s.shape[1]:
        return torch.zeros(4), float("-inf"), np.zeros((1, 1), np.float32)
    ncc = cv2.matchTemplate(s, t, cv2.TM_CCOEFF_NORMED)
    _, score, _, (bx, by) = cv2.minMaxLoc(ncc)
    return torch.tensor([float(bx), float(by), float(w), float(h)]), float(score), ncc
