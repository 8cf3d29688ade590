"""Figures of the qatm family: scene with boxes, score heatmap."""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle


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


METHOD_COLOURS = {"model": "red", "untrained": "orange", "ncc": "cyan"}


def localisation_grid(rows: Sequence[dict], title: str = "") -> plt.Figure:
    """One row per pair: the template, the scene with every method's box and the true box (green,
    dashed), the model's QATM heatmap. ``rows``: dicts with ``template`` ``(3, h, w)``, ``scene``,
    ``gt`` ``(4,)`` xywh, ``boxes`` {method: (4,) xywh}, ``heatmap`` ``(H, W)``, ``ious`` {method: float}."""
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 3.2 * len(rows)), squeeze=False)
    for (a, b, c), row in zip(axes, rows):
        a.imshow(_rgb(row["template"]))
        a.set_title("template")
        b.imshow(_rgb(row["scene"]))
        g = row["gt"].tolist()
        b.add_patch(Rectangle((g[0] - 0.5, g[1] - 0.5), g[2], g[3], fill=False, edgecolor="lime", linestyle="--", linewidth=2))
        for method, box in row["boxes"].items():
            x, y, w, h = box.tolist()
            b.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=METHOD_COLOURS.get(method, "white"), linewidth=1.5))
        b.set_title("  ".join(f"{m} {row['ious'][m]:.2f}" for m in row["boxes"]) + "  (IoU; green: truth)", fontsize=8)
        c.imshow(row["heatmap"].numpy(), cmap="jet")
        c.set_title("QATM score (model)")
        for ax in (a, b, c):
            ax.set_axis_off()
    if title:
        fig.suptitle(title + "  red: model, orange: untrained, cyan: NCC")
    return fig


def retrieval_figure(queries: torch.Tensor, gallery: torch.Tensor, top: torch.Tensor, correct: torch.Tensor, title: str) -> plt.Figure:
    """Queries ``(Q, 3, h, w)`` (one per row) with their top-k gallery images (``top`` ``(Q, k)``
    indices into ``gallery``); a true match (``correct`` ``(Q, k)``) is framed green, others red."""
    q, k = top.shape
    fig, axes = plt.subplots(q, k + 1, figsize=(1.6 * (k + 1), 1.7 * q), squeeze=False)
    for i in range(q):
        axes[i, 0].imshow(_rgb(queries[i]))
        axes[i, 0].set_title("query", fontsize=7)
        for j in range(k):
            ax = axes[i, j + 1]
            ax.imshow(_rgb(gallery[int(top[i, j])]))
            ok = bool(correct[i, j])
            for side in ax.spines.values():
                side.set_edgecolor("lime" if ok else "red")
                side.set_linewidth(3)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"#{j + 1}" + (" match" if ok else ""), fontsize=7)
        axes[i, 0].set_axis_off()
    fig.suptitle(title)
    return fig


def retrieval_figures(rankings: dict[str, torch.Tensor], queries: torch.Tensor, gallery: torch.Tensor, q_labels: torch.Tensor,
                      g_labels: torch.Tensor, exclude: torch.Tensor, n_queries: int = 6) -> dict[str, plt.Figure]:
    """One top-5 figure per ranking (``(Q, G)`` similarities) for ``n_queries`` queries spread over the list;
    ``exclude`` ``(Q, G)`` removes a query's own image from its gallery."""
    n = min(n_queries, len(queries))
    pick = torch.linspace(0, len(queries) - 1, n).round().long()
    k = min(5, gallery.shape[0])
    out = {}
    for name, sim in rankings.items():
        top = sim[pick].masked_fill(exclude[pick], float("-inf")).topk(k, dim=1).indices
        correct = g_labels[top] == q_labels[pick].view(-1, 1)
        out[name] = retrieval_figure(queries[pick], gallery, top, correct, f"top-{k} by {name} (green: true match)")
    return out
