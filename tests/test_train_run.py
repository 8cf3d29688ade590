"""The training spine end to end: every experiment, resume, MLflow, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch

from neurocorr.tasks.evaluate import evaluate
from neurocorr.tasks.train import train
from neurocorr.families import FAMILIES
from neurocorr.models.base import NeurocorrModule
from tests.conftest import CONF, TINY_DATA, TINY_SHAPES

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_every_family_has_a_default_experiment() -> None:
    assert set(FAMILIES) <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_fast_dev_run(make_cfg, tmp_path: Path, experiment: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # a family's default pairing (conf/experiment/<family>.yaml) is chosen by model=<family>
    choose = f"model={experiment}" if experiment in FAMILIES else f"experiment={experiment}"
    data = make_cfg(choose).hydra.runtime.choices.data  # the data set the experiment trains on
    assert data in TINY_DATA, f"register a tiny-data maker for data={data} in tests/conftest.py TINY_DATA"
    overrides = TINY_DATA[data](tmp_path)
    cfg = make_cfg(choose, "debug=fast_dev_run", "trainer.accelerator=cpu", *overrides)
    step_logs: list[tuple[str, object]] = []
    log = NeurocorrModule.log

    def spy(self, name, value, *args, **kwargs):  # noqa: ANN001, ANN202
        if self._current_fx_name == "training_step":
            step_logs.append((name, kwargs.get("on_step", True)))  # Lightning's default in training_step: on_step
        return log(self, name, value, *args, **kwargs)

    monkeypatch.setattr(NeurocorrModule, "log", spy)
    value = train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert cfg.optimized_metric in metrics
    assert value == pytest.approx(metrics[cfg.optimized_metric], nan_ok=True)
    # training steps add to device-side epoch means (log_train_mean), logged when the epoch ends: no
    # self.log per step (a host read-back when on_step, and ~0.7 ms of bookkeeping on the CPU)
    assert step_logs == [], step_logs
    assert any(name.startswith("train/") for name in metrics), sorted(metrics)


def _tiny(*extra: str) -> list[str]:
    return [*TINY_SHAPES, "logger=none", "trainer=cpu", "trainer.deterministic=true", *extra]


def test_mlflow_run_has_params_metrics_and_artifacts(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(*TINY_SHAPES, "trainer=cpu", "trainer.max_epochs=1", "logger=mlflow")
    train(cfg)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert cfg.logger.mlflow.tracking_uri == uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["neurocorr-agfusion"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1
    found = runs[0]
    assert found.data.params["model._target_"].endswith("AGFusionModule")
    assert found.data.params["optimizer.lr"] == str(cfg.optimizer.lr)
    for metric in ("train/loss", "val/f1", "val/auroc", "test/f1", "test/auroc", "test/acc"):
        assert metric in found.data.metrics, metric
    assert len(client.get_metric_history(found.info.run_id, "val/f1")) == 1  # one value per epoch
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"config.yaml", "metrics.json", "figures"} <= artifacts
    figures = {Path(a.path).name for a in client.list_artifacts(found.info.run_id, "figures")}
    assert {"roc_curve.png", "confusion_matrix.png", "embeddings_pca.png", "attention_maps.png"} <= figures
    assert any(a.path.endswith(".ckpt") for a in _walk(client, found.info.run_id)), "best checkpoint not logged"
    assert found.info.status == "FINISHED"


def _walk(client: mlflow.MlflowClient, run_id: str, path: str | None = None) -> list:
    out = []
    for item in client.list_artifacts(run_id, path):
        out.extend(_walk(client, run_id, item.path) if item.is_dir else [item])
    return out


def test_evaluate_rebuilds_model_from_checkpoint_and_writes_outputs(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(*_tiny("trainer.max_epochs=1", "test=false"), root=tmp_path / "train")
    train(cfg)
    ckpt = next((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt"))
    # weights_only loading: the checkpoint holds only plain data
    assert "neurocorr_model_config" in torch.load(ckpt, weights_only=True)
    ev = make_cfg(f"ckpt_path={ckpt}", "data=shapes", *TINY_SHAPES, "logger=none", "trainer=cpu", config_name="evaluate",
                  root=tmp_path / "eval")
    value = evaluate(ev)
    out = Path(ev.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert value == metrics["test/f1"]
    assert {"test/f1", "test/auroc", "test/acc"} <= set(metrics)
    for name in ("roc_curve", "confusion_matrix", "embeddings_pca", "attention_maps"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
