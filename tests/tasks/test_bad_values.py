"""Every bad config value is one line naming it, before any run folder or MLflow run exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurocorr.tasks.cli import cli
from neurocorr.tasks.train import train
from tests.conftest import TINY_SHAPES

BASE = [*TINY_SHAPES, "trainer=cpu", "callbacks.progress_bar=null", "trainer.max_epochs=1", "logger=mlflow"]

CASES = [
    (["optimizer.lr=-1"], "optimizer.lr must be > 0, got -1"),
    (["optimizer.lr=abc"], "optimizer.lr must be a number, got 'abc'"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay must be >= 0, got -1"),
    (["data.num_workers=-1"], "data.num_workers must be >= 0, got -1"),
    (["data.image_size=0"], "data.image_size must be >= 1, got 0"),
    (["data.train_size=0"], "data.train_size must be >= 1, got 0"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size must be >= 1, got 0"),
    (["seed=abc"], "seed must be an integer, got 'abc'"),
    (["threads=0"], "threads must be an integer >= 1 or null, got 0"),
    (["trainer.max_epochs=-2"], "trainer.max_epochs must be >= -1, got -2"),
    (["trainer.precision=bogus"], "precision=bogus"),
    (["trainer.accelerator=gpu"], "no CUDA device here: use trainer=cpu"),
    (["model.monitor=val/f2"], "model.monitor=val/f2 is not logged by AGFusionModule"),
    (["model=qatm", "experiment=agfusion"], "experiment=agfusion is the default pairing of model=agfusion"),
    (["experiment=agfusion_shapes", "model=qatm", "backbone=vgg19", "backbone.width=0.125", "loss=triplet"], "model=qatm needs batches with"),
]


@pytest.mark.parametrize(("overrides", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_value_is_one_line_and_leaves_nothing(make_cfg, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  overrides: list[str], message: str) -> None:
    cfg = make_cfg(*BASE, *overrides)
    with pytest.raises(SystemExit) as stop:
        cli(train)(cfg)
    assert stop.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("neurocorr: error: ") and message in err[0], err
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("*.yaml"))
    assert not (tmp_path / "mlruns").exists() or not any((tmp_path / "mlruns").rglob("meta.yaml"))
    db = tmp_path / "mlruns" / "mlflow.db"
    if db.exists():
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
        assert client.search_runs([e.experiment_id for e in client.search_experiments()] or ["0"]) == []


def test_unreadable_weights_file_is_one_line(make_cfg, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    with pytest.raises(SystemExit):
        cli(train)(make_cfg(*BASE, f"backbone.pretrained={weights}"))
    err = capsys.readouterr().err.strip()
    assert err == f"neurocorr: error: backbone resnet50_stem: cannot read weights file {weights}: the file is empty"


def test_values_that_must_agree_between_model_and_data(make_cfg, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from neurocorr.checkpoints import build_model
    from neurocorr.errors import ConfigError
    from tests.conftest import TINY_DATA

    detector = build_model(make_cfg("model=detector", *TINY_DATA["textures"](tmp_path)).model)
    with pytest.raises(ConfigError, match=r"model.net.in_channels=1 but data.grey=False gives 3-channel images"):
        detector.check_data(SimpleNamespace(grey=False))
    detector.check_data(SimpleNamespace(grey=True))
    heatmapper = build_model(make_cfg("model=heatmapper", "backbone=small_cnn").model)
    with pytest.raises(ConfigError, match=r"model.class_names=\['start', 'middle', 'end'\] but the data's keypoint classes"):
        heatmapper.check_data(SimpleNamespace(class_names=["start", "end"]))
    heatmapper.check_data(SimpleNamespace(class_names=["start", "middle", "end"]))
