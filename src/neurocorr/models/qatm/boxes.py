"""From QATM score maps to template-sized boxes with scores."""

from __future__ import annotations

from typing import NamedTuple

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


def extract_boxes(
    result: MatchResult,
    global_ratio: float = 0.5,
    local_ratio: float = 0.8,
    nms_iou: float = 0.3,
    top_k: int = 20,
) -> Boxes:
    """Boxes from a :class:`MatchResult`.

    Templates whose best score is below ``global_ratio`` x the best score of all templates give no
    box; within a kept template, local maxima above ``local_ratio`` x that template's best become
    template-sized boxes (sub-pixel centres), at most ``top_k`` per template, then non-maximum
    suppression per template at ``nms_iou``.
    """
    fs = result.feature_score  # (N, Hf, Wf)
    n = fs.shape[0]
    best = fs.flatten(1).amax(1)  # (N,)
    keep_t = (best >= global_ratio * best.max()) & (best > 0)
    norm = fs / best.clamp_min(torch.finfo(fs.dtype).tiny).view(n, 1, 1)
    k = max(1, min(top_k, fs.shape[-1] * fs.shape[-2]))
    peaks = find_peaks(norm[None], top_k=k, threshold=local_ratio, window=3, subpixel=True)
    xy, valid = peaks.xy[0], peaks.valid[0] & keep_t.view(n, 1)  # (N, K, 2), (N, K)
    s = float(result.stride)
    sizes = result.sizes.to(fs.dtype)  # cells (h, w)
    pix = result.pixels.to(fs.dtype)  # pixels (h, w)
    half = torch.div(result.sizes, 2, rounding_mode="floor").to(fs.dtype)
    x0 = (xy[..., 0] - half[:, 1:2]) * s + (sizes[:, 1:2] * s - pix[:, 1:2]) / 2
    y0 = (xy[..., 1] - half[:, 0:1]) * s + (sizes[:, 0:1] * s - pix[:, 0:1]) / 2
    wh = pix.flip(-1).unsqueeze(1).expand(n, xy.shape[1], 2)
    boxes = torch.cat([torch.stack([x0, y0], -1), wh], -1)[valid]
    template = torch.arange(n, device=fs.device).view(n, 1).expand_as(valid)[valid]
    score = (peaks.score[0] * best.view(n, 1))[valid]  # raw score at the integer peak
    keep = batched_nms(xywh_to_xyxy(boxes), score, template, nms_iou)
    return Boxes(boxes[keep], score[keep], template[keep])
