"""Figures of the detector: matches between two images, score maps with keypoints."""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _grey(image: torch.Tensor) -> np.ndarray:
    a = image.detach().cpu().float()
    a = a.mean(0) if a.dim() == 3 else a
    return (a / 255.0 if a.max() > 1.5 else a).numpy()


def plot_matches(panels: Sequence[dict], title: Optional[str] = None) -> plt.Figure:
    """One row per panel: image1 | image2 side by side with match lines (green = reprojection
    error under the threshold, red = wrong). Panel keys: ``image1``, ``image2`` (C, H, W),
    ``xy1`` (M, 2), ``xy2`` (M, 2) matched points, ``correct`` (M,) bool, ``label`` str."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 4.2 * len(panels)), squeeze=False)
    for ax, p in zip(axes[:, 0], panels):
        a, b = _grey(p["image1"]), _grey(p["image2"])
        h = max(a.shape[0], b.shape[0])
        canvas = np.zeros((h, a.shape[1] + b.shape[1]))
        canvas[: a.shape[0], : a.shape[1]] = a
        canvas[: b.shape[0], a.shape[1] :] = b
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
        xy1, xy2, ok = p["xy1"].cpu().numpy(), p["xy2"].cpu().numpy(), p["correct"].cpu().numpy()
        for (x1, y1), (x2, y2), c in zip(xy1, xy2, ok):
            ax.plot([x1, x2 + a.shape[1]], [y1, y2], color="lime" if c else "red", lw=0.6, alpha=0.8)
        ax.set_title(f"{p['label']}: {int(ok.sum())}/{len(ok)} correct matches")
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_score_maps(images: Sequence[torch.Tensor], scores: Sequence[torch.Tensor], keypoints: Sequence[torch.Tensor],
                    angles: Optional[Sequence[torch.Tensor]] = None) -> plt.Figure:
    """Image with keypoints (and orientation ticks) above its score map, one column per image."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(4 * n, 8), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(_grey(images[i]), cmap="gray")
        xy = keypoints[i].cpu().numpy()
        axes[0, i].scatter(xy[:, 0], xy[:, 1], s=6, c="yellow")
        if angles is not None:
            a = angles[i].cpu().numpy()
            axes[0, i].quiver(xy[:, 0], xy[:, 1], np.cos(a), -np.sin(a), color="cyan", scale=40, width=0.003)
        axes[1, i].imshow(scores[i].detach().cpu().squeeze().numpy(), cmap="magma")
        for ax in axes[:, i]:
            ax.axis("off")
    fig.tight_layout()
    return fig
