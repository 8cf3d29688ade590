"""Losses of the qatm family: the matching loss on QATM score maps, and cross-view retrieval losses
on L2-normalised embeddings.

The retrieval losses take ``query (B, D)``, ``query_labels (B,)``, ``gallery (M, D)``, ``gallery_labels (M,)`` and
return a scalar; queries without a positive or without a negative in the gallery are ignored.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class BatchHardTriplet(nn.Module):
    """Triplet loss with cosine distance ``1 - cos`` and batch-hard mining: for every query the
    farthest positive and the nearest negative of the gallery, ``relu(d_pos - d_neg + margin)``."""

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, query: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor, gallery_labels: torch.Tensor) -> torch.Tensor:
        dist = 1 - query @ gallery.t()  # (B, M)
        pos = query_labels.view(-1, 1) == gallery_labels.view(1, -1)
        d_pos = dist.masked_fill(~pos, float("-inf")).amax(1)
        d_neg = dist.masked_fill(pos, float("inf")).amin(1)
        ok = torch.isfinite(d_pos) & torch.isfinite(d_neg)
        loss = torch.relu(d_pos - d_neg + self.margin)
        return torch.where(ok, loss, torch.zeros_like(loss)).sum() / ok.sum().clamp_min(1)


class SmoothAP(nn.Module):
    """1 - Smooth-AP (Brown et al. 2020): the rank of each gallery item is a sum of sigmoids of
    score differences with temperature ``tau`` (SoftRank), so AP becomes differentiable.

    For query ``i`` and positive ``p``: ``R_all(p) = 1 + sum_{j != p} sigmoid((s_j - s_p) / tau)``,
    ``R_pos(p)`` the same over positives only; ``AP_i = mean_p R_pos(p) / R_all(p)``.
    """

    def __init__(self, tau: float = 0.01) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"SmoothAP tau must be > 0, got {tau}")
        self.tau = tau

    def forward(self, query: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor, gallery_labels: torch.Tensor) -> torch.Tensor:
        sim = query @ gallery.t()  # (B, M)
        pos = (query_labels.view(-1, 1) == gallery_labels.view(1, -1)).to(sim.dtype)
        diff = (sim.unsqueeze(1) - sim.unsqueeze(2)) / self.tau  # [b, p, j] = s_j - s_p
        soft = torch.sigmoid(diff.clamp(-50, 50))
        eye = torch.eye(sim.shape[1], dtype=sim.dtype, device=sim.device)
        soft = soft * (1 - eye)
        r_all = 1 + soft.sum(2)
        r_pos = 1 + (soft * pos.unsqueeze(1)).sum(2)
        n_pos = pos.sum(1)
        ap = (r_pos / r_all * pos).sum(1) / n_pos.clamp_min(1)
        ok = n_pos > 0
        return 1 - (ap * ok).sum() / ok.sum().clamp_min(1)


class ScoreMapCrossEntropy(nn.Module):
    """Cross-entropy between the softmax over positions of log QATM score maps and a Gaussian target
    at the true template centre: the matching loss, which trains the backbone and alpha through QATM.

    Args:
        sigma: target width in feature cells.
        temperature: multiplies the log scores before the softmax.
    """

    def __init__(self, sigma: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__()
        if sigma <= 0 or temperature <= 0:
            raise ValueError(f"ScoreMapCrossEntropy needs sigma > 0 and temperature > 0, got {sigma}, {temperature}")
        self.sigma, self.temperature = float(sigma), float(temperature)

    def forward(self, log_scores: torch.Tensor, centres: torch.Tensor,
                negatives: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """``log_scores (B, H, W)`` (``-inf`` where the template does not fit), ``centres (B, 2)``
        true (x, y) in cells -> scalar mean over the maps whose target is not empty. ``negatives``:
        more maps ``(B, h, w)`` (e.g. the template at wrong scales) whose positions join the softmax
        as places the template is not."""
        b, h, w = log_scores.shape
        valid = torch.isfinite(log_scores)
        logits = torch.where(valid, log_scores * self.temperature, torch.full_like(log_scores, float("-inf")))
        lse = torch.logsumexp(logits.flatten(1), dim=1)
        for n in negatives:
            lse = torch.logaddexp(lse, torch.logsumexp((n * self.temperature).flatten(1), dim=1))
        log_p = logits - lse.view(b, 1, 1)
        ys = torch.arange(h, device=log_scores.device, dtype=log_scores.dtype).view(1, h, 1)
        xs = torch.arange(w, device=log_scores.device, dtype=log_scores.dtype).view(1, 1, w)
        d2 = (xs - centres[:, 0].view(b, 1, 1)) ** 2 + (ys - centres[:, 1].view(b, 1, 1)) ** 2
        target = torch.exp(-0.5 * d2 / self.sigma**2) * valid
        mass = target.sum(dim=(1, 2))
        ok = mass > 1e-6
        target = target / mass.clamp_min(1e-6).view(b, 1, 1)
        per_map = -(target * torch.where(valid, log_p, torch.zeros_like(log_p))).sum(dim=(1, 2))
        return (per_map * ok).sum() / ok.sum().clamp_min(1)


class ScoreMapRanking(ScoreMapCrossEntropy):
    """The score-map cross-entropy plus a ranking term across scenes, so that QATM scores mean
    something from one scene to another (a template that is not in a scene scores low there).

    Takes ``log_scores (B, B, H, W)``: template ``i`` in scene ``j``; the diagonal are the true pairs.
    Ranking: ``relu(margin - (best_ii - max_{j != i} best_ij))`` with ``best_ij`` the highest log
    score of template ``i`` in scene ``j`` (a hinge on the log-score gap), weighted by ``weight``.

    Args:
        margin: wanted gap in log score (1.0: the true scene's best score e times the others').
        weight: weight of the ranking term beside the cross-entropy.
    """

    cross_scene = True  # the module computes every template in every scene of the batch

    def __init__(self, sigma: float = 1.0, temperature: float = 1.0, margin: float = 1.0, weight: float = 1.0) -> None:
        super().__init__(sigma, temperature)
        if margin < 0 or weight < 0:
            raise ValueError(f"ScoreMapRanking needs margin >= 0 and weight >= 0, got {margin}, {weight}")
        self.margin, self.weight = float(margin), float(weight)

    def forward(self, log_scores: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        if log_scores.dim() == 3:  # no other scenes: the cross-entropy alone
            return super().forward(log_scores, centres)
        b = log_scores.shape[0]
        eye = torch.eye(b, dtype=torch.bool, device=log_scores.device)
        ce = super().forward(log_scores[eye], centres)
        if b < 2:
            return ce
        best = log_scores.flatten(2).amax(2)  # (B, B); -inf only where nothing fits
        best = torch.where(torch.isfinite(best), best, torch.full_like(best, -1e4))
        negative = best.masked_fill(eye, float("-inf")).amax(1)
        rank = torch.relu(self.margin - (best.diagonal() - negative)).mean()
        return ce + self.weight * rank
