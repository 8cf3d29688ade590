"""QATM predictions: every template of ``templates=<folder>`` located in a scene or in each scene of a
folder (what ``match.py`` did; it is now this with ``input=<scene>``).

One scene: ``result.png`` (boxes and scores), ``heatmap.png`` (best score over templates) and
``boxes.csv`` (``template,x,y,w,h,score`` in the scene's pixels, x,y = top-left) in the output folder;
a folder of scenes: the same three files in ``<output>/<scene name>/`` each, and ``boxes.csv`` of all
scenes (a ``scene`` column first) in the output folder. Scenes of any size: the network runs on
tiles (``model.net.tile_cells``) and boxes are in the original pixels.
"""

from __future__ import annotations

from pathlib import Path

from neurocorr.errors import ConfigError
from neurocorr.models.qatm.match import load_templates, match_folder
from neurocorr.tasks.predict import PredictContext, options, write_csv


def predict(ctx: PredictContext) -> list[Path]:
    templates = ctx.cfg.get("templates")
    if not templates:
        raise ConfigError("qatm predicts template locations: give templates=<folder> and input=<scene image | folder of scenes>")
    load_templates(templates)  # a missing or empty folder stops here, once, not once per scene
    args = dict(getattr(ctx.model, "match_args", {}) or {})
    args.update(options(ctx.cfg, "match"))
    device = str(ctx.device)
    if len(ctx.images) == 1 and ctx.pairs is None:
        scene = ctx.images[0]
        paths = ctx.attempt(str(scene), lambda: match_folder(ctx.model.net, scene, templates, ctx.output, args, device))
        return list(paths.values()) if paths else []
    rows = []
    for scene in ctx.progress(ctx.images, "scenes"):
        paths = ctx.attempt(str(scene), lambda: match_folder(ctx.model.net, scene, templates, ctx.output / ctx.name(scene),
                                                               args, device))
        if paths is not None:
            rows += [{"scene": str(scene), **r} for r in read_rows(paths["boxes"])]
    return [write_csv(ctx.output / "boxes.csv", ["scene", "template", "x", "y", "w", "h", "score"], rows)]


def read_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))
