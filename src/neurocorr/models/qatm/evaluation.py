"""Evaluation pieces of the qatm family: one pair localised by QATM (multi-scale) and by the
baselines, retrieval ranked by QATM scores, and the localisation table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import torch

from neurocorr.models.qatm.baselines import ncc_locate
from neurocorr.models.qatm.boxes import Boxes, extract_boxes
from neurocorr.models.qatm.multiscale import match_multiscale
from neurocorr.models.qatm.torch_model import QATMNet

#: keys of ``model.match`` that choose the template variants; the rest go to :func:`extract_boxes`
VARIANT_KEYS = ("scales", "angles", "stride", "size_normalise")
METHODS = ("model", "untrained", "ncc")


def split_match_args(args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model.match`` -> (keywords of :func:`match_multiscale`, keywords of :func:`extract_boxes`)."""
    variants = {k: v for k, v in args.items() if k in VARIANT_KEYS and v is not None}
    for key in ("scales", "angles"):
        if key in variants:
            variants[key] = [float(x) for x in variants[key]]
    return variants, {k: v for k, v in args.items() if k not in VARIANT_KEYS}


class Located(NamedTuple):
    """The top box ``(4,)`` xywh of one method (zeros when none), whether there was one, its score,
    and the method's score map ``(H, W)`` (None for NCC)."""

    box: torch.Tensor
    found: bool
    score: float
    heatmap: Optional[torch.Tensor]


def top_box(boxes: Boxes) -> tuple[torch.Tensor, bool, float]:
    if boxes.score.numel() == 0:
        return torch.zeros(4), False, 0.0
    i = int(boxes.score.argmax())
    return boxes.xywh[i].detach().cpu().float(), True, float(boxes.score[i])


@torch.no_grad()
def localise_qatm(net: QATMNet, item: dict[str, Any], match_args: dict[str, Any]) -> Located:
    """The best box of ``item``'s template in its scene (``template``, ``scene`` uint8 ``(3, h, w)``,
    ``template_box`` ``(4,)`` with NaN = the whole template image)."""
    variants, box_args = split_match_args(match_args)
    device = next(net.parameters()).device
    scene = item["scene"].to(device).float()[None] / 255.0
    template = item["template"].to(device).float() / 255.0
    tbox = item["template_box"]
    box = None if bool(torch.isnan(tbox).any()) else [float(v) for v in tbox]
    result = match_multiscale(net, scene, [(template, box)], **variants)
    boxes = extract_boxes(result, **{**box_args, "global_ratio": 0.0, "min_score": None})  # localisation: always a box
    b, found, score = top_box(boxes)
    return Located(b, found, score, result.score[0].detach().cpu())


def localise_ncc(item: dict[str, Any]) -> Located:
    tbox = item["template_box"]
    box = None if bool(torch.isnan(tbox).any()) else [float(v) for v in tbox]
    b, score, _ = ncc_locate(item["template"], box, item["scene"])
    return Located(b, math.isfinite(score), score, None)


@torch.no_grad()
def qatm_similarity(net: QATMNet, queries: torch.Tensor, gallery: torch.Tensor, crop: float = 0.5, stride: int = 4) -> torch.Tensor:
    """Retrieval ranked by QATM: ``(Q, G)`` best score of each query's centre crop (``crop`` of its side,
    cut from its feature map, so with real context) inside each gallery image.

    Args:
        queries: ``(Q, 3, S, S)`` float in [0, 1]; gallery ``(G, 3, S', S')``.
    """
    q_feats = torch.cat([net.encode(queries[i : i + 32], stride) for i in range(0, len(queries), 32)])
    hq, wq = q_feats.shape[-2:]
    th, tw = max(1, round(hq * crop)), max(1, round(wq * crop))
    y0, x0 = (hq - th) // 2, (wq - tw) // 2
    templates = q_feats[..., y0 : y0 + th, x0 : x0 + tw]
    mask = torch.ones(len(templates), th, tw, dtype=torch.bool, device=templates.device)
    sizes = torch.tensor([[th, tw]], device=templates.device).expand(len(templates), 2)
    sim = queries.new_zeros(len(queries), len(gallery))
    for g in range(len(gallery)):
        scene = net.encode(gallery[g : g + 1], stride)[0]
        if scene.shape[-2] < th or scene.shape[-1] < tw:
            raise ValueError(f"gallery images ({tuple(gallery.shape[-2:])}) are smaller than the query crops")
        sim[:, g] = net.qatm(scene, templates, mask, sizes, net.tap_weights, inplace=True).flatten(1).amax(1)
    return sim


def localisation_table(results: dict[str, dict[str, dict[str, float]]], counts: dict[str, int]) -> str:
    """Markdown: one block per pair set, a row per method (model, untrained, ncc) and the metrics."""
    lines = []
    for name, methods in results.items():
        lines += [f"### {name or 'test pairs'} ({counts.get(name, 0)} pairs)", "",
                  "| method | success AUC | mean IoU | success@0.5 |", "|---|---|---|---|"]
        for method in METHODS:
            if method in methods:
                m = methods[method]
                lines.append(f"| {method} | {m['success_auc']:.3f} | {m['mean_iou']:.3f} | {m['success_at_0.5']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def write_text(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def metric_prefix(stage: str, set_name: str, method: str) -> str:
    """``test``, ``heldout``, ``ncc`` -> ``test/heldout/ncc/``; the model's own metrics carry no method."""
    parts = [stage] + ([set_name] if set_name else []) + ([method] if method != "model" else [])
    return "/".join(parts) + "/"


def centre_cells(box: torch.Tensor, cells: Sequence[int], stride: int) -> torch.Tensor:
    """The score-map cell ``(B, 2)`` (x, y, fractional) whose template window (``cells`` = (h, w) in
    cells) is centred on each box ``(B, 4)`` xywh pixels (the inverse of the box placement in
    :func:`extract_boxes`)."""
    h, w = cells
    cx = box[:, 0] + box[:, 2] / 2
    cy = box[:, 1] + box[:, 3] / 2
    return torch.stack([(cx - w * stride / 2) / stride + w // 2, (cy - h * stride / 2) / stride + h // 2], -1)


def template_crop(item: dict[str, Any]) -> torch.Tensor:
    """The template of an evaluation item: its box of ``template`` (NaN box: the whole image)."""
    box = item["template_box"]
    image = item["template"].cpu()
    if bool(torch.isnan(box).any()):
        return image
    x, y, w, h = (int(round(float(v))) for v in box)
    return image[:, y : y + h, x : x + w]
