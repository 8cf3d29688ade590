"""Losses of the detector: a triplet loss on score maps (SSIM or normalised-MSE distance) and a
triplet loss on descriptors.

Score-map triplet: anchor = warp(score(image)), positive = score(warped image), negative = the
score of another warped image of the batch, all compared inside a validity mask.
``loss = relu(d(anchor, positive) - d(anchor, negative) + margin)``.

- ``ssim``: ``d = (1 - SSIM) / 2`` averaged over the mask, in [0, 1]; margin 1 by default (the
  seed's margin of 2 could never be met, since ``d_an - d_ap <= 1``, so the loss never switched off).
- ``mse``: normalised squared error ``|a - b|^2 / (|a|^2 + |b|^2)`` over the mask, in [0, 2]
  (the seed's NMRE); margin 2.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F
from kornia.filters import get_gaussian_kernel1d
from torch import nn

from neurocorr.errors import ConfigError
from neurocorr.models.detector.repeatability import matching_accuracy
from neurocorr.ops.geometry import warp_points


def masked_mean(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-sample mean of ``x`` ``(B, C, H, W)`` over ``mask`` ``(B, 1, H, W)`` -> ``(B,)``."""
    mask = mask.expand_as(x)
    return (x * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=eps)


@functools.lru_cache(maxsize=64)
def _blur_matrix(n: int, window: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(n, n)`` matrix ``M`` such that ``M @ x`` blurs ``x`` ``(..., n, m)`` along its rows with a
    Gaussian window (kornia's taps) and reflect padding: the padding is folded into the matrix."""
    r = window // 2
    if r >= n:
        raise ValueError(f"a {window}-tap window needs maps larger than {r} px, got {n}")
    taps = get_gaussian_kernel1d(window, sigma, dtype=torch.float64)[0]
    source = (torch.arange(n)[:, None] + torch.arange(window)[None] - r).abs()     # reflect at 0
    source = torch.where(source > n - 1, 2 * (n - 1) - source, source)               # reflect at n - 1
    matrix = torch.zeros(n, n, dtype=torch.float64).scatter_add_(1, source, taps.expand(n, window).contiguous())
    return matrix.to(dtype=dtype, device=device)


def _gaussian_blur(x: torch.Tensor, window: int, sigma: float = 1.5) -> torch.Tensor:
    """Separable Gaussian blur of ``x`` ``(B, C, H, W)`` with reflect padding (kornia's SSIM window),
    as ``G_H @ x @ G_W^T`` with banded ``(H, H)`` and ``(W, W)`` matrices. On the detector's 64 px maps
    this is 6x faster forward + backward than 2 x ``window`` shifted views (whose backward allocates
    a padded gradient per view) and than oneDNN's depthwise convolution (which reorders the channels
    around every call)."""
    h, w = x.shape[-2:]
    rows = _blur_matrix(h, window, sigma, x.dtype, x.device)
    cols = rows if w == h else _blur_matrix(w, window, sigma, x.dtype, x.device)
    return rows @ x @ cols.T


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 5, max_val: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """SSIM map ``(B, C, H, W)`` of maps ``a``, ``b`` ``(B, C, H, W)``: the values of
    ``kornia.metrics.ssim(a, b, window, max_val, eps, padding="same")`` (Gaussian window, sigma 1.5,
    reflect padding), with the five local moments blurred together in one stacked pass
    (:func:`_gaussian_blur`). It is computed in float32 whatever the inputs and the autocast state:
    in bf16 the second moments would lose the variance to rounding (kornia also casts up)."""
    if a.dim() != 4 or a.shape != b.shape:
        raise ValueError(f"ssim_map expects two (B, C, H, W) maps of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    if a.dtype in (torch.float16, torch.bfloat16) or b.dtype in (torch.float16, torch.bfloat16):
        a, b = a.float(), b.float()
    with torch.autocast(a.device.type, enabled=False):  # autocast would run the blur's matmuls in bf16
        moments = _gaussian_blur(torch.cat([a, b, a * a, b * b, a * b], 1), window)
    mu_a, mu_b, e_aa, e_bb, e_ab = moments.split(a.shape[1], 1)
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mu_ab = mu_a * mu_b
    num = (2 * mu_ab + c1) * (2 * (e_ab - mu_ab) + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (e_aa - mu_a * mu_a + e_bb - mu_b * mu_b + c2)
    return num / (den + eps)


def ssim_distance(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, window: int = 5) -> torch.Tensor:
    """``(1 - SSIM) / 2`` averaged over ``mask``: ``(B,)`` in [0, 1]. Maps ``(B, 1, H, W)`` in [0, 1]."""
    return masked_mean((1 - ssim_map(a, b, window)) / 2, mask)


def nmse_distance(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``|a - b|^2 / (|a|^2 + |b|^2)`` over ``mask``: ``(B,)`` in [0, 2]."""
    num = ((a - b) ** 2 * mask).flatten(1).sum(1)
    den = ((a**2 + b**2) * mask).flatten(1).sum(1)
    return num / den.clamp(min=eps)


class ScoreMapTriplet(nn.Module):
    """Triplet loss on score maps. ``forward(anchor, positive, negative, mask)`` -> scalar; all
    ``(B, 1, H, W)``; ``mask`` 1 where the three maps are valid.

    Args:
        distance: ``ssim`` or ``mse``.
        margin: triplet margin (1 suits ``ssim``, 2 suits ``mse``).
        window: SSIM window size (odd).
    """

    def __init__(self, distance: str = "ssim", margin: float = 1.0, window: int = 5) -> None:
        super().__init__()
        if distance not in ("ssim", "mse"):
            raise ConfigError(f"loss.distance must be 'ssim' or 'mse', got {distance!r}")
        if window < 3 or window % 2 == 0:
            raise ConfigError(f"loss.window must be an odd number >= 3, got {window}")
        if distance == "ssim" and margin > 1:
            raise ConfigError(f"loss.margin={margin} with SSIM distance in [0, 1] can never be met; use <= 1")
        self.distance, self.margin, self.window = distance, float(margin), int(window)

    def dist(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return ssim_distance(a, b, mask, self.window) if self.distance == "ssim" else nmse_distance(a, b, mask)

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # both distances in one call: half the kernel launches of two calls, same values
        d = self.dist(torch.cat([anchor, anchor]), torch.cat([positive, negative]), torch.cat([mask, mask]))
        d_ap, d_an = d.chunk(2)
        return F.relu(d_ap - d_an + self.margin).mean()


def descriptor_triplet(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, valid: torch.Tensor,
                       margin: float = 0.5) -> torch.Tensor:
    """Triplet loss on unit descriptors ``(B, K, D)`` (L2 distance), averaged over ``valid`` ``(B, K)``."""
    d_ap = (anchor - positive).norm(dim=-1)
    d_an = (anchor - negative).norm(dim=-1)
    loss = F.relu(d_ap - d_an + margin)
    v = valid.to(loss.dtype)
    return (loss * v).sum() / v.sum().clamp(min=1.0)


class PeakyRepeatability(nn.Module):
    """Score-map loss that wants the maps of two views to agree *and* to be peaky (in the manner of
    R2D2): ``forward(anchor, positive, negative, mask)`` -> scalar, maps ``(B, 1, H, W)``.

    - repeatability: ``1 - cosine similarity`` of the two maps over ``patch x patch`` windows (stride
      ``patch / 2``), each window's pixels weighted by ``mask``, averaged over windows with at least
      half their pixels valid;
    - peakiness: ``1 - (max - mean)`` of each map over the same windows, so that each window holds
      one sharp maximum and the maps do not saturate (a flat map at 1 scores the worst).
    ``negative`` is not used (the signature is the triplet's, so either loss plugs into the module).

    Args:
        patch: window side (px). peaky_weight: weight of the peakiness term.
    """

    def __init__(self, patch: int = 16, peaky_weight: float = 1.0) -> None:
        super().__init__()
        if patch < 4:
            raise ConfigError(f"loss.patch must be >= 4, got {patch}")
        self.patch, self.peaky_weight = int(patch), float(peaky_weight)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.patch, stride=self.patch // 2)

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a, p = anchor * mask, positive * mask
        num = self._pool(a * p)
        den = (self._pool(a * a) * self._pool(p * p)).clamp(min=1e-12).sqrt()
        weight = (self._pool(mask) >= 0.5).to(num.dtype)
        rep = 1 - (num / den * weight).sum() / weight.sum().clamp(min=1)
        peaky = 0.0
        for s in (anchor, positive):
            top = F.max_pool2d(s * mask, self.patch, stride=self.patch // 2)
            peak = top - self._pool(s * mask) / self._pool(mask).clamp(min=1e-6)
            peaky = peaky + 1 - (peak * weight).sum() / weight.sum().clamp(min=1)
        return rep + self.peaky_weight * peaky / 2


def hardest_in_batch_triplet(anchor: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor, xy: torch.Tensor,
                             margin: float = 1.0, exclude_px: float = 8.0) -> torch.Tensor:
    """HardNet-style triplet on unit descriptors: each (anchor i, positive i) pair against the
    closest non-matching descriptor of the whole batch (``min_j d(a_i, p_j)`` and ``min_j d(a_j, p_i)``).

    Args:
        anchor, positive: ``(B, K, D)`` descriptors of the same points in the two views.
        valid: ``(B, K)`` bool, pairs that take part. xy: ``(B, K, 2)`` the points in view 1 (px):
            points of the same image closer than ``exclude_px`` are not counted as negatives.
    Returns the mean of ``relu(margin + d(a_i, p_i) - d_hardest_negative)`` over valid pairs.
    """
    b, k, _ = anchor.shape
    keep = valid.flatten()
    if int(keep.sum()) < 2:
        return anchor.sum() * 0
    a, p = anchor.flatten(0, 1)[keep], positive.flatten(0, 1)[keep]
    pts = xy.flatten(0, 1)[keep].float()
    img = torch.arange(b, device=anchor.device).repeat_interleave(k)[keep]
    dist = torch.cdist(a.float(), p.float())                                       # (N, N)
    near = (img[:, None] == img[None, :]) & (torch.cdist(pts, pts) < exclude_px)    # the pair itself too
    masked = dist.masked_fill(near, float("inf"))
    hardest = torch.minimum(masked.min(1).values, masked.min(0).values)
    positive_d = dist.diagonal()
    ok = torch.isfinite(hardest)
    loss = F.relu(margin + positive_d - hardest.where(ok, positive_d + margin))
    return loss.mean()


def ring_offsets(radius: float, count: int = 8) -> torch.Tensor:
    """``(count, 2)`` offsets (x, y) in px, evenly spaced on a circle of ``radius`` px, the first along +x."""
    if radius <= 0 or count < 1:
        raise ValueError(f"ring_offsets needs radius > 0 and count >= 1, got {radius}, {count}")
    t = torch.arange(count, dtype=torch.float64) * (2 * torch.pi / count)
    return torch.stack([t.cos(), t.sin()], -1) * radius


def shifted_negative_triplet(anchor: torch.Tensor, positive: torch.Tensor, shifted: torch.Tensor, valid: torch.Tensor,
                             margin: float = 0.2) -> torch.Tensor:
    """Spatial precision of unit descriptors: each anchor must be closer to its positive than, by ``margin``,
    to the closest of ``shifted``, the other view's descriptors a few px off the true position (a neighbouring
    keypoint there would otherwise match as well).

    Args:
        anchor, positive: ``(B, K, D)`` descriptors of the same points in the two views.
        shifted: ``(B, K, S, D)`` descriptors of view 2 at ``S`` positions around each positive.
        valid: ``(B, K)`` bool, the points that take part.
    Returns the mean of ``relu(margin + d(a, p) - min_s d(a, shifted_s))`` over valid points (L2 distances).
    """
    if anchor.dim() != 3 or positive.shape != anchor.shape or valid.shape != anchor.shape[:2]:
        raise ValueError(f"anchor and positive (B, K, D), valid (B, K); got {tuple(anchor.shape)}, "
                         f"{tuple(positive.shape)}, {tuple(valid.shape)}")
    if shifted.dim() != 4 or shifted.shape[:2] != anchor.shape[:2] or shifted.shape[-1] != anchor.shape[-1]:
        raise ValueError(f"shifted must be (B, K, S, D) = ({anchor.shape[0]}, {anchor.shape[1]}, S, {anchor.shape[2]}), "
                         f"got {tuple(shifted.shape)}")
    closest = (anchor[:, :, None] - shifted).norm(dim=-1).argmin(-1)                          # (B, K)
    negative = shifted.gather(2, closest[..., None, None].expand(-1, -1, 1, shifted.shape[-1]))[:, :, 0]
    return descriptor_triplet(anchor, positive, negative, valid, margin)


def window_soft_argmax(score: torch.Tensor, window: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-argmax of ``score`` ``(B, 1, H, W)`` in each non-overlapping ``window x window`` cell
    (the map cropped to whole cells): ``(B, h, w, 2)`` positions (x, y) in px of the map, and
    ``(B, h, w)`` the cell's maximum. ``softmax(score / temperature)`` weighs the pixels of a cell."""
    b, _, height, width = score.shape
    h, w = height // window, width // window
    if h == 0 or w == 0:
        raise ValueError(f"a {window}-px window needs maps of at least {window} px, got {height}x{width}")
    cells = score[..., : h * window, : w * window].reshape(b, h, window, w, window).permute(0, 1, 3, 2, 4)
    cells = cells.reshape(b, h, w, window * window)
    prob = torch.softmax((cells if cells.dtype == torch.float64 else cells.float()) / temperature, dim=-1)
    r = torch.arange(window, device=score.device, dtype=prob.dtype)
    gy, gx = torch.meshgrid(r, r, indexing="ij")
    offset = torch.stack([(prob * gx.flatten()).sum(-1), (prob * gy.flatten()).sum(-1)], -1)
    corner = torch.stack(torch.meshgrid(torch.arange(w, device=score.device), torch.arange(h, device=score.device),
                                        indexing="xy"), -1).to(prob.dtype) * window
    return corner + offset, cells.amax(-1)


class IndexProposal(nn.Module):
    """Multi-scale index proposal (M-SIP), in the manner of Key.Net: in every cell of a grid of
    ``window`` px, the soft-argmax of the warped view-1 map (``anchor``) and that of the view-2 map
    (``positive``) must fall on the same point; ``forward(anchor, positive, negative, mask)`` -> scalar,
    maps ``(B, 1, H, W)`` in one frame. Per window size: the squared distance of the two positions in
    units of the window, weighted by the product of the two cells' maxima (detached: the weight chooses
    the cells that hold keypoints, it is not a way to lower the loss), over cells wholly inside
    ``mask``; averaged over the sizes. A flat map would put both positions at the cell centre, so
    this term goes with a peakiness term (``peaky_weight`` x :class:`PeakyRepeatability`'s).

    Args:
        windows: cell sides (px). temperature: of the softmax over a cell's scores (scores in (0, 1)).
        peaky_weight: weight of the R2D2 repeatability + peakiness term (0 = M-SIP alone).
        patch: window of that term (px).
    """

    def __init__(self, windows: Sequence[int] = (8, 16, 24, 32), temperature: float = 0.02,
                 peaky_weight: float = 1.0, patch: int = 16) -> None:
        super().__init__()
        if not windows or any(int(w) < 2 for w in windows):
            raise ConfigError(f"loss.windows must be cell sides >= 2 px, got {list(windows)}")
        if temperature <= 0:
            raise ConfigError(f"loss.temperature must be > 0, got {temperature}")
        self.windows, self.temperature = tuple(int(w) for w in windows), float(temperature)
        self.peaky_weight = float(peaky_weight)
        self.peaky = PeakyRepeatability(patch=patch)

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        total = anchor.new_zeros(())
        for window in self.windows:
            xy_a, top_a = window_soft_argmax(anchor, window, self.temperature)
            xy_p, top_p = window_soft_argmax(positive, window, self.temperature)
            inside = -F.max_pool2d(-mask, window)[:, 0] >= 0.999  # the cell's min: it lies wholly inside the mask
            weight = (top_a * top_p).detach() * inside
            d2 = ((xy_a - xy_p) ** 2).sum(-1) / window**2
            total = total + (weight * d2).sum() / weight.sum().clamp(min=1e-6)
        total = total / len(self.windows)
        if self.peaky_weight > 0:
            total = total + self.peaky_weight * self.peaky(anchor, positive, negative, mask)
        return total


def repeat_targets(xy: torch.Tensor, xy_other: torch.Tensor, valid_other: torch.Tensor, H: torch.Tensor,
                   sigma: float = 1.0) -> torch.Tensor:
    """How well each keypoint repeats in the other view, in [0, 1]: ``exp(-d^2 / (2 sigma^2))`` where
    ``d`` (px) is the distance from the warp ``H`` ``(B, 3, 3)`` of ``xy`` ``(B, K, 2)`` to the nearest
    valid keypoint of ``xy_other`` ``(B, M, 2)`` (``valid_other`` ``(B, M)`` bool); 0 when there is none.
    ``sigma`` (px) > 0. Returns ``(B, K)``, no gradient (these are labels)."""
    if sigma <= 0:
        raise ConfigError(f"the repeat target's sigma must be > 0 px, got {sigma}")
    if xy.dim() != 3 or xy_other.dim() != 3 or valid_other.shape != xy_other.shape[:2] or H.shape[-2:] != (3, 3):
        raise ValueError(f"repeat_targets: xy (B, K, 2), xy_other (B, M, 2), valid_other (B, M), H (B, 3, 3); got "
                         f"{tuple(xy.shape)}, {tuple(xy_other.shape)}, {tuple(valid_other.shape)}, {tuple(H.shape)}")
    with torch.no_grad():
        warped = warp_points(xy.double(), H.double())
        d = torch.cdist(warped, xy_other.double()).masked_fill(~valid_other[:, None, :], float("inf"))
        nearest = d.min(-1).values if d.shape[-1] else torch.full(xy.shape[:2], float("inf"), dtype=d.dtype, device=d.device)
        return torch.exp(-nearest.square() / (2 * sigma * sigma)).to(xy.dtype)


def repeat_bce(score: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Binary cross-entropy of keypoint scores ``(B, K)`` in (0, 1) against repeat targets ``(B, K)`` in
    [0, 1] (:func:`repeat_targets`), averaged over ``valid`` ``(B, K)``: the score learns the probability
    that a keypoint is found again in another view, over the whole image, which is what ranking the
    best N by score asks of it. Computed in float32 (safe under autocast)."""
    if score.shape != target.shape or score.shape != valid.shape:
        raise ValueError(f"repeat_bce: score, target and valid must share a shape, got {tuple(score.shape)}, "
                         f"{tuple(target.shape)}, {tuple(valid.shape)}")
    p = score.float().clamp(eps, 1 - eps)
    t = target.float()
    loss = -(t * p.log() + (1 - t) * (1 - p).log())
    v = valid.to(loss.dtype)
    return (loss * v).sum() / v.sum().clamp(min=1)


def mutual_match_correct(desc1: torch.Tensor, desc2: torch.Tensor, valid1: torch.Tensor, valid2: torch.Tensor,
                         xy1: torch.Tensor, xy2: torch.Tensor, H: torch.Tensor, px: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Which keypoints of two views would be matched correctly: the evaluation's rule
    (``repeatability.matching_accuracy``: mutual nearest neighbours by descriptor, correct when the match lies
    under ``px`` from the warp ``H`` of view 1 into view 2) applied to each pair of training views.

    Args:
        desc1, desc2: ``(B, K, D)`` / ``(B, M, D)`` descriptors (L2 distances compared).
        valid1, valid2: ``(B, K)`` / ``(B, M)`` bool, the keypoints that take part.
        xy1, xy2: ``(B, K, 2)`` / ``(B, M, 2)`` positions (px). H: ``(B, 3, 3)``. px: > 0.
    Returns ``(B, K)`` and ``(B, M)`` bool, no gradient (these are labels).
    """
    if px <= 0:
        raise ConfigError(f"the match target's distance must be > 0 px, got {px}")
    if (desc1.dim() != 3 or desc2.dim() != 3 or desc1.shape[0] != desc2.shape[0] or desc1.shape[-1] != desc2.shape[-1]
            or valid1.shape != desc1.shape[:2] or valid2.shape != desc2.shape[:2]
            or xy1.shape[:2] != desc1.shape[:2] or xy2.shape[:2] != desc2.shape[:2] or H.shape[-2:] != (3, 3)):
        raise ValueError(f"mutual_match_correct: desc1 (B, K, D), desc2 (B, M, D), valid (B, K) / (B, M), xy (B, K, 2) / "
                         f"(B, M, 2), H (B, 3, 3); got {tuple(desc1.shape)}, {tuple(desc2.shape)}, {tuple(valid1.shape)}, "
                         f"{tuple(valid2.shape)}, {tuple(xy1.shape)}, {tuple(xy2.shape)}, {tuple(H.shape)}")
    ok1, ok2 = torch.zeros_like(valid1), torch.zeros_like(valid2)
    with torch.no_grad():
        for b in range(desc1.shape[0]):
            i1, i2 = valid1[b].nonzero()[:, 0], valid2[b].nonzero()[:, 0]
            m = matching_accuracy(xy1[b, i1], desc1[b, i1], xy2[b, i2], desc2[b, i2], H[b], px)
            right = m["matches"][m["correct"]]
            ok1[b, i1[right[:, 0]]] = True
            ok2[b, i2[right[:, 1]]] = True
    return ok1, ok2
