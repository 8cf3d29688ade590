"""Retrieval metrics (University-1652 protocol) and localisation metrics (OTB success, COCO mAP)."""

from __future__ import annotations

from typing import Sequence

import torch
from torchmetrics import Metric
from torchvision.ops import box_iou

from neurocorr.models.qatm.boxes import xywh_to_xyxy


def retrieval_metrics(
    sim: torch.Tensor, query_labels: torch.Tensor, gallery_labels: torch.Tensor,
    exclude: torch.Tensor | None = None, ks: Sequence[int] = (1, 5, 10), chunk: int = 1024,
) -> dict[str, torch.Tensor]:
    """Recall@K, Recall@top1% and mean AP of a ``(Q, G)`` similarity matrix.

    Args:
        sim: ``(Q, G)`` higher = more similar.
        query_labels, gallery_labels: ``(Q,)``, ``(G,)`` building ids; same id = a true match.
        exclude: ``(Q, G)`` bool, gallery items removed from a query's ranking (the query's own
            image when it is also in the gallery); nothing else is removed.
    Returns: ``recall_at_<k>``, ``recall_at_top1pct``, ``ap`` as 0-d tensors, averaged over queries
    with at least one true match; AP is the mean over true matches of the precision at their rank.
    """
    q, g = sim.shape
    k1pct = max(1, round(0.01 * g))
    hits = {k: [] for k in ks}
    hits_pct, aps = [], []
    for start in range(0, q, chunk):
        s = sim[start : start + chunk].float()
        good = query_labels[start : start + chunk].view(-1, 1) == gallery_labels.view(1, -1)
        if exclude is not None:
            ex = exclude[start : start + chunk]
            s = s.masked_fill(ex, float("-inf"))
            good = good & ~ex
        order = s.argsort(dim=1, descending=True, stable=True)
        good_sorted = good.gather(1, order)
        if exclude is not None:  # excluded items sort last; drop them from the ranking
            kept = (~ex).gather(1, order)
            good_sorted = good_sorted & kept
        has = good_sorted.any(1)
        first = torch.where(has, good_sorted.float().argmax(1), torch.full_like(has, g, dtype=torch.long))
        for k in ks:
            hits[k].append((first < k)[has])
        hits_pct.append((first < k1pct)[has])
        cum = good_sorted.float().cumsum(1)
        rank = torch.arange(1, g + 1, device=sim.device, dtype=torch.float32)
        ap = (cum / rank * good_sorted).sum(1) / good_sorted.sum(1).clamp_min(1)
        aps.append(ap[has])
    out = {f"recall_at_{k}": torch.cat(hits[k]).float().mean() for k in ks}
    out["recall_at_top1pct"] = torch.cat(hits_pct).float().mean()
    out["ap"] = torch.cat(aps).mean()
    return out


class CrossViewRetrieval(Metric):
    """Collects embeddings of queries (role 0) and gallery items (role 1), then
    :func:`retrieval_metrics` with cosine similarity; a query's own image (same ``index``) is
    excluded from its gallery exactly once."""

    full_state_update = False

    def __init__(self, ks: Sequence[int] = (1, 5, 10)) -> None:
        super().__init__()
        self.ks = tuple(ks)
        for name in ("embedding", "label", "role", "index"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, embedding: torch.Tensor, label: torch.Tensor, role: torch.Tensor, index: torch.Tensor) -> None:
        self.embedding.append(embedding.detach())
        self.label.append(label)
        self.role.append(role)
        self.index.append(index)

    def compute(self) -> dict[str, torch.Tensor]:
        cat = lambda x: torch.cat(x) if isinstance(x, list) else x  # noqa: E731
        emb, label, role, index = cat(self.embedding), cat(self.label), cat(self.role), cat(self.index)
        qm, gm = role == 0, role == 1
        if not qm.any() or not gm.any():  # e.g. a one-batch debug run: nothing to rank
            nan = emb.new_tensor(float("nan"))
            return {**{f"recall_at_{k}": nan for k in self.ks}, "recall_at_top1pct": nan, "ap": nan}
        sim = emb[qm] @ emb[gm].t()
        exclude = index[qm].view(-1, 1) == index[gm].view(1, -1)
        return retrieval_metrics(sim, label[qm], label[gm], exclude, self.ks)


SUCCESS_THRESHOLDS = torch.linspace(0, 1, 21)


class Localisation(Metric):
    """IoU of the top box per template pair: success rate at IoU 0.5, success AUC over IoU
    thresholds 0, 0.05, ..., 1 (OTB protocol: share of pairs with IoU > threshold), mean IoU.
    A pair without a predicted box has IoU 0."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("iou", default=[], dist_reduce_fx="cat")

    def update(self, pred_xywh: torch.Tensor, target_xywh: torch.Tensor, has_pred: torch.Tensor) -> None:
        """``pred_xywh``, ``target_xywh`` ``(B, 4)``; ``has_pred`` ``(B,)`` bool."""
        iou = box_iou(xywh_to_xyxy(pred_xywh.float()), xywh_to_xyxy(target_xywh.float())).diagonal()
        self.iou.append(torch.where(has_pred, iou, torch.zeros_like(iou)))

    def compute(self) -> dict[str, torch.Tensor]:
        iou = torch.cat(self.iou) if isinstance(self.iou, list) else self.iou
        curve = (iou.view(-1, 1) > SUCCESS_THRESHOLDS.to(iou.device).view(1, -1)).float().mean(0)
        return {"success_at_0.5": (iou > 0.5).float().mean(), "success_auc": curve.mean(), "mean_iou": iou.mean()}
