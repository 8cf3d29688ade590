"""Figures: images with their predicted heatmaps overlaid, predicted and ground-truth points."""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import torch

from neurocorr.viz.plots import to_numpy_image

COLOURS = ("tab:red", "tab:green", "tab:blue", "tab:orange", "tab:purple")


def plot_keypoints(
    images: torch.Tensor, heatmaps: torch.Tensor, pred_xy: torch.Tensor, pred_valid: torch.Tensor,
    gt_xy: torch.Tensor, gt_labels: torch.Tensor, class_names: Sequence[str], columns: int = 4,
) -> plt.Figure:
    """images ``(N, 3, H, W)``, heatmaps ``(N, K, H, W)`` in [0, 1], pred_xy ``(N, K, P, 2)``,
    pred_valid ``(N, K, P)``, gt_xy ``(N, M, 2)``, gt_labels ``(N, M)``. Ground truth: circles;
    predictions: crosses; the heatmap overlay colours class k like its points."""
    n, k = images.shape[0], heatmaps.shape[1]
    cols = min(columns, n)
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    palette = torch.tensor([plt.matplotlib.colors.to_rgb(COLOURS[c % len(COLOURS)]) for c in range(k)])
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        image = torch.as_tensor(to_numpy_image(images[i])).float()
        heat = heatmaps[i].detach().float().cpu().clamp(0, 1)  # (K, H, W)
        colour = torch.einsum("khw,kc->hwc", heat, palette)
        alpha = heat.amax(0).unsqueeze(-1) * 0.7
        ax.imshow((image * (1 - alpha) + colour.clamp(0, 1) * alpha).numpy())
        for c in range(k):
            gt = gt_xy[i][gt_labels[i] == c].cpu()
            ax.scatter(gt[:, 0], gt[:, 1], s=60, facecolors="none", edgecolors=COLOURS[c % len(COLOURS)], linewidths=1.5)
            pr = pred_xy[i, c][pred_valid[i, c]].cpu()
            ax.scatter(pr[:, 0], pr[:, 1], s=40, marker="x", c=COLOURS[c % len(COLOURS)], linewidths=1.5,
                       label=class_names[c] if i == 0 else None)
    if n:
        axes.flat[0].legend(loc="lower left", fontsize=7, framealpha=0.6)
    fig.suptitle("heatmaps, ground truth (o) and predictions (x)")
    fig.tight_layout()
    return fig
