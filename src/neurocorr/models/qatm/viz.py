"""Figures of the qatm family: scene with boxes, score heatmap."""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


def _rgb(image: torch.Tensor):
    img = image.detach().cpu()
    img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
    return img.permute(1, 2, 0).clamp(0, 1).numpy()


def boxes_figure(scene: torch.Tensor, xywh: torch.Tensor, scores: torch.Tensor, labels: Sequence[str],
                 gt: Optional[torch.Tensor] = None) -> plt.Figure:
    """The scene ``(3, H, W)`` with predicted boxes (label and score) and optional ground truth."""
    h, w = scene.shape[-2:]
    fig, ax = plt.subplots(figsize=(max(4, w / 100), max(3, h / 100)))
    ax.imshow(_rgb(scene))
    colours = plt.cm.tab10.colors
    for i, (b, s, lab) in enumerate(zip(xywh.tolist(), scores.tolist(), labels)):
        c = colours[i % len(colours)]
        ax.add_patch(Rectangle((b[0] - 0.5, b[1] - 0.5), b[2], b[3], fill=False, edgecolor=c, linewidth=2))
        ax.text(b[0], b[1] - 2, f"{lab} {s:.3f}", color=c, fontsize=7, va="bottom")
    if gt is not None:
        for b in gt.view(-1, 4).tolist():
            ax.add_patch(Rectangle((b[0] - 0.5, b[1] - 0.5), b[2], b[3], fill=False, edgecolor="white", linestyle="--"))
    ax.set_axis_off()
    return fig


def heatmap_figure(score: torch.Tensor, scene: Optional[torch.Tensor] = None, title: str = "QATM score") -> plt.Figure:
    """A score map ``(H, W)`` (or the max over templates of ``(N, H, W)``), over the scene if given."""
    m = score.detach().cpu().float()
    m = m.amax(0) if m.dim() == 3 else m
    fig, ax = plt.subplots(figsize=(max(4, m.shape[1] / 100), max(3, m.shape[0] / 100)))
    if scene is not None:
        ax.imshow(_rgb(scene))
        im = ax.imshow(m.numpy(), cmap="jet", alpha=0.55)
    else:
        im = ax.imshow(m.numpy(), cmap="jet")
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_title(title)
    ax.set_axis_off()
    return fig


def localisation_figure(scene: torch.Tensor, score: torch.Tensor, xywh: torch.Tensor, gt: torch.Tensor) -> plt.Figure:
    """Scene with boxes (left) and the score map (right)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.imshow(_rgb(scene))
    for bb in xywh.tolist()[:5]:
        a.add_patch(Rectangle((bb[0] - 0.5, bb[1] - 0.5), bb[2], bb[3], fill=False, edgecolor="red", linewidth=2))
    g = gt.tolist()
    a.add_patch(Rectangle((g[0] - 0.5, g[1] - 0.5), g[2], g[3], fill=False, edgecolor="lime", linestyle="--"))
    a.set_title("red: prediction, green: ground truth")
    b.imshow(score.numpy(), cmap="jet")
    b.set_title("QATM score")
    for ax in (a, b):
        ax.set_axis_off()
    return fig
