"""Keypoints out of heatmaps, one interface and two methods.

``peaks``: batched max-pool NMS + threshold + top-k + sub-pixel refinement (``ops.peaks``), on the
tensor's device. ``meanshift``: the seed's method, per image and class on the host: normalise by the
max, keep pixels >= ``relative_threshold``, cluster them with scikit-learn's MeanShift and return
the cluster centres. Both return padded :class:`Keypoints`; an empty heatmap gives no points.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import math

import numpy as np
import torch
from kornia.filters import gaussian_blur2d

from neurocorr.errors import ConfigError
from neurocorr.ops.peaks import find_peaks


class Keypoints(NamedTuple):
    """xy ``(B, K, P, 2)`` float (x, y) px; score ``(B, K, P)``; valid ``(B, K, P)`` bool."""

    xy: torch.Tensor
    score: torch.Tensor
    valid: torch.Tensor


def _check(heatmaps: torch.Tensor, max_points: Sequence[int]) -> None:
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must be (B, K, H, W), got {tuple(heatmaps.shape)}")
    if len(max_points) != heatmaps.shape[1] or min(max_points) < 1:
        raise ValueError(f"max_points needs one positive count per class ({heatmaps.shape[1]}), got {list(max_points)}")


def extract_peaks(
    heatmaps: torch.Tensor, max_points: Sequence[int], threshold: float = 0.5, window: int = 5, smooth: float = 1.0,
    logits: bool = False,
) -> Keypoints:
    """Peaks of ``heatmaps`` ``(B, K, H, W)``: local maxima in a ``window`` square above the
    probability ``threshold``, at most ``max_points[k]`` per class ``k``, strongest first.

    ``logits``: the maps are logits (preferred for a model's output: sigmoid probabilities of a
    confident model saturate to flat plateaus of 1.0 whose pixels tie in NMS; logits do not).
    ``smooth`` > 0 first blurs the maps with a Gaussian of that sigma (px), which gives a small
    plateau one maximum at its centre and leaves the peak of a symmetric blob where it is.
    Scores are probabilities either way.
    """
    _check(heatmaps, max_points)
    if logits:
        p = min(max(float(threshold), 1e-6), 1 - 1e-6)
        threshold = math.log(p / (1 - p))
    if smooth > 0:
        radius = max(1, int(math.ceil(2 * smooth)))
        heatmaps = gaussian_blur2d(heatmaps, (2 * radius + 1, 2 * radius + 1), (smooth, smooth), border_type="constant")
    found = find_peaks(heatmaps, top_k=max(max_points), threshold=threshold, window=window, subpixel=True)
    limit = torch.tensor(list(max_points), device=heatmaps.device).view(1, -1, 1)
    slot = torch.arange(found.valid.shape[-1], device=heatmaps.device).view(1, 1, -1)
    score = found.score.sigmoid() if logits else found.score
    return Keypoints(found.xy, score, found.valid & (slot < limit))


def extract_meanshift(
    heatmaps: torch.Tensor, max_points: Sequence[int], relative_threshold: float = 0.5, min_score: float = 0.1,
    bandwidth: Optional[float] = None,
) -> Keypoints:
    """Mean-shift clusters of the pixels above ``relative_threshold`` x max in each ``(b, k)``
    heatmap whose max reaches ``min_score``; at most ``max_points[k]`` clusters, largest first
    (so one point for classes with ``max_points[k] == 1``). ``bandwidth`` None: sklearn's estimate."""
    from sklearn.cluster import MeanShift

    _check(heatmaps, max_points)
    b, k, _, _ = heatmaps.shape
    p = max(max_points)
    xy = torch.zeros(b, k, p, 2)
    score = torch.zeros(b, k, p)
    valid = torch.zeros(b, k, p, dtype=torch.bool)
    maps = heatmaps.detach().float().cpu().numpy()
    for i in range(b):
        for c in range(k):
            heat = maps[i, c]
            peak = float(heat.max())
            if not np.isfinite(peak) or peak < min_score or peak <= 0:
                continue
            rows, cols = np.nonzero(heat >= relative_threshold * peak)
            coords = np.stack([cols, rows], axis=1).astype(np.float64)
            if len(coords) == 1:
                centres, members = coords, np.zeros(1, np.int64)
            else:
                ms = MeanShift(bandwidth=bandwidth, bin_seeding=bandwidth is not None).fit(coords)
                centres, members = ms.cluster_centers_, ms.labels_
            sizes = np.bincount(members, minlength=len(centres))
            order = np.argsort(-sizes, kind="stable")[: max_points[c]]
            for slot, j in enumerate(order):
                # the centre of a cluster: the mean of its member pixels
                xy[i, c, slot] = torch.from_numpy(coords[members == j].mean(axis=0))
                score[i, c, slot] = float(heat[rows[members == j], cols[members == j]].max())
                valid[i, c, slot] = True
    device = heatmaps.device
    return Keypoints(xy.to(device), score.to(device), valid.to(device))


def extract_keypoints(heatmaps: torch.Tensor, method: str, max_points: Sequence[int], **options: object) -> Keypoints:
    """Dispatch to :func:`extract_peaks` (``peaks``) or :func:`extract_meanshift` (``meanshift``)."""
    if method == "peaks":
        return extract_peaks(heatmaps, max_points, **options)  # type: ignore[arg-type]
    if method == "meanshift":
        return extract_meanshift(heatmaps, max_points, **options)  # type: ignore[arg-type]
    raise ConfigError(f"model.extraction.method must be 'peaks' or 'meanshift', got {method!r}")
