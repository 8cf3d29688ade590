"""Label-free monitoring of DINO (teacher entropy, collapse) plus the k-NN probe and the attention figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from neurocorr.viz.plots import to_numpy_image


def teacher_entropy(teacher_out: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean entropy (nats) of the centred, sharpened teacher distributions; ``teacher_out`` ``(N, D)``.
    log(D) = uniform (centring dominates), 0 = one-hot (sharpening dominates)."""
    p = F.softmax((teacher_out - center.reshape(1, -1)) / temperature, dim=-1)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1).mean()


def normalised_std(outputs: torch.Tensor) -> torch.Tensor:
    """Collapse check: the std over the batch of the L2-normalised outputs ``(N, D)``, averaged over
    dimensions, times sqrt(D): about 1 for spread-out outputs, 0 when all outputs are the same."""
    z = F.normalize(outputs.float(), dim=-1)
    return z.std(dim=0).mean() * outputs.shape[-1] ** 0.5


@torch.no_grad()
def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor,
                 k: int = 20, temperature: float = 0.07) -> torch.Tensor:
    """Weighted k-NN accuracy (as in DINO's evaluation): ``bank`` ``(N, C)`` and ``query`` ``(M, C)``
    features, cosine similarity, each of the k nearest votes exp(sim / temperature) for its label.
    Both are first centred on the bank's mean: features of a network from scratch share a large common
    component (cosines all near 1), under which the vote is the bank's majority class."""
    mean = bank.float().mean(dim=0, keepdim=True)
    sim = F.normalize(query.float() - mean, dim=-1) @ F.normalize(bank.float() - mean, dim=-1).T
    top, index = sim.topk(min(k, bank.shape[0]), dim=-1)
    n_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    votes = torch.zeros(query.shape[0], n_classes, device=query.device)
    votes.scatter_add_(1, bank_labels[index].long(), (top / temperature).exp())
    return (votes.argmax(dim=-1) == query_labels.long()).float().mean()


def plot_attention(images: torch.Tensor, attention: torch.Tensor) -> plt.Figure:
    """``images`` ``(B, 3, H, W)`` in [0, 1], ``attention`` ``(B, heads, h, w)``: one row per image,
    the image then each head's CLS attention upsampled over it."""
    b, heads = attention.shape[:2]
    maps = F.interpolate(attention.float(), size=images.shape[-2:], mode="nearest").cpu()
    fig, axes = plt.subplots(b, heads + 1, figsize=(1.6 * (heads + 1), 1.6 * b), squeeze=False)
    for i in range(b):
        axes[i, 0].imshow(to_numpy_image(images[i]), cmap="gray")
        for j in range(heads):
            axes[i, j + 1].imshow(maps[i, j].numpy(), cmap="inferno")
            if i == 0:
                axes[i, j + 1].set_title(f"head {j}", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("DINO: last-layer CLS attention (teacher)", fontsize=9)
    fig.tight_layout()
    return fig
