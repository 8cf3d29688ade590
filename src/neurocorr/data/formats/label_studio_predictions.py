"""Label Studio *predictions* (pre-annotations): a JSON list of tasks to import into the project the
labels came from, so that a person corrects a model's keypoints instead of labelling from scratch::

    [{"data": {"image": "/data/local-files/?d=g_0007.png"},
      "predictions": [{"model_version": "best.ckpt", "score": 0.91,
                       "result": [{"type": "keypointlabels", "from_name": "kp", "to_name": "image",
                                   "original_width": 640, "original_height": 480, "score": 0.93,
                                   "value": {"x": 12.5, "y": 40.0, "width": 0.5, "keypointlabels": ["start"]}}]}]}]

The keypoint results are those of an export (:func:`label_studio.task_to_json`: x/y in percent of the
original width/height), so :func:`read_predictions` reads the file back with the export reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from neurocorr.data.formats.label_studio import KeypointTask, parse_task, task_to_json, write_label_studio
from neurocorr.errors import DataError


def prediction_task(
    image_ref: str, width: int, height: int, points: np.ndarray, labels: Sequence[int], scores: Sequence[float],
    label_names: Sequence[str], model_version: str, from_name: str = "kp", to_name: str = "image",
    task_id: Optional[int] = None,
) -> dict[str, Any]:
    """One task holding one prediction; ``points`` ``(N, 2)`` in original pixels (pixel centres at
    integers), ``labels`` ``(N,)`` class indices into ``label_names``, ``scores`` ``(N,)`` in [0, 1].
    Points are clipped into the image (Label Studio refuses percentages outside [0, 100])."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    pts = np.clip(pts, -0.5, [width - 0.5, height - 0.5])
    exported = task_to_json(0, image_ref, width, height, pts, labels, label_names)
    result = exported["annotations"][0]["result"]
    for n, (r, s) in enumerate(zip(result, scores)):
        r.update(id=f"p{n}", from_name=from_name, to_name=to_name, origin="prediction", score=float(s))
    task: dict[str, Any] = {"data": exported["data"], "predictions": [{
        "model_version": model_version, "score": float(np.mean(scores)) if len(result) else 0.0, "result": result}]}
    if task_id is not None:
        task["id"] = int(task_id)
    return task


def write_predictions(tasks: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the predictions file atomically."""
    return write_label_studio(tasks, path)


def read_predictions(path: str | Path, image_root: str | Path | None = None, check_images: bool = True) -> list[KeypointTask]:
    """Read a predictions file with the export reader (the first prediction of each task in place of
    its annotation); raises :class:`DataError` naming the file for anything malformed."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"Label Studio predictions {path} cannot be read: {err}") from err
    if not isinstance(tasks, list):
        raise DataError(f"Label Studio predictions {path}: expected a list of tasks")
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("predictions"), list):
            raise DataError(f"{path}: task #{i} has no predictions list")
        try:
            parsed = parse_task({**task, "annotations": task["predictions"][:1]}, i, root, check_images)
        except DataError as err:
            raise DataError(f"{path}: {err}") from err
        if parsed is not None:
            out.append(parsed)
    return out
