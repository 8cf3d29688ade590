"""Cross-view retrieval evaluation of the qatm family beside the pooled embedding: the ranking by
QATM scores and the top-5 figures of both rankings."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from neurocorr.models.qatm.evaluation import qatm_similarity
from neurocorr.models.qatm.metrics import retrieval_metrics
from neurocorr.models.qatm.torch_model import QATMNet


@torch.no_grad()
def rank_stored_images(
    net: QATMNet, stored: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    evaluation: dict[str, Any], device: torch.device, figures: bool,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Rank the stored ``(image, label, role, index)`` batches (role 0 query, 1 gallery).

    Returns: the QATM ranking's metrics (``recall_at_k``, ``ap``; empty unless
    ``evaluation["qatm_retrieval"]``) and the top-5 figures by ranking name (``figures`` only).
    """
    if not stored:
        return {}, {}
    images, labels, roles, index = (torch.cat(x) for x in zip(*stored))
    qm, gm = roles == 0, roles == 1
    if not qm.any() or not gm.any():
        return {}, {}
    exclude = index[qm].view(-1, 1) == index[gm].view(1, -1)
    rankings: dict[str, torch.Tensor] = {}
    metrics: dict[str, torch.Tensor] = {}
    if evaluation["qatm_retrieval"]:
        sim = qatm_similarity(net, images[qm].to(device), images[gm].to(device),
                              float(evaluation["retrieval_crop"]), int(evaluation["retrieval_stride"])).cpu()
        metrics = retrieval_metrics(sim, labels[qm], labels[gm], exclude)
        rankings["qatm"] = sim
    out: dict[str, Any] = {}
    if figures:
        from neurocorr.models.qatm.viz import retrieval_figures

        emb = torch.cat([net.embed(images[i : i + 64].to(device)).cpu() for i in range(0, len(images), 64)])
        rankings["embedding"] = emb[qm] @ emb[gm].t()
        out = retrieval_figures(rankings, images[qm], images[gm], labels[qm], labels[gm], exclude, int(evaluation["figure_queries"]))
    return metrics, out
