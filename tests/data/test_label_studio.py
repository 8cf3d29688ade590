"""Label Studio reader: round trip and every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurocorr.data.formats.label_studio import read_label_studio, task_to_json, write_label_studio
from neurocorr.errors import DataError


def _image(path: Path, w: int = 40, h: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (120, 120, 120)).save(path)
    return path


def _export(tmp_path: Path, tasks: list) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def _kp(x: float, y: float, label: str, w: int = 40, h: int = 30) -> dict:
    return {"type": "keypointlabels", "original_width": w, "original_height": h,
            "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": [label]}}


def test_round_trip_points_json_points(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "a.png", 40, 30)
    _image(tmp_path / "images" / "b.png", 64, 48)
    rng = np.random.default_rng(0)
    pa, la = rng.uniform(-0.5, 29.5, (5, 2)).astype(np.float32), np.array([0, 1, 1, 1, 2])
    pb, lb = rng.uniform(-0.5, 47.5, (3, 2)).astype(np.float32), np.array([2, 1, 0])
    tasks = [task_to_json(1, "/data/local-files/?d=images/a.png", 40, 30, pa, la),
             task_to_json(2, "/data/local-files/?d=images/b.png", 64, 48, pb, lb)]
    out = read_label_studio(write_label_studio(tasks, tmp_path / "export.json"))
    assert [t.task_id for t in out] == [1, 2]
    assert out[0].image == tmp_path / "images" / "a.png" and (out[0].width, out[0].height) == (40, 30)
    np.testing.assert_allclose(out[0].points, pa, atol=1e-4)
    np.testing.assert_array_equal(out[0].labels, la)
    np.testing.assert_allclose(out[1].points, pb, atol=1e-4)
    np.testing.assert_array_equal(out[1].labels, lb)


def test_percent_to_pixel_convention_and_label_spellings(tmp_path: Path) -> None:
    _image(tmp_path / "g.png")
    # Label Studio upload names carry an 8-hex prefix; the file on disk has the original name
    export = _export(tmp_path, [{"id": 5, "data": {"image": "/data/upload/3/0a1b2c3d-g.png"}, "annotations": [{"result": [
        _kp(0.0, 0.0, "Start Notch"), _kp(50.0, 50.0, "Inbetween Notch"), _kp(100.0, 100.0, "END NOTCH"),
        {"type": "choices", "value": {"choices": ["ok"]}},
    ]}]}, {"id": 6, "data": {"image": "g.png"}, "annotations": []}])
    (task,) = read_label_studio(export)  # task 6 has no annotation: skipped
    np.testing.assert_allclose(task.points, [[-0.5, -0.5], [19.5, 14.5], [39.5, 29.5]])
    np.testing.assert_array_equal(task.labels, [0, 1, 2])


@pytest.mark.parametrize("task, message", [
    ({"id": 11, "data": {"image": "g.png"}, "annotations": [{"result": [_kp(10, 10, "needle")]}]}, "task 11: unknown keypoint label 'needle'"),
    ({"id": 12, "data": {"image": "missing.png"}, "annotations": [{"result": [_kp(10, 10, "start")]}]}, "task 12: image 'missing.png' not found"),
    ({"id": 13, "data": {}, "annotations": [{"result": []}]}, "task 13: missing data.image"),
    ({"id": 14, "data": {"image": "g.png"}, "annotations": [{"result": [_kp("a", 10, "start")]}]}, "task 14: value.x must be a finite number"),
    ({"id": 15, "data": {"image": "g.png"}, "annotations": [{"result": [_kp(10, 140, "start")]}]}, "task 15: keypoint (10.0, 140.0) is outside"),
    ({"id": 16, "data": {"image": "g.png"}, "annotations": [{"result": [{"type": "keypointlabels", "value": {"x": 1, "y": 1, "keypointlabels": ["start"]}}]}]}, "task 16: original_width"),
    ({"id": 17, "data": {"image": "g.png"}, "annotations": [{"result": [_kp(10, 10, "start") | {"value": {"x": 1, "y": 1, "keypointlabels": []}}]}]}, "task 17: keypoint needs exactly one label"),
    ({"id": 18, "data": {"image": "g.png"}, "annotations": {"result": []}}, "task 18: annotations must be a list"),
    ("not a task", "task #0: expected an object"),
])
def test_bad_tasks_name_the_task(tmp_path: Path, task, message: str) -> None:
    _image(tmp_path / "g.png")
    export = _export(tmp_path, [task])
    with pytest.raises(DataError) as err:
        read_label_studio(export)
    assert message in str(err.value) and str(export) in str(err.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_label_studio(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(DataError, match="not valid JSON"):
        read_label_studio(bad)
    with pytest.raises(DataError, match="no annotated task"):
        read_label_studio(_export(tmp_path, []))


def test_write_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    path = write_label_studio([task_to_json(1, "a.png", 10, 10, np.zeros((1, 2)), [0])], tmp_path / "out" / "e.json")
    assert json.loads(path.read_text())[0]["annotations"][0]["result"][0]["value"]["keypointlabels"] == ["start"]
    assert [p.name for p in path.parent.iterdir()] == ["e.json"]


def test_export_without_keypoints_is_refused_in_one_line_naming_the_file(tmp_path: Path) -> None:
    # issue 11 item 10: such an export trained to val/pck = nan and exited 0
    _image(tmp_path / "g.png")
    export = _export(tmp_path, [
        {"id": 1, "data": {"image": "g.png"}, "annotations": [{"result": []}]},
        {"id": 2, "data": {"image": "g.png"}, "annotations": [{"result": [{"type": "choices", "value": {"choices": ["ok"]}}]}]},
    ])
    with pytest.raises(DataError) as err:
        read_label_studio(export)
    message = str(err.value)
    assert "\n" not in message and str(export) in message and "holds no keypoints" in message
    assert [len(t.labels) for t in read_label_studio(export, require_keypoints=False)] == [0, 0]
