"""Tiny synthetic gauges for fast_dev_run tests of the heatmapper experiments."""

from __future__ import annotations

from pathlib import Path

from neurocorr.data.synthetic.gauges import make_dataset


def tiny_heatmapper_data(tmp_path: Path) -> list[str]:
    root = make_dataset(tmp_path / "gauges", n_train=4, n_val=2, n_test=2, size=56)
    return [f"data.root={root}", "data.image_size=56", "data.batch_size=2", "data.num_workers=0"]
