"""The heatmapper through train: fast_dev_run of both experiments, metrics and figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurocorr.tasks.train import train
from tests.models.heatmapper.tiny import tiny_heatmapper_data


def test_cpu_experiment_fast_dev_run_logs_metrics_and_figure(make_cfg, tmp_path: Path) -> None:
    # (tests/test_train_run.py runs fast_dev_run on every experiment, the DINOv2 one included)
    cfg = make_cfg("experiment=heatmapper_gauges_cpu", "debug=fast_dev_run", "trainer.accelerator=cpu", "trainer.precision=32-true",
                   *tiny_heatmapper_data(tmp_path))
    value = train(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("val/pck", "test/pck_start_end", "test/pck_middle", "test/mean_dist_middle", "test/unmatched_start_end", "test/loss"):
        assert key in metrics, key
    assert value == pytest.approx(metrics["val/pck"], nan_ok=True)
    assert (out / "figures" / "test_keypoints.png").stat().st_size > 1000


def test_meanshift_extraction_and_user_export(make_cfg, tmp_path: Path) -> None:
    # a single export (as a user would pass) split by fractions, meanshift extraction
    overrides = tiny_heatmapper_data(tmp_path)
    root = Path(overrides[0].split("=", 1)[1])
    cfg = make_cfg("model=heatmapper", "backbone=small_cnn", "debug=fast_dev_run", "logger=none",
                   f"data.annotations={root / 'train' / 'export.json'}", "data.fractions=[0.5,0.25,0.25]",
                   "data.image_size=48", "data.batch_size=2", "model.extraction.method=meanshift",
                   "model.extraction.meanshift.bandwidth=3.0", "model.figure_samples=0")
    train(cfg)
    assert "test/pck" in json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert not (Path(cfg.paths.output_dir) / "figures" / "test_keypoints.png").exists()  # figure_samples=0: none
