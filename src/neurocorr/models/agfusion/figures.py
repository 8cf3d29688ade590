"""AGFusion figures: image pairs with the gate's attention maps; the hardest pairs with their scores."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from neurocorr.viz.plots import to_numpy_image


def plot_attention_pairs(
    image_a: torch.Tensor, image_b: torch.Tensor, attention_a: torch.Tensor, attention_b: torch.Tensor,
    probability: torch.Tensor, label: torch.Tensor,
) -> plt.Figure:
    """One row per pair: image a, its attention, image b, its attention.

    Images ``(N, 3, H, W)``; attention ``(N, 1, h, w)`` (upsampled to the image); probability and
    label ``(N,)``.
    """
    n = image_a.shape[0]
    size = image_a.shape[-2:]
    att_a = F.interpolate(attention_a.float(), size=size, mode="bilinear", align_corners=False)
    att_b = F.interpolate(attention_b.float(), size=size, mode="bilinear", align_corners=False)
    fig, axes = plt.subplots(n, 4, figsize=(8, 2.1 * n), squeeze=False)
    for i in range(n):
        for j, (img, att) in enumerate([(image_a[i], att_a[i]), (image_b[i], att_b[i])]):
            axes[i, 2 * j].imshow(to_numpy_image(img))
            axes[i, 2 * j + 1].imshow(to_numpy_image(img))
            axes[i, 2 * j + 1].imshow(att[0].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[i, 0].set_title(f"P(same)={float(probability[i]):.2f}  label={int(label[i])}", fontsize=8, loc="left")
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def plot_hardest_pairs(image_a: torch.Tensor, image_b: torch.Tensor, probability: torch.Tensor, label: torch.Tensor,
                       columns: int = 4) -> plt.Figure:
    """The pairs the model gets most wrong, side by side, titled with P(same) and the true label.

    Images ``(N, 3, H, W)``; probability and label ``(N,)``, in the order given (hardest first).
    """
    n = image_a.shape[0]
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 1.45 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        pair = torch.cat([image_a[i], torch.ones_like(image_a[i][..., :2]) * image_a[i].max(), image_b[i]], -1)
        ax = axes.flat[i]
        ax.imshow(to_numpy_image(pair))
        truth = "same" if float(label[i]) > 0.5 else "different"
        ax.set_title(f"P(same)={float(probability[i]):.2f}  {truth}", fontsize=7)
    fig.tight_layout()
    return fig
