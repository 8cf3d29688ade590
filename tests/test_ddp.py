"""DDP on CPUs: ``python train.py trainer=ddp trainer.accelerator=cpu trainer.devices=2`` runs two
gloo processes (Lightning re-runs train.py for rank 1) that share rank 0's Hydra run folder."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import torch

from tests.conftest import TINY_SHAPES, run_cli

TRAIN_SIZE, BATCH_SIZE, WORLD_SIZE = 128, 32, 2


def test_train_cli_ddp_two_cpu_processes(tmp_path: Path) -> None:
    shapes = [*TINY_SHAPES, f"data.train_size={TRAIN_SIZE}", f"data.batch_size={BATCH_SIZE}"]
    result = run_cli(
        "train.py", "trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={WORLD_SIZE}", "trainer.max_epochs=1",
        "logger=mlflow", "callbacks.progress_bar=null", *shapes,
        env={"NEUROCORR_ROOT": str(tmp_path)}, timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"Starting with {WORLD_SIZE} processes" in output
    assert f"GLOBAL_RANK: 1, MEMBER: 2/{WORLD_SIZE}" in output

    # rank 1 ran in rank 0's run folder: one folder, one metrics.json, one announcement
    runs = list((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1, runs
    run_dir = runs[0]
    assert list((tmp_path / "logs").rglob("metrics.json")) == [run_dir / "metrics.json"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test/f1"] <= 1.0
    assert output.count("[neurocorr] output folder:") == 1
    assert output.count("[neurocorr] val/f1 = ") == 1

    # each rank saw half the training set: half the single-process steps per epoch (drop_last)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == TRAIN_SIZE // (WORLD_SIZE * BATCH_SIZE) == (TRAIN_SIZE // BATCH_SIZE) // 2

    # one MLflow run, finished, with rank 0's metrics
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    try:
        found = mlflow.search_runs(experiment_names=["neurocorr-agfusion"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert len(found) == 1
    assert found[0].info.status == "FINISHED"
    assert found[0].data.metrics["test/f1"] == metrics["test/f1"]
