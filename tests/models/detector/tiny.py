"""Tiny settings for the detector family's fast_dev_run tests (bundled images, 32 px crops)."""

from __future__ import annotations

from pathlib import Path

TINY_DETECTOR = [
    "data.crop_size=40", "data.batch_size=2", "data.train_size=4", "data.val_size=2", "data.test_size=2",
    "data.max_side=128", "model.net.layer_1=1", "model.net.layer_2=1", "model.net.layer_3=1",
    "model.net.pyramid_levels=2", "model.desc_top_k=8", "model.top_k=50", "model.figure_pairs=1",
]


def tiny_detector_data(tmp_path: Path) -> list[str]:
    return list(TINY_DETECTOR)
