"""DINO predictions: the teacher's features of every image and, for a ViT backbone, its last-layer CLS
attention per head over each image.

Images are read as RGB and resized to the square input side of training (``image_size``, from the
checkpoint's data config, else ``model.crops.global_size``; a multiple of the ViT's patch size).
``attention/<name>.png``: the image (in its original proportions, at most 512 px) then one panel per
head, the attention upsampled over the image. ``features.npz``: ``names`` ``(N,)`` and ``features``
``(N, C)`` float32, the teacher backbone's pooled (CLS) features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neurocorr.data.formats.image import read_image
from neurocorr.data.qatm import load_resized
from neurocorr.files import write_atomic
from neurocorr.models.dino.monitor import plot_attention
from neurocorr.tasks.predict import PredictContext
from neurocorr.viz.artifacts import save_figure

FIGURE_SIDE = 512


def attention_png(ctx: PredictContext, path: Path, image: torch.Tensor) -> Path:
    """The CLS attention of ``image`` ``(3, S, S)`` uint8 drawn over the original file at most 512 px."""
    original = read_image(path, "RGB")
    h, w = original.shape[-2:]
    f = min(1.0, FIGURE_SIDE / max(h, w))
    shown = F.interpolate(original[None].float(), size=(max(1, round(h * f)), max(1, round(w * f))), mode="bilinear",
                          antialias=True) / 255.0
    attention = ctx.model.teacher.attention(image[None].to(ctx.device).float() / 255.0).cpu()
    return save_figure(plot_attention(shown, attention), ctx.output / "attention" / f"{ctx.name(path)}.png")


def predict(ctx: PredictContext) -> list[Path]:
    teacher = ctx.model.teacher
    size = int(ctx.setting("image_size", ctx.model.crops.global_size))
    names, features = [], []
    for path in ctx.progress(ctx.images, "images"):
        image = ctx.attempt(str(path), lambda: load_resized(path, size))
        if image is None:
            continue
        features.append(teacher.features(image[None].to(ctx.device).float() / 255.0)[0].float().cpu())
        names.append(str(path))
        if teacher.is_vit:
            ctx.attempt(str(path), lambda: attention_png(ctx, path, image))
    if not names:
        return []
    arrays = {"names": np.asarray(names), "features": torch.stack(features).numpy()}
    return [write_atomic(ctx.output / "features.npz", lambda tmp: np.savez(tmp, **arrays))]
