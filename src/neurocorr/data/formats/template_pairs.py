"""Reader of template-pair CSVs: ``template_image,tx,ty,tw,th,scene_image,x,y,w,h``.

Paths are relative to the CSV; boxes are pixels with (x, y) the top-left corner; an empty template
box means the whole template image. Every bad row raises one :class:`DataError` naming the CSV row.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image

from neurocorr.errors import DataError

COLUMNS = ("template_image", "tx", "ty", "tw", "th", "scene_image", "x", "y", "w", "h")


@dataclass(frozen=True)
class TemplatePair:
    """One row: the template (a whole image or a box in it) and its ground-truth box in the scene."""

    row: int
    template_image: Path
    template_box: Optional[tuple[float, float, float, float]]
    scene_image: Path
    box: tuple[float, float, float, float]


def _size(path: Path, where: str) -> tuple[int, int]:
    if not path.is_file():
        raise DataError(f"{where}: image {path} does not exist")
    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            return img.size  # (W, H)
    except Exception as err:
        raise DataError(f"{where}: image {path} cannot be read: {err}") from err


def _box(values: list[str], names: tuple[str, ...], where: str) -> tuple[float, float, float, float]:
    try:
        box = tuple(float(v) for v in values)
    except ValueError:
        raise DataError(f"{where}: {','.join(names)} must be numbers, got {values}") from None
    if not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
        raise DataError(f"{where}: box {','.join(names)}={list(box)} needs finite values and positive width/height")
    return box  # type: ignore[return-value]


def _inside(box: tuple[float, ...], size: tuple[int, int], what: str, path: Path, where: str) -> None:
    x, y, w, h = box
    if x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
        raise DataError(f"{where}: {what} box {list(box)} lies outside {path} ({size[0]}x{size[1]})")


def read_template_pairs(csv_path: str | Path, check_images: bool = True) -> list[TemplatePair]:
    """Parse and validate a template-pairs CSV."""
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise DataError(f"template pairs: CSV {csv_path} does not exist")
    base = csv_path.parent
    pairs = []
    sizes: dict[Path, tuple[int, int]] = {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"template pairs: {csv_path} lacks columns {missing} (needs {','.join(COLUMNS)})")
        for n, row in enumerate(reader, start=2):  # line 1 is the header
            where = f"{csv_path} row {n}"
            if None in row or any(row.get(c) is None for c in COLUMNS):
                raise DataError(f"{where}: wrong number of columns")
            vals = {c: row[c].strip() for c in COLUMNS}
            for c in ("template_image", "scene_image", "x", "y", "w", "h"):
                if not vals[c]:
                    raise DataError(f"{where}: column {c} is empty")
            tbox_vals = [vals[c] for c in ("tx", "ty", "tw", "th")]
            if any(tbox_vals) and not all(tbox_vals):
                raise DataError(f"{where}: template box tx,ty,tw,th must be all empty or all given, got {tbox_vals}")
            tbox = _box(tbox_vals, ("tx", "ty", "tw", "th"), where) if all(tbox_vals) else None
            box = _box([vals[c] for c in "xywh"], ("x", "y", "w", "h"), where)
            template, scene = base / vals["template_image"], base / vals["scene_image"]
            if check_images:
                for p in (template, scene):
                    if p not in sizes:
                        sizes[p] = _size(p, where)
                _inside(box, sizes[scene], "scene", scene, where)
                if tbox is not None:
                    _inside(tbox, sizes[template], "template", template, where)
                tw, th = (tbox[2], tbox[3]) if tbox is not None else sizes[template]
                sw, sh = sizes[scene]
                if tw > sw or th > sh:
                    raise DataError(f"{where}: the template ({tw:g}x{th:g}) is larger than the scene {scene} ({sw}x{sh})")
            pairs.append(TemplatePair(n, template, tbox, scene, box))
    if not pairs:
        raise DataError(f"template pairs: {csv_path} has no rows")
    return pairs
