"""AGFusion predictions: P(same) of image pairs, or a class per image against reference images.

- Pairs (a pairs CSV, or ``input=[a,b]``): ``pairs.csv`` = the input rows (every column kept) with
  ``p_same`` in [0, 1] and ``same`` (1 when ``p_same >= threshold``: ``threshold=``, else the model's
  ``threshold``, else 0.5). A row with an unreadable image is left out and listed in ``failed.csv``.
- Classes (``input=<folder or image>`` with ``references=<folder>``: one image per class named by its
  class, ``circle.png``, or class subfolders): ``classes.csv`` = ``image, class, p_same`` (the best
  class and its P(same)) and ``p_<class>`` per class (the best over that class's references).

Images are read as RGB and resized to the square ``image_size`` of training (from the checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from neurocorr.data.formats.image import list_images
from neurocorr.data.qatm import load_resized
from neurocorr.errors import ConfigError, DataError
from neurocorr.tasks.predict import PredictContext, write_csv


def p_same(ctx: PredictContext, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """P(same) ``(N,)`` of uint8 image pairs ``(N, 3, S, S)``, in batches of ``batch_size``."""
    step = max(1, int(ctx.cfg.get("batch_size") or 32))
    out = []
    for i in range(0, a.shape[0], step):
        x, y = (t[i : i + step].to(ctx.device).float() / 255.0 for t in (a, b))
        found = ctx.model.compare(x, y)  # as in evaluation (test-time D4 averaging when the model has it on)
        out.append(found.logit.float().sigmoid().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def load_all(ctx: PredictContext, paths: list[Path], size: int) -> dict[Path, torch.Tensor]:
    """Every readable image of ``paths`` resized to ``size``; the others are recorded as failed."""
    loaded = {}
    for path in ctx.progress(paths, "read"):
        image = ctx.attempt(str(path), lambda: load_resized(path, size))
        if image is not None:
            loaded[path] = image
    return loaded


def references(folder: Path) -> list[tuple[str, Path]]:
    """(class, image) of a references folder: class subfolders, else each file named by its class."""
    if not folder.is_dir():
        raise ConfigError(f"references: folder {folder} does not exist")
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subfolders:
        refs = [(d.name, p) for d in subfolders for p in list_images(d)]
    else:
        refs = [(p.stem, p) for p in list_images(folder, recursive=False)]
    if len({c for c, _ in refs}) < 2:
        raise ConfigError(f"references: {folder} needs images of at least two classes (files named by class, or class subfolders)")
    return refs


def threshold_of(ctx: PredictContext) -> float:
    given = ctx.cfg.get("threshold")
    value = float(given if given is not None else getattr(ctx.model, "threshold", None) or 0.5)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"threshold must lie in [0, 1], got {value}")
    return value


def predict_pairs(ctx: PredictContext, size: int) -> Path:
    table = ctx.pairs
    assert table is not None
    images = load_all(ctx, ctx.images, size)
    keep = [i for i, (a, b) in enumerate(table.paths) if a in images and b in images]
    for i, (a, b) in enumerate(table.paths):
        if i not in set(keep):
            ctx.failed.append((f"{a} - {b}", f"pair skipped: {a if a not in images else b} was not read"))
    p = p_same(ctx, torch.stack([images[table.paths[i][0]] for i in keep]) if keep else torch.zeros(0, 3, size, size),
               torch.stack([images[table.paths[i][1]] for i in keep]) if keep else torch.zeros(0, 3, size, size))
    threshold = threshold_of(ctx)
    rows = [{**table.rows[i], "p_same": f"{float(q):.6f}", "same": int(float(q) >= threshold)} for i, q in zip(keep, p)]
    return write_csv(ctx.output / "pairs.csv", table.columns + ["p_same", "same"], rows)


def predict_classes(ctx: PredictContext, folder: Path, size: int) -> Path:
    refs = references(folder)
    loaded = load_all(ctx, [p for _, p in refs], size)
    missing = [p for _, p in refs if p not in loaded]
    if missing:
        raise DataError(f"references: {missing[0]} cannot be read; every reference image must be")
    classes = sorted({c for c, _ in refs})
    bank = torch.stack([loaded[p] for _, p in refs])
    owner = torch.tensor([classes.index(c) for c, _ in refs])
    rows = []
    for path in ctx.progress(ctx.images, "classify"):
        image = ctx.attempt(str(path), lambda: load_resized(path, size))
        if image is None:
            continue
        p = p_same(ctx, image[None].expand(len(refs), -1, -1, -1), bank)
        per_class = torch.stack([p[owner == k].max() for k in range(len(classes))])
        best = int(per_class.argmax())
        row = {"image": str(path), "class": classes[best], "p_same": f"{float(per_class[best]):.6f}"}
        row.update({f"p_{c}": f"{float(q):.6f}" for c, q in zip(classes, per_class)})
        rows.append(row)
    return write_csv(ctx.output / "classes.csv", ["image", "class", "p_same"] + [f"p_{c}" for c in classes], rows)


def predict(ctx: PredictContext) -> list[Path]:
    size = int(ctx.setting("image_size", 64))
    folder: Optional[str] = ctx.cfg.get("references")
    if folder:
        return [predict_classes(ctx, Path(str(folder)).expanduser(), size)]
    if ctx.pairs is None:
        raise ConfigError("agfusion predicts pairs: give input=<pairs CSV> or input=[a.png,b.png], or classify a "
                          "folder against reference images with references=<folder>")
    return [predict_pairs(ctx, size)]
