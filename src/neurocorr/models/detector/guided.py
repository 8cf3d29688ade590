"""Guided matching: the matches found again under a first homography (Hartley and Zisserman's guided matching).

Mutual nearest neighbours over whole images miss correct correspondences whenever a point's descriptor has a
closer twin elsewhere (repeated windows, bricks, the neighbouring 3x3 peak of the same corner) or the two
descriptors differ by the view change. Once a first homography ``H`` is estimated from them, each point of
image 1 has a predicted position ``H x`` in image 2: the matches are made again as mutual nearest neighbours
of the descriptors among only the pairs that ``H`` maps within ``radius`` px of each other. The geometry then
chooses where to look, the descriptor which point there, and the estimate is made again from the larger set:
on the dev pairs the correct matches it is fitted to go from about 390 to 430 (radius 1.5 px, best 1000
points per image).

Pixel convention: :mod:`neurocorr.ops.peaks` (pixel centres at integer coordinates).
"""

from __future__ import annotations

import torch
from torch import nn

from neurocorr.models.detector.matching import Matches, mutual_nearest
from neurocorr.ops.geometry import warp_points


def _check(xy1: torch.Tensor, xy2: torch.Tensor, desc1: torch.Tensor, desc2: torch.Tensor, H: torch.Tensor,
           radius: float) -> None:
    for name, xy, desc in (("1", xy1, desc1), ("2", xy2, desc2)):
        if xy.dim() != 2 or xy.shape[-1] != 2:
            raise ValueError(f"guided matching expects points (N, 2), got {tuple(xy.shape)} for image {name}")
        if desc.dim() not in (2, 3) or desc.shape[0] != xy.shape[0]:
            raise ValueError(f"guided matching expects one descriptor (N, D) or (N, L, D) per point of image {name}, "
                             f"got {tuple(desc.shape)} for {xy.shape[0]} points")
    if desc1.shape[1:] != desc2.shape[1:]:
        raise ValueError(f"guided matching expects descriptors of one shape, got {tuple(desc1.shape[1:])} and "
                         f"{tuple(desc2.shape[1:])}")
    if H.shape != (3, 3):
        raise ValueError(f"guided matching expects a homography (3, 3), got {tuple(H.shape)}")
    _check_radius(radius)


def _check_radius(radius: float) -> None:
    if not radius > 0:
        raise ValueError(f"guided matching radius must be > 0 px, got {radius!r}")


def pair_distance(desc1: torch.Tensor, desc2: torch.Tensor) -> torch.Tensor:
    """L2 distances ``(K,)`` between row-aligned descriptors ``desc1`` and ``desc2`` ``(K, D)``, or for multi-level
    ``(K, L, D)`` the smallest over the ``L x L`` level pairs (as ``matching.descriptor_distance``)."""
    if desc1.dim() == 2:
        return (desc1.float() - desc2.float()).norm(dim=-1)
    return torch.cdist(desc1.float(), desc2.float()).flatten(1).amin(1)


def guided_matches(xy1: torch.Tensor, xy2: torch.Tensor, desc1: torch.Tensor, desc2: torch.Tensor, H: torch.Tensor,
                   radius: float = 1.5) -> Matches:
    """Mutual nearest neighbours of descriptors among the pairs that ``H`` maps within ``radius`` px.

    Args:
        xy1: ``(N, 2)`` points of image 1 (px). xy2: ``(M, 2)`` points of image 2.
        desc1: ``(N, D)`` or ``(N, L, D)`` (one per pyramid level). desc2: ``(M, D)`` or ``(M, L, D)``.
        H: ``(3, 3)`` homography image 1 -> image 2 (a first estimate). radius: px in image 2.

    Returns:
        :class:`~neurocorr.models.detector.matching.Matches`: rows ``(i, j)`` with ``|H xy1[i] - xy2[j]| < radius``
        whose descriptors are each other's nearest among such pairs, sorted by descriptor distance.
    """
    _check(xy1, xy2, desc1, desc2, H, radius)
    empty = Matches(torch.zeros(0, 2, dtype=torch.long), torch.zeros(0))
    if xy1.shape[0] == 0 or xy2.shape[0] == 0:
        return empty
    near = torch.cdist(warp_points(xy1.double(), H.double()), xy2.double()) < radius
    i, j = near.nonzero(as_tuple=True)
    if i.numel() == 0:
        return empty
    dist = torch.full(near.shape, float("inf"))  # inf: pairs too far apart to match
    dist[i, j] = pair_distance(desc1[i], desc2[j])
    return mutual_nearest(dist)


class GuidedMatching(nn.Module):
    """Module form of :func:`guided_matches` with a fixed ``radius`` (px)."""

    def __init__(self, radius: float = 1.5) -> None:
        super().__init__()
        _check_radius(radius)
        self.radius = float(radius)

    def forward(self, xy1: torch.Tensor, xy2: torch.Tensor, desc1: torch.Tensor, desc2: torch.Tensor,
                H: torch.Tensor) -> Matches:
        return guided_matches(xy1, xy2, desc1, desc2, H, self.radius)
