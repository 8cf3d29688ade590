"""Heatmapper predictions: the keypoints of every image in its original pixels.

Each image is letterboxed to the model's input side (``image_size``, from the checkpoint) as in
training, its keypoints mapped back (:func:`letterbox.to_original`). Per image ``keypoints/<name>.json``
(``{"image", "width", "height", "keypoints": [{"label", "x", "y", "score"}]}``, pixels, centres at
integers) and ``keypoints/<name>.png`` (heatmaps and points over the image); for all images one
``label_studio_predictions.json`` to import into Label Studio
(:mod:`neurocorr.data.formats.label_studio_predictions`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from neurocorr.data.formats.image import read_image
from neurocorr.data.formats.label_studio_predictions import prediction_task, write_predictions
from neurocorr.files import write_json
from neurocorr.models.heatmapper.figures import plot_keypoints
from neurocorr.models.heatmapper.letterbox import letterbox_image, to_original
from neurocorr.ops.geometry import resize_points
from neurocorr.tasks.predict import PredictContext, options
from neurocorr.viz.artifacts import save_figure

FIGURE_SIDE = 768  # the overlay is drawn at most this large (points scaled with it)
PREDICTIONS_FILE = "label_studio_predictions.json"


def predict_image(ctx: PredictContext, path: Path, size: int) -> dict[str, Any]:
    """Keypoints of one image: ``xy`` ``(K, P, 2)`` original pixels, ``score``/``valid`` ``(K, P)``, and
    the heatmaps ``(K, size, size)`` with the letterbox ``scale`` and ``offset``."""
    original = read_image(path, "RGB")
    image, scale, offset = letterbox_image(original, size)
    batch = {"image": image[None].to(ctx.device).float() / 255.0,
             "scale": torch.tensor([scale], device=ctx.device), "offset": torch.tensor([offset], device=ctx.device).float()}
    logits = ctx.model.net(batch["image"])
    found = ctx.model.keypoints(logits)  # as the module's predict_step, keeping the logits for the figure
    xy = to_original(found.xy, batch["scale"].to(found.xy), batch["offset"].to(found.xy))[0].cpu()
    h, w = original.shape[-2:]
    inside = (xy >= -0.5).all(-1) & (xy[..., 0] <= w - 0.5) & (xy[..., 1] <= h - 0.5)  # not on the letterbox's border
    return {"image": original, "xy": xy, "score": found.score[0].cpu(), "valid": found.valid[0].cpu() & inside,
            "heat": logits[0].float().sigmoid().cpu(), "scale": scale, "offset": offset}


def original_heatmaps(found: dict[str, Any], height: int, width: int) -> torch.Tensor:
    """The letterboxed heatmaps cut to the image's content and resized to ``height`` x ``width``."""
    (sx, sy), (ox, oy) = found["scale"], found["offset"]
    w0, h0 = found["image"].shape[-1], found["image"].shape[-2]
    cw, ch = max(1, round(w0 * sx)), max(1, round(h0 * sy))
    content = found["heat"][:, oy : oy + ch, ox : ox + cw]
    return F.interpolate(content[None], size=(height, width), mode="bilinear", align_corners=False)[0]


def save_image_outputs(ctx: PredictContext, path: Path, found: dict[str, Any]) -> dict[str, Any]:
    names = ctx.model.class_names
    h, w = found["image"].shape[-2:]
    points = [{"label": names[k], "x": float(found["xy"][k, p, 0]), "y": float(found["xy"][k, p, 1]),
               "score": float(found["score"][k, p])}
              for k in range(found["xy"].shape[0]) for p in range(found["xy"].shape[1]) if found["valid"][k, p]]
    record = {"image": str(path), "width": int(w), "height": int(h), "keypoints": points}
    name = ctx.name(path)
    write_json(ctx.output / "keypoints" / f"{name}.json", record)
    f = min(1.0, FIGURE_SIDE / max(h, w))  # figure frame: the original scaled by f
    fh, fw = max(1, round(h * f)), max(1, round(w * f))
    shown = F.interpolate(found["image"][None].float(), size=(fh, fw), mode="bilinear", antialias=True)[0] / 255.0
    xy = resize_points(found["xy"], (h, w), (fh, fw))
    fig = plot_keypoints(shown[None], original_heatmaps(found, fh, fw)[None], xy[None], found["valid"][None],
                         torch.zeros(1, 0, 2), torch.zeros(1, 0, dtype=torch.long), names, columns=1)
    fig.set_size_inches(7, 7 * fh / fw + 0.6)
    fig.suptitle(f"{Path(path).name}: predicted keypoints (x) and heatmaps")
    save_figure(fig, ctx.output / "keypoints" / f"{name}.png")
    return record


def predict(ctx: PredictContext) -> list[Path]:
    """Keypoints of every input image; one Label Studio predictions file for them all."""
    size = int(ctx.setting("image_size", 448))
    ls = options(ctx.cfg, "label_studio")
    version = ls.get("model_version") or str(Path(str(ctx.cfg.get("ckpt_path") or "untrained")).name)
    prefix = str(ls.get("image_prefix") or "")
    names = ctx.model.class_names
    tasks = []
    for path in ctx.progress(ctx.images, "keypoints"):
        found = ctx.attempt(str(path), lambda: predict_image(ctx, path, size))
        record = found and ctx.attempt(str(path), lambda: save_image_outputs(ctx, path, found))
        if not record:
            continue
        try:
            rel = Path(path).resolve().relative_to(ctx.input_root.resolve()).as_posix()
        except ValueError:
            rel = Path(path).name
        points = [(p["x"], p["y"]) for p in record["keypoints"]]
        tasks.append(prediction_task(
            prefix + rel, record["width"], record["height"], points, [names.index(p["label"]) for p in record["keypoints"]],
            [p["score"] for p in record["keypoints"]], names, version, str(ls.get("from_name", "kp")),
            str(ls.get("to_name", "image"))))
    return [write_predictions(tasks, ctx.output / PREDICTIONS_FILE)] if tasks else []
