"""From QATM score maps to template-sized boxes with scores."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torchvision.ops import batched_nms

from neurocorr.models.qatm.torch_model import MatchResult
from neurocorr.ops.peaks import find_peaks


class Boxes(NamedTuple):
    """``xywh (M, 4)`` float pixels (x, y top-left), ``score (M,)``, ``template (M,)`` long index."""

    xywh: torch.Tensor
    score: torch.Tensor
    template: torch.Tensor


def xywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([b[..., :2], b[..., :2] + b[..., 2:]], dim=-1)


CONFIDENCES = ("score", "peak_to_median")


def map_medians(score: torch.Tensor) -> torch.Tensor:
    """Median ``(N,)`` of each map of ``score`` ``(N, H, W)`` over its positive cells (1 where none)."""
    positive = torch.where(score > 0, score, torch.full_like(score, float("nan")))
    return positive.flatten(1).nanmedian(1).values.nan_to_num(1.0)


def extract_boxes(
    result: MatchResult,
    global_ratio: float = 0.5,
    local_ratio: float = 0.8,
    nms_iou: float = 0.3,
    top_k: int = 20,
    min_score: Optional[float] = None,
    confidence: str = "score",
) -> Boxes:
    """Boxes from a :class:`MatchResult`.

    Templates whose best score is below ``global_ratio`` x the best score of all templates give no
    box; within a kept template, local maxima above ``local_ratio`` x that template's best become
    template-sized boxes (sub-pixel centres), at most ``top_k`` per template, then non-maximum
    suppression per template at ``nms_iou``. With ``min_score``, templates whose best score is below
    it give no box either (an absolute threshold, e.g. calibrated on validation pairs).

    ``confidence``: the unit of box scores (and so of both thresholds): ``score`` (the QATM score) or
    ``peak_to_median`` (each template's map divided by its median over the places it fits: a template
    that is in the scene stands out of its own map, an absent one does not). Box places do not change.
    """
    if confidence not in CONFIDENCES:
        raise ValueError(f"confidence must be one of {CONFIDENCES}, got {confidence!r}")
    fs = result.feature_score  # (N, Hf, Wf)
    if confidence == "peak_to_median":
        fs = fs / map_medians(fs).clamp_min(torch.finfo(fs.dtype).tiny).view(-1, 1, 1)
    n = fs.shape[0]
    best = fs.flatten(1).amax(1)  # (N,)
    keep_t = (best >= global_ratio * best.max()) & (best > 0)
    if min_score is not None:
        keep_t &= best >= float(min_score)
    norm = fs / best.clamp_min(torch.finfo(fs.dtype).tiny).view(n, 1, 1)
    k = max(1, min(top_k, fs.shape[-1] * fs.shape[-2]))
    peaks = find_peaks(norm[None], top_k=k, threshold=local_ratio, window=3, subpixel=True)
    xy, valid = peaks.xy[0], peaks.valid[0] & keep_t.view(n, 1)  # (N, K, 2), (N, K)
    s = float(result.stride)
    k = xy.shape[1]
    if result.cell_sizes is None:  # one size per template: (N, K, 2) cells and pixels (h, w)
        cells = result.sizes.view(n, 1, 2).expand(n, k, 2)
        pix = result.pixels.to(fs.dtype).view(n, 1, 2).expand(n, k, 2)
    else:  # multi-scale: the size of the variant that won the peak's cell
        w_map = fs.shape[-1]
        at = xy.round().long()
        flat = (at[..., 1].clamp(0, fs.shape[-2] - 1) * w_map + at[..., 0].clamp(0, w_map - 1)).unsqueeze(-1).expand(n, k, 2)
        cells = result.cell_sizes.flatten(1, 2).gather(1, flat)
        pix = result.cell_pixels.flatten(1, 2).gather(1, flat).to(fs.dtype)
    half = torch.div(cells, 2, rounding_mode="floor").to(fs.dtype)
    cells = cells.to(fs.dtype)
    x0 = (xy[..., 0] - half[..., 1]) * s + (cells[..., 1] * s - pix[..., 1]) / 2
    y0 = (xy[..., 1] - half[..., 0]) * s + (cells[..., 0] * s - pix[..., 0]) / 2
    wh = pix.flip(-1)
    boxes = torch.cat([torch.stack([x0, y0], -1), wh], -1)[valid]
    template = torch.arange(n, device=fs.device).view(n, 1).expand_as(valid)[valid]
    score = (peaks.score[0] * best.view(n, 1))[valid]  # raw score at the integer peak
    keep = batched_nms(xywh_to_xyxy(boxes), score, template, nms_iou)
    return Boxes(boxes[keep], score[keep], template[keep])
