"""Peak finding on score maps and heatmaps: max-pool NMS, threshold, top-k, sub-pixel refinement.

Pixel convention (used everywhere in neurocorr): the centre of pixel ``(row i, column j)`` is
the point ``(x=j, y=i)``; a map of width W spans x in [-0.5, W - 0.5].
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Peaks(NamedTuple):
    """Peaks of a ``(B, C, H, W)`` map, ``K`` per channel, sorted by score.

    xy: ``(B, C, K, 2)`` float, sub-pixel (x, y) in pixels.
    score: ``(B, C, K)`` the map's value at the integer peak.
    valid: ``(B, C, K)`` bool, False for padding slots (fewer than K peaks above threshold).
    """

    xy: torch.Tensor
    score: torch.Tensor
    valid: torch.Tensor


def nms_mask(scores: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Local maxima of ``scores`` ``(B, C, H, W)`` within a ``window`` x ``window`` square.

    Returns a bool mask of the same shape. Ties (flat plateaus) keep every tied pixel.
    """
    if scores.dim() != 4:
        raise ValueError(f"nms_mask expects (B, C, H, W), got shape {tuple(scores.shape)}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"NMS window must be a positive odd number, got {window}")
    return scores == square_max(scores, window)


def square_max(x: torch.Tensor, window: int) -> torch.Tensor:
    """Max of ``x`` ``(..., H, W)`` over the centred ``window`` x ``window`` square at each pixel, pixels
    beyond the border left out (``max_pool2d`` with stride 1 and -inf padding): a max over rows of a max
    over columns, each 1-D max ``window - 1`` elementwise maxima of shifted views, about twice as fast
    on the CPU. ``-square_max(-mask, k)`` erodes a mask (without eroding it at the image border)."""
    return running_max(running_max(x, window, -1), window, -2)


def running_max(x: torch.Tensor, window: int, dim: int) -> torch.Tensor:
    """Max over a centred 1-D ``window`` along ``dim`` (-1 or -2) of ``x`` ``(..., H, W)``, -inf beyond
    the border (so pixels outside never win). Several times faster than ``max_pool2d`` with stride 1
    on the CPU, whose 1-channel path does not vectorise."""
    half, n = window // 2, x.shape[dim]
    pad = (half, half, 0, 0) if dim == -1 else (0, 0, half, half)
    padded = F.pad(x, pad, value=float("-inf"))
    out = padded.narrow(dim, 0, n)
    for offset in range(1, window):
        out = torch.maximum(out, padded.narrow(dim, offset, n))
    return out


def _neighbourhood(scores: torch.Tensor, flat_index: torch.Tensor):  # noqa: ANN202
    """(x, y, at) of peaks at ``flat_index``: integer coordinates ``(B, C, K)`` and ``at(dy, dx)``, the
    score at that offset from every peak (replicate padding at the border)."""
    w = scores.shape[-1]
    padded = F.pad(scores, (1, 1, 1, 1), mode="replicate").flatten(2)
    y = torch.div(flat_index, w, rounding_mode="floor")
    x = flat_index - y * w
    pw = w + 2

    def at(dy: int, dx: int) -> torch.Tensor:
        return padded.gather(2, ((y + 1 + dy) * pw + (x + 1 + dx)).flatten(2)).view_as(y).to(scores.dtype)

    return x, y, at


def refine_subpixel(scores: torch.Tensor, flat_index: torch.Tensor) -> torch.Tensor:
    """Sub-pixel offsets by a 1-D quadratic fit along x and y at each peak.

    Args:
        scores: ``(B, C, H, W)``.
        flat_index: ``(B, C, K)`` long, index ``y * W + x`` of integer peaks.
    Returns: ``(B, C, K, 2)`` float (x, y) in pixels, offsets clamped to [-0.5, 0.5].
    """
    x, y, at = _neighbourhood(scores, flat_index)
    c, left, right, up, down = at(0, 0), at(0, -1), at(0, 1), at(-1, 0), at(1, 0)
    den_x, den_y = left - 2 * c + right, up - 2 * c + down
    eps = torch.finfo(scores.dtype).eps
    dx = torch.where(den_x.abs() > eps, 0.5 * (left - right) / den_x.where(den_x.abs() > eps, torch.ones_like(den_x)), 0)
    dy = torch.where(den_y.abs() > eps, 0.5 * (up - down) / den_y.where(den_y.abs() > eps, torch.ones_like(den_y)), 0)
    return torch.stack([x.to(scores.dtype) + dx.clamp(-0.5, 0.5), y.to(scores.dtype) + dy.clamp(-0.5, 0.5)], dim=-1)



def refine_subpixel_2d(scores: torch.Tensor, flat_index: torch.Tensor) -> torch.Tensor:
    """Sub-pixel peaks by a 2-D quadratic fit (gradient and Hessian, the cross term included) to
    the 3x3 neighbourhood of each integer peak: offset ``-Hess^-1 grad``. Where the fit is not a
    maximum (the Hessian is not negative definite) or its offset leaves the pixel, the 1-D fits of
    :func:`refine_subpixel` are kept. Same arguments and result as :func:`refine_subpixel`."""
    x, y, at = _neighbourhood(scores, flat_index)
    c, left, right, up, down = at(0, 0), at(0, -1), at(0, 1), at(-1, 0), at(1, 0)
    gx, gy = (right - left) / 2, (down - up) / 2
    hxx, hyy = left - 2 * c + right, up - 2 * c + down
    hxy = (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1)) / 4
    det = hxx * hyy - hxy * hxy
    eps = torch.finfo(scores.dtype).eps
    safe = torch.where(det.abs() > eps, det, torch.ones_like(det))
    dx = -(hyy * gx - hxy * gy) / safe
    dy = -(hxx * gy - hxy * gx) / safe
    ok = (det > eps) & (hxx < 0) & (dx.abs() <= 0.5) & (dy.abs() <= 0.5)
    fallback = refine_subpixel(scores, flat_index)
    refined = torch.stack([x.to(scores.dtype) + dx, y.to(scores.dtype) + dy], dim=-1)
    return torch.where(ok[..., None], refined, fallback)


def find_peaks(
    scores: torch.Tensor,
    top_k: int,
    threshold: float = 0.0,
    window: int = 3,
    border: int = 0,
    subpixel: bool = True,
) -> Peaks:
    """Batched peaks of ``scores`` ``(B, C, H, W)``: local maxima above ``threshold``, at
    least ``border`` pixels from the edge, the ``top_k`` highest per channel.

    Runs on the tensor's device with no host synchronisation.
    """
    if scores.dim() != 4:
        raise ValueError(f"find_peaks expects (B, C, H, W), got shape {tuple(scores.shape)}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    b, c, h, w = scores.shape
    keep = nms_mask(scores, window) & (scores > threshold)
    if border > 0:
        inner = torch.zeros(h, w, dtype=torch.bool, device=scores.device)
        inner[border : h - border, border : w - border] = True
        keep = keep & inner
    masked = torch.where(keep, scores, torch.full_like(scores, float("-inf"))).flatten(2)
    k = min(top_k, h * w)
    top, index = masked.topk(k, dim=2)
    valid = torch.isfinite(top)
    if subpixel:
        xy = refine_subpixel(scores, index)
    else:
        y = torch.div(index, w, rounding_mode="floor")
        xy = torch.stack([index - y * w, y], dim=-1).to(scores.dtype)
    score = scores.flatten(2).gather(2, index)
    if k < top_k:  # pad to a fixed K so batches stack
        pad = top_k - k
        xy = F.pad(xy, (0, 0, 0, pad))
        score = F.pad(score, (0, pad))
        valid = F.pad(valid, (0, pad), value=False)
    return Peaks(xy=xy, score=score, valid=valid)
