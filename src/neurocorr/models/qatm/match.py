"""Match a folder of templates in a scene: ``result.png``, ``heatmap.png``, ``boxes.csv`` (the pure
matching code; the ``match.py`` task around it is :mod:`neurocorr.tasks.match`)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import torch

from neurocorr.data.formats.image import list_images, read_image
from neurocorr.errors import DataError
from neurocorr.models.qatm.boxes import Boxes, extract_boxes
from neurocorr.models.qatm.evaluation import split_match_args
from neurocorr.models.qatm.multiscale import match_multiscale
from neurocorr.models.qatm.torch_model import QATMNet
from neurocorr.models.qatm.viz import boxes_figure, heatmap_figure
from neurocorr.viz.artifacts import save_figure


def load_templates(folder: str | Path) -> tuple[list[str], list[torch.Tensor]]:
    """All images of ``folder`` (sorted) as uint8 ``(3, h, w)``; an empty folder is a DataError."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"templates folder {folder} does not exist")
    files = list_images(folder, recursive=False)
    if not files:
        raise DataError(f"templates folder {folder} holds no images")
    return [p.name for p in files], [read_image(p, "RGB") for p in files]


def write_boxes_csv(path: Path, names: list[str], boxes: Boxes) -> Path:
    """``template,x,y,w,h,score`` rows, best first; written to a temp file and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    order = boxes.score.argsort(descending=True).tolist()
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["template", "x", "y", "w", "h", "score"])
        for i in order:
            x, y, w, h = boxes.xywh[i].tolist()
            writer.writerow([names[int(boxes.template[i])], f"{x:.2f}", f"{y:.2f}", f"{w:.0f}", f"{h:.0f}", f"{float(boxes.score[i]):.6g}"])
    tmp.replace(path)
    return path


@torch.no_grad()
def match_folder(
    net: QATMNet, scene_path: str | Path, templates_dir: str | Path, out_dir: str | Path,
    match_args: Optional[dict] = None, device: str = "cpu",
) -> dict[str, Path]:
    """Match every template of ``templates_dir`` in the scene in one batched pass (every template at
    the scales and angles of ``match_args``; see :func:`split_match_args`) and write
    ``result.png`` (boxes and scores), ``heatmap.png`` (max score over templates), ``boxes.csv``."""
    scene = read_image(scene_path, "RGB")
    names, templates = load_templates(templates_dir)
    h, w = scene.shape[-2:]
    for name, t in zip(names, templates):
        if t.shape[-2] > h or t.shape[-1] > w:
            raise DataError(f"template {Path(templates_dir) / name} ({t.shape[-1]}x{t.shape[-2]}) is larger than the scene {scene_path} ({w}x{h})")
    net = net.to(device).eval()
    variants, box_args = split_match_args(dict(match_args or {}))
    result = match_multiscale(net, scene[None].to(device).float() / 255.0, [(t.to(device).float() / 255.0, None) for t in templates], **variants)
    boxes = extract_boxes(result, **box_args)
    boxes = Boxes(*(x.cpu() for x in boxes))
    out_dir = Path(out_dir)
    labels = [names[int(i)] for i in boxes.template]
    return {
        "result": save_figure(boxes_figure(scene, boxes.xywh, boxes.score, labels), out_dir / "result.png"),
        "heatmap": save_figure(heatmap_figure(result.score.cpu(), scene), out_dir / "heatmap.png"),
        "boxes": write_boxes_csv(out_dir / "boxes.csv", names, boxes),
    }
