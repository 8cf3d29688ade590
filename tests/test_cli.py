"""The entry points as a user runs them: errors in one line, sweeps, the DVC pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_SHAPES, run_cli

QUIET = ["logger=none", "trainer=cpu", "callbacks.progress_bar=null"]


def test_unknown_model_lists_the_options(tmp_path: Path) -> None:
    result = run_cli("train.py", "model=no_such_model", env={"NEUROCORR_ROOT": str(tmp_path)})
    assert result.returncode != 0
    assert "Could not find 'model/no_such_model'" in result.stderr
    assert "agfusion" in result.stderr  # Hydra lists the available options


def test_missing_data_root_is_one_line_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run_cli("train.py", "data=class_folders", f"data.root={missing}", *QUIET, env={"NEUROCORR_ROOT": str(tmp_path)})
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [f"neurocorr: error: data root {missing} does not exist (expected <root>/<class>/*.png)"]
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "logs").rglob("*.log")), "the failed run left its folder behind"


def test_bad_config_value_is_one_line(tmp_path: Path) -> None:
    result = run_cli("train.py", "model.monitor_mode=biggest", *QUIET, env={"NEUROCORR_ROOT": str(tmp_path)})
    assert result.returncode == 2
    assert "model.monitor_mode must be 'min' or 'max', got 'biggest'" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_prints_output_folder_and_mlflow_run(tmp_path: Path) -> None:
    result = run_cli("train.py", *TINY_SHAPES, "trainer=cpu", "trainer.max_epochs=1", "callbacks.progress_bar=null",
                     env={"NEUROCORR_ROOT": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"[neurocorr] output folder: {tmp_path}/logs/train/runs/" in result.stdout
    assert "MLflow run " in result.stdout and f"sqlite:///{tmp_path}/mlruns/mlflow.db" in result.stdout


def test_grid_sweep_runs_every_trial_and_reports_the_failed_ones(tmp_path: Path) -> None:
    # trial 1 diverges (non-finite loss), trial 2 is a config error: neither ends the sweep
    result = run_cli("train.py", "-m", "optimizer.lr=1e-3,1e30,-1", "optimizer.weight_decay=0", "trainer.gradient_clip_val=null",
                     *TINY_SHAPES, "trainer.max_epochs=2", *QUIET, env={"NEUROCORR_ROOT": str(tmp_path)})
    assert result.returncode == 1, result.stderr[-3000:]
    sweep = next((tmp_path / "logs" / "train" / "multiruns").iterdir())
    rows = (sweep / "sweep_summary.csv").read_text().splitlines()
    assert [row.split(",")[2] for row in rows[1:]] == ["finished", "failed", "failed"]
    assert "non-finite" in rows[2] and "optimizer.lr must be > 0" in rows[3]
    assert result.stderr.strip().splitlines()[-1].startswith("neurocorr: error: 2 of 3 trials failed: 1 (optimizer.lr=1e")
    assert (sweep / "0" / "metrics.json").is_file() and not (sweep / "2").exists()


@pytest.mark.slow
def test_dvc_repro_runs_and_reruns_only_what_changed(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("conf", "src", "train.py", "evaluate.py", "dvc.yaml", "params.yaml", ".dvcignore"):
        src = REPO / name
        (shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
         if src.is_dir() else shutil.copy(src, project / name))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(project / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NEUROCORR_ROOT", None)
    dvc = [sys.executable, "-m", "dvc"]

    def repro() -> str:  # one family's stages keep the test short; the closing note measures all of them
        result = subprocess.run([*dvc, "repro", "agfusion_evaluate"], cwd=project, env=env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    # the DVC mechanics, not the model, are under test: smaller splits make the first run shorter
    params = project / "params.yaml"
    assert "train_size: 512" in params.read_text()
    params.write_text(params.read_text().replace("train_size: 512", "train_size: 64"))
    stages = project / "dvc.yaml"
    sizes = "data.train_size=${agfusion.train_size}"
    assert sizes in stages.read_text()
    stages.write_text(stages.read_text().replace(sizes, f"{sizes} data.val_size=64 data.test_size=64"))
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=project, env=env, check=True)
    first = repro()
    for family in ("agfusion",):
        assert f"Running stage '{family}_train'" in first
        assert (project / "artifacts" / family / "model.ckpt").is_file()
        assert (project / "artifacts" / family / "eval_metrics.json").is_file()
    assert "Running stage" not in repro()  # nothing changed: every stage skipped
    text = params.read_text()
    params.write_text(text.replace("lr: 3.0e-4\n  max_epochs: 1\n  buildings", "lr: 1.0e-4\n  max_epochs: 1\n  buildings"))
    assert "Running stage" not in repro()  # a qatm param: agfusion does not depend on it
    params.write_text(text.replace("lr: 1.0e-3\n  max_epochs: 1\n  train_size: 64", "lr: 3.0e-4\n  max_epochs: 1\n  train_size: 64"))
    status = subprocess.run([*dvc, "status", "agfusion_train"], cwd=project, env=env, capture_output=True, text=True).stdout
    assert "agfusion_train" in status and "changed command" in status  # ${agfusion.lr} is in its command: repro reruns it
    params.write_text(text)
    backbone = project / "src" / "neurocorr" / "backbones" / "resnet_stem.py"
    backbone.write_text(backbone.read_text() + "\n# an edit\n")
    status = subprocess.run([*dvc, "status", "agfusion_train"], cwd=project, env=env, capture_output=True, text=True).stdout
    assert "agfusion_train" in status and "changed deps" in status
