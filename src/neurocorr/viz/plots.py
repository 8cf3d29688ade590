"""Generic figures: confusion matrix, ROC curve, 2-D projection of embeddings, image grids."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` uint8 or float in [0, 1] -> ``(H, W, C)`` float array in [0, 1] for imshow."""
    image = image.detach().float().cpu()
    if image.max() > 1.0:
        image = image / 255.0
    array = image.clamp(0, 1).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def plot_confusion_matrix(matrix: torch.Tensor, class_names: Sequence[str], title: str = "Confusion matrix") -> plt.Figure:
    """``matrix`` (K, K): rows true class, columns predicted class (counts)."""
    m = matrix.detach().cpu().numpy()
    fig, ax = plt.subplots(figsize=(3.2 + 0.4 * len(class_names), 3.0 + 0.4 * len(class_names)))
    ax.imshow(m, cmap="Blues")
    for (i, j), value in np.ndenumerate(m):
        ax.text(j, i, f"{int(value)}", ha="center", va="center", color="white" if value > m.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def plot_roc(fpr: torch.Tensor, tpr: torch.Tensor, auc: float) -> plt.Figure:
    """ROC curve from false- and true-positive rates (1-D, same length)."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr.cpu().numpy(), tpr.cpu().numpy(), label=f"ROC-AUC = {auc:.4f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right")
    return fig


def pca_2d(embeddings: torch.Tensor) -> torch.Tensor:
    """Project ``(N, D)`` embeddings onto their first two principal components: ``(N, 2)``."""
    x = embeddings.detach().float().cpu()
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.pca_lowrank(x, q=min(2, x.shape[1]), center=False)
    return x @ v[:, :2]


def plot_embeddings(embeddings: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], title: str = "Embeddings (PCA)") -> plt.Figure:
    """Scatter of the 2-D PCA of ``(N, D)`` embeddings coloured by ``labels`` (N,) long."""
    points = pca_2d(embeddings).numpy()
    labels_np = labels.cpu().numpy()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for k, name in enumerate(class_names):
        sel = labels_np == k
        if sel.any():
            ax.scatter(points[sel, 0], points[sel, 1], s=6, alpha=0.6, label=name)
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=8)
    return fig
