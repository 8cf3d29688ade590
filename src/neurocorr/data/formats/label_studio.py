"""Label Studio JSON exports of keypoint annotations (gauge scale points).

An export is a list of tasks::

    [{"id": 7, "data": {"image": "/data/local-files/?d=images/g_0007.png"},
      "annotations": [{"result": [{"type": "keypointlabels", "original_width": 640, "original_height": 480,
                                   "value": {"x": 12.5, "y": 40.0, "width": 0.5, "keypointlabels": ["start"]}}]}]}]

``x``/``y`` are percent of the original width/height, measured from the image's top-left corner.
In pixels (centre of pixel (i, j) = (x=j, y=i)): ``x_px = x / 100 * W - 0.5``.
Labels: ``start``/``middle``/``end`` or ``Start Notch``/``Inbetween Notch``/``End Notch`` (any case).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from neurocorr.errors import DataError

CLASS_NAMES = ("start", "middle", "end")
LABELS = {
    "start": 0, "start notch": 0,
    "middle": 1, "inbetween notch": 1, "in-between notch": 1, "in between notch": 1,
    "end": 2, "end notch": 2,
}
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


@dataclass
class KeypointTask:
    """One annotated image.

    points: ``(N, 2)`` float (x, y) in pixels of the original image; labels: ``(N,)`` int class index.
    """

    task_id: Any
    image: Path
    width: int
    height: int
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))


def label_index(label: str, where: str) -> int:
    key = " ".join(str(label).strip().lower().split())
    if key not in LABELS:
        raise DataError(f"{where}: unknown keypoint label {label!r} (expected one of start, middle, end, "
                        "Start Notch, Inbetween Notch, End Notch)")
    return LABELS[key]


def _candidates(image_ref: str, image_root: Path) -> list[Path]:
    """Where the file behind a task's ``data.image`` may be, most specific first."""
    ref = unquote(str(image_ref))
    parsed = urlparse(ref)
    query = parse_qs(parsed.query)
    if "d" in query:  # /data/local-files/?d=<path relative to the storage root>
        rel = query["d"][0]
        return [Path(rel), image_root / rel, image_root / Path(rel).name]
    path = parsed.path if parsed.scheme in ("http", "https", "s3", "gs") else ref
    name = Path(path).name
    out = [image_root / path.lstrip("/"), image_root / name, image_root / "images" / name]
    if Path(path).is_absolute():
        out.insert(0, Path(path))
    stripped = _UPLOAD_PREFIX.sub("", name)  # /data/upload/<project>/<8 hex>-<original name>
    if stripped != name:
        out += [image_root / stripped, image_root / "images" / stripped]
    return out


def resolve_image(image_ref: str, image_root: Path, where: str) -> Path:
    for candidate in _candidates(image_ref, image_root):
        if candidate.is_file():
            return candidate
    raise DataError(f"{where}: image {image_ref!r} not found (looked under {image_root})")


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise DataError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def parse_task(task: Any, index: int, image_root: Path, check_image: bool = True) -> Optional[KeypointTask]:
    """One task -> :class:`KeypointTask`; ``None`` for a task with no (non-cancelled) annotation."""
    if not isinstance(task, dict):
        raise DataError(f"task #{index}: expected an object, got {type(task).__name__}")
    task_id = task.get("id", f"#{index}")
    where = f"task {task_id}"
    data = task.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("image"), str):
        raise DataError(f"{where}: missing data.image")
    annotations = task.get("annotations", task.get("completions"))
    if annotations is None:
        annotations = []
    if not isinstance(annotations, list):
        raise DataError(f"{where}: annotations must be a list")
    kept = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled", False)]
    if not kept:
        return None
    result = kept[0].get("result")
    if not isinstance(result, list):
        raise DataError(f"{where}: annotation has no result list")
    points, labels, size = [], [], None
    for r in result:
        if not isinstance(r, dict):
            raise DataError(f"{where}: a result entry is not an object")
        value = r.get("value")
        if not isinstance(value, dict):
            raise DataError(f"{where}: a result has no value")
        if r.get("type", "keypointlabels") != "keypointlabels" and "keypointlabels" not in value:
            continue  # other tools (boxes, choices) are not ours
        names = value.get("keypointlabels")
        if not isinstance(names, list) or len(names) != 1:
            raise DataError(f"{where}: keypoint needs exactly one label in value.keypointlabels, got {names!r}")
        w = _number(r.get("original_width"), "original_width", where)
        h = _number(r.get("original_height"), "original_height", where)
        if w <= 0 or h <= 0:
            raise DataError(f"{where}: original_width/height must be positive, got {w} x {h}")
        if size is not None and size != (w, h):
            raise DataError(f"{where}: results disagree on the image size ({size} vs {(w, h)})")
        size = (w, h)
        x, y = _number(value.get("x"), "value.x", where), _number(value.get("y"), "value.y", where)
        if not (-1e-6 <= x <= 100 + 1e-6 and -1e-6 <= y <= 100 + 1e-6):
            raise DataError(f"{where}: keypoint ({x}, {y}) is outside the image (percent must be in [0, 100])")
        points.append((x / 100.0 * w - 0.5, y / 100.0 * h - 0.5))
        labels.append(label_index(names[0], where))
    image = resolve_image(data["image"], image_root, where) if check_image else Path(data["image"])
    if size is None:  # no keypoints: read the size from the file
        size = _image_size(image, where) if check_image else (0, 0)
    return KeypointTask(
        task_id=task_id, image=image, width=int(round(size[0])), height=int(round(size[1])),
        points=np.asarray(points, np.float32).reshape(-1, 2), labels=np.asarray(labels, np.int64),
    )


def _image_size(path: Path, where: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except Exception as err:
        raise DataError(f"{where}: image {path} cannot be read: {err}") from err


def read_label_studio(
    path: str | Path, image_root: str | Path | None = None, check_images: bool = True, require_keypoints: bool = True,
) -> list[KeypointTask]:
    """Read a Label Studio JSON export; image paths are resolved under ``image_root``
    (default: the export's folder). Tasks without annotations are skipped; an export without a
    single keypoint is refused (``require_keypoints``), since nothing could be learnt or scored.

    Raises :class:`DataError` naming the file or task for anything malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Label Studio export {path} does not exist")
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"Label Studio export {path} is not valid JSON: {err}") from err
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise DataError(f"Label Studio export {path}: expected a list of tasks")
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for i, task in enumerate(tasks):
        try:
            parsed = parse_task(task, i, root, check_images)
        except DataError as err:
            raise DataError(f"{path}: {err}") from err
        if parsed is not None:
            out.append(parsed)
    if not out:
        raise DataError(f"Label Studio export {path} holds no annotated task")
    if require_keypoints and not any(len(t.labels) for t in out):
        raise DataError(f"Label Studio export {path} holds no keypoints ({len(out)} annotated tasks, none with a "
                        "keypointlabels result): nothing to train on or score")
    return out


def task_to_json(
    task_id: int, image_ref: str, width: int, height: int, points: np.ndarray, labels: Sequence[int],
    label_names: Sequence[str] = CLASS_NAMES,
) -> dict[str, Any]:
    """One task in Label Studio's export format; ``points`` ``(N, 2)`` in pixels (pixel-centre convention)."""
    result = []
    for n, ((x, y), k) in enumerate(zip(np.asarray(points, np.float64).reshape(-1, 2), labels)):
        result.append({
            "id": f"{task_id}_{n}", "type": "keypointlabels", "from_name": "kp", "to_name": "image",
            "original_width": int(width), "original_height": int(height), "image_rotation": 0, "origin": "manual",
            "value": {"x": (x + 0.5) / width * 100.0, "y": (y + 0.5) / height * 100.0, "width": 0.5,
                      "keypointlabels": [label_names[int(k)]]},
        })
    return {"id": int(task_id), "data": {"image": image_ref},
            "annotations": [{"id": int(task_id), "was_cancelled": False, "result": result}], "predictions": []}


def write_label_studio(tasks: list[dict[str, Any]], path: str | Path) -> Path:
    """Write an export atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(tasks, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
