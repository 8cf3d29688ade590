"""Homography estimation accuracy (the HPatches protocol of SuperPoint and glue-factory).

For one pair: mutual-nearest-neighbour matches -> ``cv2.findHomography`` with RANSAC -> the mean
distance between the four image corners of image 1 mapped by the estimate and by the true
homography (px). Over a set of pairs: the area under the curve of the share of pairs whose corner
error is at most ``e``, for ``e`` from 0 to a threshold, divided by the threshold (AUC in [0, 1]).
A pair without an estimate (fewer than four matches, RANSAC failed) counts as an infinite error.

The estimator (``ESTIMATORS``): ``usac`` (default) is OpenCV's USAC RANSAC with local optimisation
(LO-RANSAC, as PoseLib in glue-factory); ``ransac`` is the plain ``cv2.RANSAC`` of SuperPoint's
evaluation. Plain RANSAC's estimate depends on the order of the matches: shuffling the same matches
moved the AUC@3px over 15 HPatches/boat pairs by a standard deviation of 0.03-0.05 for every
detector, LO-RANSAC by 0.01-0.02, so the comparison of methods stops being a draw.

:func:`steady_corner_error` takes the median corner error over several orders of the same matches (the
first the given one; each with its own RNG seed), so that one pair's figure is not the luck of one
draw: on the 15 dev pairs the AUC@3px of one LO-RANSAC run moved by a standard deviation of 0.014-0.022
per detector under reordering, and changing the descriptors by their float16 rounding alone moved the
model's by +0.018 and Harris's by -0.026.

:func:`floor_corner_error` is the error no estimator can beat with the same matches: the least-squares
homography through the matches that the *true* homography maps within ``inlier_px`` of each other (a perfect
outlier rejection). It is set by the matches' localisation, by where in the image they lie and by the
ground truth's own error. On the hardest dev pairs it is over 1 px for every detector: least-squares fits
through two sets of correct matches that cover different parts of the image land at corners px apart.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from neurocorr.ops.geometry import warp_points


def corners(size: Sequence[int]) -> torch.Tensor:
    """The four outermost pixel centres ``(4, 2)`` float64 (x, y) of an image of ``size = (H, W)``."""
    h, w = float(size[0]) - 1, float(size[1]) - 1
    return torch.tensor([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]], dtype=torch.float64)


ESTIMATORS = {"usac": cv2.USAC_DEFAULT, "ransac": cv2.RANSAC, "magsac": cv2.USAC_MAGSAC}


def estimate_homography(xy1: torch.Tensor, xy2: torch.Tensor, ransac_px: float = 3.0,
                        seed: int = 0, method: str = "usac") -> Optional[torch.Tensor]:
    """Robust homography ``(3, 3)`` float64 from matched points ``(M, 2)`` (image 1 -> 2), or None
    (fewer than four matches, or OpenCV found none). ``method``: a key of ``ESTIMATORS``. OpenCV's
    RNG is seeded, so runs repeat."""
    if method not in ESTIMATORS:
        raise ValueError(f"homography estimator must be one of {sorted(ESTIMATORS)}, got {method!r}")
    if xy1.shape[0] < 4:
        return None
    cv2.setRNGSeed(seed)
    H, _ = cv2.findHomography(xy1.double().numpy(), xy2.double().numpy(), ESTIMATORS[method], ransac_px,
                              maxIters=5000, confidence=0.9999)
    if H is None or not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-12:
        return None
    return torch.from_numpy(H).double()


def corner_error(H_est: Optional[torch.Tensor], H_true: torch.Tensor, size: Sequence[int]) -> float:
    """Mean distance (px) of image 1's four corners mapped by ``H_est`` and by ``H_true``; inf
    without an estimate."""
    if H_est is None:
        return math.inf
    c = corners(size)
    err = (warp_points(c, H_est.double()) - warp_points(c, H_true.double())).norm(dim=-1).mean()
    return float(err) if torch.isfinite(err) else math.inf


def _check_matches(xy1: torch.Tensor, xy2: torch.Tensor) -> None:
    if xy1.shape != xy2.shape or xy1.dim() != 2 or xy1.shape[-1] != 2:
        raise ValueError(f"matched points must be two (M, 2) tensors, got {tuple(xy1.shape)} and {tuple(xy2.shape)}")


def steady_corner_error(xy1: torch.Tensor, xy2: torch.Tensor, H_true: torch.Tensor, size: Sequence[int],
                        trials: int = 1, ransac_px: float = 3.0, method: str = "usac", seed: int = 0) -> float:
    """Median over ``trials`` estimates of :func:`corner_error` (px; inf = no estimate), the matches
    ``xy1`` ``(M, 2)`` -> ``xy2`` ``(M, 2)`` given to :func:`estimate_homography` in their own order
    first, then in ``trials - 1`` random orders (RNG seeds ``seed + t``). ``trials=1``: the single
    estimate of the given order."""
    if trials < 1:
        raise ValueError(f"homography trials must be >= 1, got {trials}")
    _check_matches(xy1, xy2)
    errors = []
    for t in range(trials):
        order = torch.arange(xy1.shape[0]) if t == 0 else torch.randperm(
            xy1.shape[0], generator=torch.Generator().manual_seed(seed + t))
        errors.append(corner_error(estimate_homography(xy1[order], xy2[order], ransac_px, seed + t, method), H_true, size))
    return float(np.median(errors))


def floor_corner_error(xy1: torch.Tensor, xy2: torch.Tensor, H_true: torch.Tensor, size: Sequence[int],
                       inlier_px: float = 1.0) -> float:
    """Corner error (px; inf with fewer than four such matches) of the least-squares homography through the
    matches ``xy1`` ``(M, 2)`` -> ``xy2`` ``(M, 2)`` that ``H_true`` maps within ``inlier_px`` of each other:
    what a perfect outlier rejection would give with these matches (see the module docstring)."""
    if inlier_px <= 0:
        raise ValueError(f"floor inlier_px must be > 0, got {inlier_px}")
    _check_matches(xy1, xy2)
    correct = (warp_points(xy1.double(), H_true.double()) - xy2.double()).norm(dim=-1) < inlier_px
    if int(correct.sum()) < 4:
        return math.inf
    H, _ = cv2.findHomography(xy1[correct].double().numpy(), xy2[correct].double().numpy(), 0)
    if H is None or not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-12:
        return math.inf
    return corner_error(torch.from_numpy(H).double(), H_true, size)


def homography_auc(errors: Sequence[float], threshold: float) -> float:
    """AUC of the recall curve of corner ``errors`` (px) up to ``threshold``, normalised to [0, 1]."""
    if not errors:
        return float("nan")
    e = np.sort(np.asarray(errors, dtype=np.float64))
    recall = np.arange(1, len(e) + 1) / len(e)
    e, recall = np.concatenate([[0.0], e]), np.concatenate([[0.0], recall])
    last = np.searchsorted(e, threshold)
    xs = np.concatenate([e[:last], [threshold]])
    ys = np.concatenate([recall[:last], [recall[last - 1]]])
    return float(np.trapezoid(ys, xs) / threshold)
