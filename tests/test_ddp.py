"""DDP on CPUs: ``python train.py trainer=ddp trainer.accelerator=cpu trainer.devices=2`` runs two
gloo processes (Lightning re-runs train.py for rank 1) that share rank 0's Hydra run folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mlflow
import torch

from neurocorr.checkpoints import CONFIG_KEY, build_model
from neurocorr.data.synthetic.homography_sequences import write_sequences
from tests.conftest import TINY_SHAPES, run_cli
from tests.models.detector.tiny import TINY_DETECTOR

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


def test_evaluate_cli_ddp_detector_table_has_every_pair_once(make_cfg, tmp_path: Path) -> None:
    """Two processes each score their share of 3 pairs (the sampler pads rank 1's share with pair 2
    again); the table and the logged figures are those of the 3 pairs, each counted once."""
    cfg = make_cfg("model=detector", "logger=none", *TINY_DETECTOR, root=tmp_path / "train")
    ckpt = tmp_path / "detector.ckpt"
    model = build_model(cfg.model)
    torch.save({"state_dict": model.state_dict(), CONFIG_KEY: model.model_config}, ckpt)
    write_sequences(tmp_path / "seqs", ["coins"], size=48, n_warps=3, seed=1)
    result = run_cli(
        "evaluate.py", f"ckpt_path={ckpt}", "data=homography_sequences", f"data.root={tmp_path / 'seqs'}",
        "trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={WORLD_SIZE}", "logger=none",
        "model.baselines=[harris]", "model.compare_resamples=50", "threads=1",
        env={"NEUROCORR_ROOT": str(tmp_path / "eval")}, timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"Starting with {WORLD_SIZE} processes" in output
    run_dir, = (tmp_path / "eval" / "logs" / "evaluate" / "runs").iterdir()
    pairs = list(csv.DictReader((run_dir / "detector_eval_pairs.csv").open()))
    assert sorted((r["method"], int(r["pair"])) for r in pairs) == [(m, k) for m in ("harris", "model") for k in (2, 3, 4)]
    table = {(r["sequence"], r["method"]): r for r in csv.DictReader((run_dir / "detector_eval.csv").open())}
    assert table["average", "model"]["pairs"] == "3" and table["average", "harris"]["pairs"] == "3"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model_rep = sum(float(r["rep_300_3px"]) for r in pairs if r["method"] == "model") / 3
    assert abs(metrics["test/rep_300_3px"] - model_rep) < 1e-6
    assert output.count("detector evaluation table:") == 1  # printed and written by rank 0 alone
