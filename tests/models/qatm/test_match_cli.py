"""Matching a template folder in a scene: the three outputs and the clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurocorr.backbones.vgg import vgg19_features
from neurocorr.data.synthetic.aerial import render_world
from neurocorr.errors import DataError
from neurocorr.models.qatm.match import match_folder
from neurocorr.models.qatm.torch_model import QATMNet
from neurocorr.tasks.cli import cli
from neurocorr.tasks.match import match as run_match


def save(img: torch.Tensor, path: Path) -> None:
    Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)


@pytest.fixture
def scene_and_templates(tmp_path: Path) -> tuple[Path, Path]:
    world, _ = render_world(torch.Generator().manual_seed(2), 96, 8, centre_building=False)
    save(world, tmp_path / "scene.png")
    folder = tmp_path / "templates"
    folder.mkdir()
    save(world[:, 10:42, 20:56], folder / "a.png")
    save(world[:, 50:86, 40:72], folder / "b.png")
    return tmp_path / "scene.png", folder


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return QATMNet(vgg19_features(width=0.25), stride=4)


def test_match_folder_writes_result_heatmap_and_csv(net, scene_and_templates, tmp_path):
    scene, folder = scene_and_templates
    paths = match_folder(net, scene, folder, tmp_path / "out", {"global_ratio": 0.0})
    assert {p.name for p in paths.values()} == {"result.png", "heatmap.png", "boxes.csv"}
    for key in ("result", "heatmap"):
        with Image.open(paths[key]) as img:
            assert img.size[0] > 50
    rows = list(csv.DictReader(open(paths["boxes"])))
    assert rows and set(rows[0]) == {"template", "x", "y", "w", "h", "score"}
    assert {r["template"] for r in rows} <= {"a.png", "b.png"}
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    a = [r for r in rows if r["template"] == "a.png"]
    assert a and (float(a[0]["w"]), float(a[0]["h"])) == (36, 32)


def test_match_errors_are_clear(net, scene_and_templates, tmp_path):
    scene, folder = scene_and_templates
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no images"):
        match_folder(net, scene, empty, tmp_path / "o1")
    big = tmp_path / "big"
    big.mkdir()
    Image.fromarray(np.zeros((120, 30, 3), np.uint8)).save(big / "tall.png")
    with pytest.raises(DataError, match="larger than the scene"):
        match_folder(net, scene, big, tmp_path / "o2")
    (folder / "c.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="c.png"):
        match_folder(net, scene, folder, tmp_path / "o3")
    assert not (tmp_path / "o3").exists()


def test_match_task_from_config_writes_outputs_and_fails_in_one_line(make_cfg, scene_and_templates, tmp_path, capsys):
    scene, folder = scene_and_templates
    common = ["backbone.width=0.125", "logger=none"]
    cfg = make_cfg(f"scene={scene}", f"templates={folder}", *common, "model.net.stride=4", config_name="match")
    run_match(cfg)
    assert {"result.png", "heatmap.png", "boxes.csv"} <= {p.name for p in Path(cfg.paths.output_dir).iterdir()}
    bad = make_cfg(f"scene={scene}", f"templates={tmp_path / 'nope'}", *common, config_name="match")
    with pytest.raises(SystemExit) as exit_info:
        cli(run_match)(bad)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
