"""export.py: every family's network runs in onnxruntime as in PyTorch (max abs difference < 1e-4, at two
batch sizes and, where the file claims it, two image sizes), TorchScript where it traces, a JSON beside
the file, a mismatch refused, and the files logged to the checkpoint's MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import neurocorr.tasks.export as export_task
from neurocorr.checkpoints import CONFIG_KEY, DATA_KEY, build_model, model_from_checkpoint
from neurocorr.tasks import tracking
from neurocorr.tasks.export import export
from tests.conftest import compose_config

# tiny networks of every family, with a stored data config as training writes it
FAMILIES = {
    "detector": ["model=detector", "model.net.layer_1=1", "model.net.layer_2=1", "model.net.layer_3=1",
                 "model.net.pyramid_levels=1", "model.net.handcrafted=[0.0]", "model.net.group_order=4",
                 "model.peaks_from=harris"],  # keypoints on Harris: the file also carries its peak_map
    "heatmapper": ["model=heatmapper", "backbone=small_cnn", "backbone.widths=[8,8,8]", "data.image_size=32"],
    "agfusion": ["model=agfusion", "backbone=small_cnn", "backbone.widths=[8,8]", "data.image_size=32"],
    "qatm": ["model=qatm", "backbone.width=0.125"],
    "dino": ["model=dino", "backbone=vit_tiny", "backbone.depth=1", "backbone.embed_dim=24", "backbone.num_heads=2",
             "backbone.img_size=32", "data.image_size=32"],
}
# input axes each family's ONNX file keeps dynamic (the detector's sizes are fixed: see its export.py)
DYNAMIC = {"detector": {"image": [0]}, "heatmapper": {"image": [0, 2, 3]}, "agfusion": {"image_a": [0, 2, 3]},
           "qatm": {"template": [0], "scene": [0, 2, 3]}, "dino": {"image": [0, 2, 3]}}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    out = {}
    for family, overrides in FAMILIES.items():
        cfg = compose_config(root / family, [*overrides, "logger=none"])
        torch.manual_seed(0)
        model = build_model(cfg.model)
        run = root / family / "run"
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text(OmegaConf.to_yaml({"task_name": "train"}))
        out[family] = run / "checkpoints" / "last.ckpt"
        torch.save({"state_dict": model.state_dict(), CONFIG_KEY: model.model_config,
                    DATA_KEY: OmegaConf.to_container(cfg.data, resolve=True)}, out[family])
    return out


def _export(tmp_path: Path, ckpt: Path, *overrides: str) -> tuple[float, dict, Path]:
    cfg = compose_config(tmp_path, [f"ckpt_path={ckpt}", *overrides], config_name="export")
    diff = export(cfg)
    files = sorted(Path(cfg.paths.output_dir).glob("*.json"))
    return diff, json.loads(files[0].read_text()), Path(cfg.paths.output_dir)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_onnx_file_matches_pytorch_in_onnxruntime(family: str, checkpoints, tmp_path: Path) -> None:
    size = {"detector": ["input_size=[40,40]"], "qatm": ["input_size=[64,72]"]}.get(family, [])
    optimize = [] if family == "detector" else ["optimize=false"]  # the optimiser costs time; the detector covers it
    diff, info, out = _export(tmp_path, checkpoints[family], "logger=none", *size, *optimize)
    assert diff < 1e-4
    assert (out / f"{family}.onnx").stat().st_size > 1000
    assert info["family"] == family and info["opset"] == 18 and info["parity"]["max_abs_diff"] == diff
    dynamic = {name: sorted(int(a) for a in axes) for name, axes in info["dynamic_axes"].items()}
    for name, axes in DYNAMIC[family].items():
        assert dynamic[name] == axes, (name, dynamic)
    checked = info["parity"]["inputs"]
    assert len(checked) == 2 and checked[0] != checked[1]  # another batch (and size where dynamic) was run
    if 2 in dynamic.get(info["input_names"][-1], []):
        assert checked[0].split("x")[-1] != checked[1].split("x")[-1]
    if not size:  # the input size the checkpoint was trained at
        assert info["input_size"] == [32, 32] == [info["stored_preprocessing"]["image_size"]] * 2
    assert info["preprocessing"]["value_range"] == [0.0, 1.0]
    if family == "detector":  # the map its keypoints are the peaks of, as the module computes it
        assert info["output_names"] == ["score", "orientation", "features", "peak_map"]
        assert info["preprocessing"]["keypoints"].startswith("peaks of the peak_map output")
        import onnxruntime as ort

        image = torch.rand(1, 1, 40, 40)
        peak_map = ort.InferenceSession(str(out / "detector.onnx"), providers=["CPUExecutionProvider"]).run(
            ["peak_map"], {"image": image.numpy()})[0]
        model, _ = model_from_checkpoint(checkpoints[family])
        np.testing.assert_allclose(peak_map, model.net.harris_score(image).detach().numpy(), atol=1e-5)


def test_a_file_that_differs_from_pytorch_is_refused_and_removed(checkpoints, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(export_task, "max_abs_diff", lambda got, want: 0.5)
    with pytest.raises(export_task.ExportMismatch, match=r"differ from PyTorch by 0\.5 > 0\.0001"):
        _export(tmp_path, checkpoints["heatmapper"], "format=torchscript", "logger=none")
    assert not list((tmp_path / "logs").rglob("*.pt"))


def test_torchscript_files_are_logged_to_the_checkpoints_mlflow_run(checkpoints, tmp_path: Path) -> None:
    ckpt = checkpoints["agfusion"]
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    tracking.prepare_store(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("neurocorr-agfusion", artifact_location=f"file://{tmp_path}/mlruns/artifacts")
    run = client.create_run(exp, tags={tracking.OUTPUT_TAG: str(ckpt.parent.parent.resolve())}).info.run_id
    client.log_artifact(run, str(ckpt), artifact_path="last")  # as Lightning's log_model does: not logged twice
    diff, info, _ = _export(tmp_path, ckpt, "format=torchscript")  # TorchScript: traced, any batch and size
    assert diff == 0.0 and info["format"] == "torchscript"
    assert {int(a) for a in info["dynamic_axes"]["image_a"]} == {0, 2, 3} and len(info["parity"]["inputs"]) == 2
    logged = {a.path for a in client.list_artifacts(run, "export")}
    assert logged == {"export/agfusion.pt", "export/agfusion.pt.json"}
    # a checkpoint whose run is not in the store: a new run in the family's experiment
    _export(tmp_path, checkpoints["heatmapper"], "format=torchscript")
    runs = client.search_runs([client.get_experiment_by_name("neurocorr-heatmapper").experiment_id])
    new = {a.path for a in client.list_artifacts(runs[0].info.run_id, "export")}
    assert len(runs) == 1 and new == {"export/heatmapper.pt", "export/heatmapper.pt.json", "export/checkpoint"}
