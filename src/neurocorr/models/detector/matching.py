"""Descriptor matching: mutual nearest neighbours with an optional ratio test.

Descriptors are ``(N, D)`` (one per keypoint) or ``(N, L, D)``: one per keypoint at each of ``L``
pyramid levels (``keypoints.describe_levels``). The distance between two multi-level keypoints is
the smallest L2 distance over level pairs: a structure seen at two zooms is described alike at
two different levels, so the pair of levels that sees it at one size decides."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn


class Matches(NamedTuple):
    """``index``: ``(M, 2)`` long, rows (i in set 1, j in set 2); ``distance``: ``(M,)`` L2 distance."""

    index: torch.Tensor
    distance: torch.Tensor


def descriptor_distance(desc1: torch.Tensor, desc2: torch.Tensor) -> torch.Tensor:
    """L2 distances ``(N, M)`` between ``desc1`` ``(N, D)`` and ``desc2`` ``(M, D)``, or between
    multi-level descriptors ``(N, L, D)`` and ``(M, L, D)``: the smallest over the ``L x L`` level pairs."""
    if desc1.dim() == 2:
        return torch.cdist(desc1.float(), desc2.float())
    n, m, levels = desc1.shape[0], desc2.shape[0], desc1.shape[1]
    best = None
    for level in range(levels):  # one level of set 1 against every level of set 2: (N, M*L), then min
        d = torch.cdist(desc1[:, level].float(), desc2.flatten(0, 1).float()).view(n, m, levels).amin(-1)
        best = d if best is None else torch.minimum(best, d)
    return best


def match_mnn(
    desc1: torch.Tensor,
    desc2: torch.Tensor,
    ratio: Optional[float] = None,
    valid1: Optional[torch.Tensor] = None,
    valid2: Optional[torch.Tensor] = None,
) -> Matches:
    """Mutual nearest neighbours between ``desc1`` ``(N, D)`` and ``desc2`` ``(M, D)`` (L2 distance),
    or multi-level ``(N, L, D)`` and ``(M, L, D)`` (:func:`descriptor_distance`).

    ``ratio``: also require ``d(nearest) < ratio * d(second nearest)`` in both directions (Lowe's
    test; None = off). ``valid1``/``valid2``: ``(N,)``/``(M,)`` bool masks of descriptors to use.
    Returns matches sorted by distance.
    """
    if desc1.dim() not in (2, 3) or desc2.dim() != desc1.dim():
        raise ValueError(f"match_mnn expects (N, D) and (M, D) or (N, L, D) and (M, L, D), got "
                         f"{tuple(desc1.shape)} and {tuple(desc2.shape)}")
    if desc1.shape[0] == 0 or desc2.shape[0] == 0:  # nothing to match (an empty set may carry any D)
        return Matches(torch.zeros(0, 2, dtype=torch.long, device=desc1.device), desc1.new_zeros(0))
    if desc1.shape[1:] != desc2.shape[1:]:
        raise ValueError(f"match_mnn expects (N, D) and (M, D) or (N, L, D) and (M, L, D), got "
                         f"{tuple(desc1.shape)} and {tuple(desc2.shape)}")
    dist = descriptor_distance(desc1, desc2)
    big = torch.finfo(dist.dtype).max
    if valid1 is not None:
        dist = dist.masked_fill(~valid1.bool()[:, None], big)
    if valid2 is not None:
        dist = dist.masked_fill(~valid2.bool()[None, :], big)
    return mutual_nearest(dist, ratio)


def mutual_nearest(dist: torch.Tensor, ratio: Optional[float] = None) -> Matches:
    """Mutual nearest neighbours of a distance matrix ``dist`` ``(N, M)``; entries at the dtype's largest value
    or inf are pairs that may not match. ``ratio``: Lowe's test in both directions (None = off). Returns the
    matches sorted by distance."""
    big = torch.finfo(dist.dtype).max
    nn12 = dist.argmin(1)
    nn21 = dist.argmin(0)
    rows = torch.arange(dist.shape[0], device=dist.device)
    keep = nn21[nn12] == rows
    best = dist[rows, nn12]
    keep &= best < big
    if ratio is not None:
        for d, axis in ((dist, 1), (dist.t(), 1)):
            if d.shape[axis] >= 2:
                two = d.topk(2, dim=axis, largest=False).values
                ok = two[:, 0] < ratio * two[:, 1]
                keep &= ok if d is dist else ok[nn12]
    i = rows[keep]
    j = nn12[keep]
    order = best[keep].argsort()
    return Matches(torch.stack([i, j], 1)[order], best[keep][order])


class MutualNearestNeighbour(nn.Module):
    """Module form of :func:`match_mnn` with a fixed ``ratio``."""

    def __init__(self, ratio: Optional[float] = None) -> None:
        super().__init__()
        self.ratio = ratio

    def forward(self, desc1: torch.Tensor, desc2: torch.Tensor) -> Matches:
        return match_mnn(desc1, desc2, self.ratio)
