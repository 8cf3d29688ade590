"""Tiny synthetic University-1652 data for fast_dev_run tests of the qatm experiments."""

from __future__ import annotations

from pathlib import Path

from neurocorr.data.synthetic.aerial import make_dataset


def tiny_qatm_data(tmp_path: Path) -> list[str]:
    root = make_dataset(tmp_path / "u1652", n_train=4, n_test=3, views=2, size=32, n_maps=1, templates=2, map_size=96)
    return [f"data.root={root}", "data.image_size=32", "data.batch_size=4", "backbone.width=0.25"]
