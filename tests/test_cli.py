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


def test_grid_sweep_survives_a_diverging_trial(tmp_path: Path) -> None:
    result = run_cli("train.py", "-m", "optimizer.lr=1e-3,1e30", "optimizer.weight_decay=0", "trainer.gradient_clip_val=null",
                     *TINY_SHAPES, "trainer.max_epochs=2", *QUIET, env={"NEUROCORR_ROOT": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = sorted((tmp_path / "logs" / "train" / "multiruns").rglob("metrics.json"))
    assert len(metrics) == 2
    assert "non-finite" in result.stdout


def test_optuna_sweep_runs_two_trials(tmp_path: Path) -> None:
    result = run_cli("train.py", "-m", "hparams_search=agfusion_optuna", "hydra.sweeper.n_trials=2",
                     *TINY_SHAPES, "trainer.max_epochs=1", *QUIET, env={"NEUROCORR_ROOT": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = next((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(list(sweep.rglob("metrics.json"))) == 2
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in best and "optimizer.lr" in best


@pytest.mark.slow
def test_dvc_repro_runs_the_pipeline(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("conf", "src", "train.py", "evaluate.py", "dvc.yaml"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, project / name)
    # shrink the experiment the pipeline trains, as a user edits a params file
    experiment = project / "conf" / "experiment" / "agfusion_shapes.yaml"
    experiment.write_text(experiment.read_text() + "\ntrainer:\n  max_epochs: 1\ndata:\n" + "".join(
        f"  {o.split('=')[0].split('.')[1]}: {o.split('=')[1]}\n" for o in TINY_SHAPES))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    env.pop("NEUROCORR_ROOT", None)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=project, env=env, check=True)
    result = subprocess.run([*dvc, "repro"], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (project / "dvc.lock").is_file()
    assert (project / "artifacts" / "agfusion" / "model.ckpt").is_file()
    shown = subprocess.run([*dvc, "metrics", "show"], cwd=project, env=env, capture_output=True, text=True)
    assert "test/f1" in shown.stdout
    again = subprocess.run([*dvc, "repro"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert "didn't change, skipping" in again.stdout or "up to date" in again.stdout
