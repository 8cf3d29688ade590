"""``data.split_seed``: which samples are validation and test is fixed apart from ``seed``, so that the
runs of a seed sweep are scored on the same samples (and no run trains on another run's test samples)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from neurocorr.data.base import NeurocorrDataModule
from neurocorr.data.synthetic.gauges import make_dataset as make_gauges
from neurocorr.errors import ConfigError
from neurocorr.tasks.build import build_datamodule
from tests.conftest import tiny_class_folders
from tests.models.dino.tiny import tiny_image_folder
from tests.models.qatm.tiny import tiny_qatm_data


def _gauge_export(tmp_path: Path) -> list[str]:
    root = make_gauges(tmp_path / "gauges", n_train=10, n_val=1, n_test=1, size=56)
    return [f"data.annotations={root / 'train' / 'export.json'}", "data.image_size=56", "data.num_workers=0"]


def _class_folders(tmp_path: Path) -> list[str]:
    return [*tiny_class_folders(tmp_path), "data.num_workers=0"]


def _image_folder(tmp_path: Path) -> list[str]:
    return [o for o in tiny_image_folder(tmp_path) if o.startswith("data.")]


def _university(tmp_path: Path) -> list[str]:
    return [o for o in tiny_qatm_data(tmp_path) if o.startswith("data.")] + ["data.val_fraction=0.5"]


# data set -> (model, tiny data, the splits drawn from the same samples by a seed)
CASES: dict[str, tuple[str, Callable[[Path], list[str]], tuple[str, ...]]] = {
    "class_folders": ("agfusion", _class_folders, ("val", "test")),
    "gauges": ("heatmapper", _gauge_export, ("val", "test")),
    "image_folder": ("dino", _image_folder, ("val",)),
    "university1652": ("qatm", _university, ("val",)),
}


def _digest(item: Any, h: "hashlib._Hash") -> None:
    if isinstance(item, torch.Tensor):
        h.update(item.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(item, dict):
        for key in sorted(item):
            h.update(str(key).encode())
            _digest(item[key], h)
    elif isinstance(item, (list, tuple)):
        for x in item:
            _digest(x, h)
    else:
        h.update(repr(item).encode())


def _splits(make_cfg, data: str, overrides: list[str], seed: int, split_seed: int) -> dict[str, str]:
    model, _, splits = CASES[data]
    cfg = make_cfg(f"model={model}", f"data={data}", *overrides, f"seed={seed}", f"data.split_seed={split_seed}")
    datamodule = build_datamodule(cfg.data)
    datamodule.setup("fit")
    out = {}
    for split in splits:
        h = hashlib.sha256()
        dataset = datamodule.datasets[split]
        for i in range(len(dataset)):
            _digest(dataset[i], h)
        out[split] = h.hexdigest()
    return out


@pytest.mark.parametrize("data", sorted(CASES))
def test_validation_and_test_samples_follow_split_seed_not_seed(make_cfg, tmp_path: Path, data: str) -> None:
    overrides = CASES[data][1](tmp_path)
    base = _splits(make_cfg, data, overrides, seed=1, split_seed=5)
    assert _splits(make_cfg, data, overrides, seed=2, split_seed=5) == base  # another training seed: same samples
    other = _splits(make_cfg, data, overrides, seed=1, split_seed=6)
    assert any(other[s] != base[s] for s in base)                            # another split seed: others


def test_split_seed_defaults_to_seed_and_is_checked(make_cfg, tmp_path: Path) -> None:
    overrides = _class_folders(tmp_path)
    cfg = make_cfg("model=agfusion", "data=class_folders", *overrides, "seed=7", "~data.split_seed")
    assert build_datamodule(cfg.data).split_seed == 7                        # an old stored config: as before
    with pytest.raises(ConfigError, match="data.split_seed must be >= 0, got -1"):
        NeurocorrDataModule(split_seed=-1)
