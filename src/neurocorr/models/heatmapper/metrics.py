"""Keypoint metrics per class group (e.g. ``start_end`` and ``middle``), torchmetrics-style.

For predictions and ground truth of the same class in the same image:
- ``mean_dist``: mean distance from each prediction to its nearest ground-truth point (predictions
  of a class with no ground truth in the image have no distance and are left out);
- ``pck``: share of ground-truth points with a prediction within ``threshold``;
- ``unmatched``: share of predictions with no ground-truth point within ``threshold``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torchmetrics import Metric

DEFAULT_GROUPS = {"start_end": (0, 2), "middle": (1,)}


def keypoint_counts(
    pred_xy: torch.Tensor, pred_valid: torch.Tensor, gt_xy: torch.Tensor, gt_labels: torch.Tensor,
    threshold: float | torch.Tensor,
) -> torch.Tensor:
    """Per-class counts ``(K, 6)``: [n_pred, n_pred_with_gt, dist_sum, n_unmatched_pred, n_gt, n_gt_found].

    pred_xy ``(B, K, P, 2)``, pred_valid ``(B, K, P)``, gt_xy ``(B, N, 2)``, gt_labels ``(B, N)`` (-1 = padding);
    ``threshold``: one match distance, or one per image ``(B,)`` (images of different sizes in their own pixels).
    """
    b, k, p, _ = pred_xy.shape
    if gt_xy.shape[0] != b or gt_labels.shape != gt_xy.shape[:2]:
        raise ValueError(f"ground truth {tuple(gt_xy.shape)}/{tuple(gt_labels.shape)} does not fit predictions {tuple(pred_xy.shape)}")
    gt_xy, gt_labels = gt_xy.to(pred_xy), gt_labels.to(pred_xy.device)
    if gt_xy.shape[1] == 0:  # no ground truth at all: one padding slot keeps the reductions defined
        gt_xy, gt_labels = gt_xy.new_zeros(b, 1, 2), gt_labels.new_full((b, 1), -1)
    classes = torch.arange(k, device=pred_xy.device).view(1, k, 1)
    gt_mask = gt_labels.unsqueeze(1) == classes  # (B, K, N)
    dist = torch.linalg.vector_norm(pred_xy.unsqueeze(3) - gt_xy.view(b, 1, 1, -1, 2), dim=-1)  # (B, K, P, N)
    pair = pred_valid.unsqueeze(3) & gt_mask.unsqueeze(2)
    dist = torch.where(pair, dist, torch.full_like(dist, float("inf")))
    nearest_gt = dist.amin(dim=3)  # (B, K, P)
    nearest_pred = dist.amin(dim=2)  # (B, K, N)
    has_gt = pred_valid & torch.isfinite(nearest_gt)
    if isinstance(threshold, torch.Tensor):
        threshold = threshold.to(dist).view(b, 1, 1)
    sums = lambda t: t.sum(dim=(0, 2)).to(pred_xy.dtype)  # noqa: E731
    return torch.stack([
        sums(pred_valid),
        sums(has_gt),
        sums(torch.where(has_gt, nearest_gt, torch.zeros_like(nearest_gt))),
        sums(pred_valid & ~(nearest_gt <= threshold)),
        sums(gt_mask),
        sums(gt_mask & (nearest_pred <= threshold)),
    ], dim=1)


def summarise(counts: torch.Tensor, groups: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """``counts`` ``(K, 6)`` -> ``{pck_<g>, mean_dist_<g>, unmatched_<g>}`` per group and ``pck`` over all classes."""
    out = {}
    nan = counts.new_tensor(float("nan"))

    def ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(b > 0, a / b.clamp(min=1), nan)

    for name, members in groups.items():
        c = counts[list(members)].sum(0)
        out[f"pck_{name}"] = ratio(c[5], c[4])
        out[f"mean_dist_{name}"] = ratio(c[2], c[1])
        out[f"unmatched_{name}"] = ratio(c[3], c[0])
    total = counts.sum(0)
    out["pck"] = ratio(total[5], total[4])
    return out


class KeypointMetrics(Metric):
    """Accumulates :func:`keypoint_counts` over batches; ``compute`` returns :func:`summarise`.

    Args:
        num_classes: K.
        threshold: match distance, in the units of the coordinates passed to ``update``.
        groups: name -> class indices reported together.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int = 3, threshold: float = 10.0,
                 groups: Mapping[str, Sequence[int]] = DEFAULT_GROUPS, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.threshold = num_classes, float(threshold)
        self.groups = {name: tuple(int(i) for i in members) for name, members in groups.items()}
        self.add_state("counts", default=torch.zeros(num_classes, 6, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred_xy: torch.Tensor, pred_valid: torch.Tensor, gt_xy: torch.Tensor, gt_labels: torch.Tensor,
               threshold: torch.Tensor | None = None) -> None:
        """``threshold`` ``(B,)``: per-image match distances instead of the fixed one."""
        self.counts += keypoint_counts(pred_xy.double(), pred_valid, gt_xy.double(), gt_labels,
                                       self.threshold if threshold is None else threshold)

    def compute(self) -> dict[str, torch.Tensor]:
        return {k: v.float() for k, v in summarise(self.counts, self.groups).items()}
