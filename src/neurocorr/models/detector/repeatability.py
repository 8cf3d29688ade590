"""Keypoint repeatability, localisation error and matching accuracy under a known homography.

Pixel convention: pixel centres at integer coordinates (see ``neurocorr.ops.geometry``). Every
detector, ours or a baseline, is scored by these same functions.

Protocol for one pair (image 1, image 2, ``H``: 1 -> 2):
1. keep the keypoints of each image that lie in the region both images see;
2. of those, keep the ``top_k`` highest-scoring per image (``dedupe_px`` > 0: after dropping every
   point within that distance of a higher-scoring one, so that each location counts once);
3. repeatability = (#kp1 whose warp has a kp2 within ``threshold`` px + #kp2 whose back-warp
   has a kp1 within ``threshold``) / (#kp1 + #kp2), i.e. counted in both directions;
4. localisation error = mean distance of those nearest neighbours that are within ``threshold``;
5. matching accuracy = share of mutual-nearest-neighbour descriptor matches whose reprojection
   error is under ``match_threshold`` px;
6. homography corner error: MNN matches of the ``homography_top_k`` best keypoints of each image (with
   ``dedupe_px``, one per location as in step 2) -> with ``guided_px`` > 0 a first robust estimate and the
   matches made again under it (``guided.py``) -> robust estimate (LO-RANSAC by default) -> mean error of the
   four corners (``homography.py``), the median over ``homography_trials`` orders of the matches; AUCs are taken
   over pairs;
7. its floor: the corner error of the least-squares homography through those of the same matches that the
   true homography maps within ``floor_px`` of each other (``homography.floor_corner_error``), what a perfect
   outlier rejection would give.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torchmetrics import Metric

from neurocorr.models.detector.guided import guided_matches
from neurocorr.models.detector.homography import estimate_homography, floor_corner_error, steady_corner_error
from neurocorr.models.detector.matching import match_mnn
from neurocorr.ops.geometry import covisible, warp_points

# matched (xy1, xy2, desc1, desc2) -> the (xy1, xy2) a homography is estimated from: relocated, aligned and
# filtered by the model's match steps (relocation.py, alignment.py)
Relocate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def select_keypoints(xy: torch.Tensor, score: torch.Tensor, H: torch.Tensor, size_from: Sequence[int],
                     size_to: Sequence[int], top_k: int, dedupe_px: float = 0.0) -> torch.Tensor:
    """Indices (long, sorted by descending score) of the at most ``top_k`` highest-scoring
    keypoints ``xy`` ``(N, 2)`` that ``H`` (3, 3) maps inside the other image.

    ``dedupe_px`` > 0 first drops every point within that distance of a higher-scoring one (the
    same corner reported at several pyramid levels or orientations, as ORB and SIFT do), so that
    each location counts once. 0 = off (the protocol of the issue)."""
    return strongest(xy, score, top_k, dedupe_px, covisible(xy, H, size_from, size_to).nonzero().squeeze(1))


def strongest(xy: torch.Tensor, score: torch.Tensor, top_k: int, dedupe_px: float = 0.0,
              candidates: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Indices (long, by descending score) of the at most ``top_k`` highest-scoring keypoints ``xy`` ``(N, 2)``
    (scores ``(N,)``), among ``candidates`` (long indices; None = all); ``dedupe_px`` > 0 first drops every
    candidate within that distance of a higher-scoring one (see :func:`select_keypoints`)."""
    if dedupe_px < 0:
        raise ValueError(f"dedupe_px must be >= 0, got {dedupe_px}")
    if candidates is None:
        keep = score.argsort(descending=True)
    else:
        keep = candidates[score[candidates].argsort(descending=True)]
    if dedupe_px > 0 and keep.numel() > 1:
        d = torch.cdist(xy[keep].double(), xy[keep].double())
        shadowed = (torch.triu(d < dedupe_px, diagonal=1)).any(0)
        keep = keep[~shadowed]
    return keep[:top_k]


def repeatability(xy1: torch.Tensor, xy2: torch.Tensor, H: torch.Tensor, threshold: float) -> dict[str, torch.Tensor]:
    """Repeatability of keypoints ``xy1`` ``(N, 2)`` and ``xy2`` ``(M, 2)`` (already selected),
    counted in both directions. Returns ``repeatability`` (in [0, 1]), ``loc_error`` (px, NaN when
    nothing repeats), ``n_repeated``, ``n_points``."""
    n = xy1.shape[0] + xy2.shape[0]
    if xy1.shape[0] == 0 or xy2.shape[0] == 0:
        nan = torch.tensor(float("nan"))
        return {"repeatability": torch.tensor(0.0), "loc_error": nan, "n_repeated": torch.tensor(0), "n_points": torch.tensor(n)}
    dist = torch.cdist(warp_points(xy1.double(), H.double()), xy2.double(), compute_mode="donot_use_mm_for_euclid_dist")
    d12, d21 = dist.min(1).values, dist.min(0).values
    hit = torch.cat([d12, d21]) <= threshold
    repeated = int(hit.sum())
    err = torch.cat([d12, d21])[hit].mean() if repeated else torch.tensor(float("nan"))
    return {"repeatability": torch.tensor(repeated / n), "loc_error": err.float(),
            "n_repeated": torch.tensor(repeated), "n_points": torch.tensor(n)}


def matching_accuracy(xy1: torch.Tensor, desc1: torch.Tensor, xy2: torch.Tensor, desc2: torch.Tensor, H: torch.Tensor,
                      threshold: float = 3.0, ratio: Optional[float] = None) -> dict[str, torch.Tensor]:
    """Share of mutual-nearest-neighbour matches of ``desc1`` ``(N, D)`` / ``desc2`` ``(M, D)`` whose
    reprojection error ``|H xy1 - xy2|`` is under ``threshold`` px. Also returns the matches."""
    m = match_mnn(desc1.float(), desc2.float(), ratio=ratio)
    if m.index.shape[0] == 0:
        return {"matching_accuracy": torch.tensor(0.0), "n_matches": torch.tensor(0), "matches": m.index, "correct": torch.zeros(0, dtype=torch.bool)}
    err = (warp_points(xy1[m.index[:, 0]].double(), H.double()) - xy2[m.index[:, 1]].double()).norm(dim=-1)
    correct = err < threshold
    return {"matching_accuracy": correct.double().mean().float(), "n_matches": torch.tensor(m.index.shape[0]),
            "matches": m.index, "correct": correct}


def _matched_points(xy1: torch.Tensor, xy2: torch.Tensor, desc1: torch.Tensor, desc2: torch.Tensor,
                    pairs: torch.Tensor, relocate: Optional[Relocate]) -> tuple[torch.Tensor, torch.Tensor]:
    """The points ``(M, 2)`` of matches ``pairs`` ``(M, 2)`` (rows of ``xy1``/``desc1`` and ``xy2``/``desc2``),
    through ``relocate`` when given."""
    m1, m2 = xy1[pairs[:, 0]], xy2[pairs[:, 1]]
    if relocate is None:
        return m1, m2
    return relocate(m1, m2, desc1[pairs[:, 0]], desc2[pairs[:, 1]])


def evaluate_pair(
    kp1: dict[str, torch.Tensor], kp2: dict[str, torch.Tensor], H: torch.Tensor,
    size1: Sequence[int], size2: Sequence[int],
    settings: Sequence[tuple[int, float]] = ((300, 3.0), (60, 1.0)),
    match_top_k: int = 300, match_threshold: float = 3.0, dedupe_px: float = 0.0,
    homography_top_k: int = 1000, ransac_px: float = 3.0, ransac_method: str = "usac", homography_trials: int = 1,
    relocate: Optional[Relocate] = None, floor_px: float = 1.0, guided_px: float = 0.0,
) -> dict[str, float]:
    """All figures of one pair. ``kp*``: dicts with ``xy`` (N, 2), ``score`` (N,) and optionally
    ``desc`` (N, D). Keys: ``rep_<k>_<t>px``, ``loc_err_<k>_<t>px``, ``n_kp`` (keypoints of image 1),
    and with descriptors ``match_acc``, ``n_matches``, ``h_err`` (corner error, px; inf = no estimate),
    ``h_err_floor`` (its floor: the least-squares fit through the matches correct within ``floor_px``) and
    ``n_h_matches`` (the matches the homography is estimated from).
    ``relocate``: ``(xy1, xy2, desc1, desc2)`` of the matches -> new ``(xy1, xy2)``, applied to the matches
    the homography is estimated from (``relocation.py``); None = the detected points. ``guided_px`` > 0: a first
    estimate from those matches, then the matches made again among the pairs it maps within ``guided_px`` px
    (``guided.py``), relocated alike, for the estimate that is scored; 0 = off."""
    H = H.double()
    H_inv = torch.linalg.inv(H)
    out: dict[str, float] = {}
    for top_k, thr in settings:
        i1 = select_keypoints(kp1["xy"].double(), kp1["score"], H, size1, size2, top_k, dedupe_px)
        i2 = select_keypoints(kp2["xy"].double(), kp2["score"], H_inv, size2, size1, top_k, dedupe_px)
        r = repeatability(kp1["xy"][i1], kp2["xy"][i2], H, thr)
        tag = f"{top_k}_{thr:g}px"
        out[f"rep_{tag}"] = float(r["repeatability"])
        out[f"loc_err_{tag}"] = float(r["loc_error"])
    if "desc" in kp1 and "desc" in kp2:
        i1 = select_keypoints(kp1["xy"].double(), kp1["score"], H, size1, size2, match_top_k, dedupe_px)
        i2 = select_keypoints(kp2["xy"].double(), kp2["score"], H_inv, size2, size1, match_top_k, dedupe_px)
        m = matching_accuracy(kp1["xy"][i1], kp1["desc"][i1], kp2["xy"][i2], kp2["desc"][i2], H, match_threshold)
        out["match_acc"] = float(m["matching_accuracy"])
        out["n_matches"] = float(m["n_matches"])
        # the best keypoints of each whole image: no ground truth decides which points take part
        i1 = strongest(kp1["xy"], kp1["score"], homography_top_k, dedupe_px)
        i2 = strongest(kp2["xy"], kp2["score"], homography_top_k, dedupe_px)
        a1, a2, b1, b2 = kp1["xy"][i1], kp2["xy"][i2], kp1["desc"][i1], kp2["desc"][i2]
        pairs = match_mnn(b1.float(), b2.float()).index
        xy1, xy2 = _matched_points(a1, a2, b1, b2, pairs, relocate)
        if guided_px > 0:
            first = estimate_homography(xy1, xy2, ransac_px, 0, ransac_method)
            if first is not None:
                pairs = guided_matches(a1, a2, b1, b2, first, guided_px).index
                xy1, xy2 = _matched_points(a1, a2, b1, b2, pairs, relocate)
        out["n_h_matches"] = float(xy1.shape[0])
        out["h_err"] = steady_corner_error(xy1, xy2, H, size1, homography_trials, ransac_px, ransac_method)
        out["h_err_floor"] = floor_corner_error(xy1, xy2, H, size1, floor_px)
    out["n_kp"] = float(kp1["xy"].shape[0])
    return out


class Repeatability(Metric):
    """Mean repeatability over image pairs at (``top_k``, ``threshold`` px), torchmetrics style.

    ``update(xy1, score1, xy2, score2, H, size1, size2)`` per pair; ``compute()`` -> mean over pairs.
    """

    full_state_update = False

    def __init__(self, top_k: int = 300, threshold: float = 3.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.top_k, self.threshold = top_k, threshold
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pairs", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, xy1: torch.Tensor, score1: torch.Tensor, xy2: torch.Tensor, score2: torch.Tensor,
               H: torch.Tensor, size1: Sequence[int], size2: Sequence[int]) -> None:
        H = H.double()
        i1 = select_keypoints(xy1.double(), score1, H, size1, size2, self.top_k)
        i2 = select_keypoints(xy2.double(), score2, torch.linalg.inv(H), size2, size1, self.top_k)
        r = repeatability(xy1[i1], xy2[i2], H, self.threshold)
        self.total += r["repeatability"].to(self.total)
        self.pairs += 1

    def compute(self) -> torch.Tensor:
        return (self.total / self.pairs.clamp(min=1)).float()
