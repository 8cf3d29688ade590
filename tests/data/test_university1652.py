"""University-1652 layout reader, synthetic generator and data module."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurocorr.data.formats.university1652 import read_split
from neurocorr.data.qatm import University1652DataModule
from neurocorr.data.synthetic.aerial import main as aerial_main
from neurocorr.data.synthetic.aerial import make_dataset
from neurocorr.errors import DataError


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("u") / "u1652", n_train=5, n_test=3, views=2, size=32, n_maps=1, templates=2, map_size=96)


def test_generator_writes_the_university1652_layout(root):
    train = read_split(root, "train")
    assert set(train) == {"drone", "satellite"}
    assert sorted(train["drone"]) == [f"{i:04d}" for i in range(1, 6)]
    assert all(len(v) == 2 for v in train["drone"].values()) and all(len(v) == 1 for v in train["satellite"].values())
    test = read_split(root, "test")
    assert {"query_drone", "gallery_satellite", "query_satellite", "gallery_drone"} <= set(test)
    assert set(test["query_drone"]).isdisjoint(train["drone"])  # test buildings are new
    lines = (root / "localisation" / "pairs.csv").read_text().splitlines()
    assert lines[0] == "template_image,tx,ty,tw,th,scene_image,x,y,w,h" and len(lines) == 3


def test_generator_cli_refuses_a_non_empty_root(root, capsys):
    assert aerial_main([str(root), "--train", "1", "--test", "1"]) == 2
    assert str(root) in capsys.readouterr().err


def test_datamodule_pairs_drone_with_satellite_of_the_same_building(root):
    dm = University1652DataModule(root=str(root), image_size=24, batch_size=4, val_fraction=0.2, seed=0)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert len(train) == 4 * 2  # 4 training buildings (1 held out) x 2 drone views
    for a, b, _ in train.pairs:
        assert a.parent.name == b.parent.name and a.parts[-3] == "drone" and b.parts[-3] == "satellite"
    batch = next(iter(dm.train_dataloader()))
    assert batch["drone"].shape == (4, 3, 24, 24) and batch["drone"].dtype == torch.uint8
    dm.setup("test")
    roles = torch.tensor([r for _, _, r in dm.datasets["test"].items])
    assert (roles == 0).sum() == 3 * 2 and (roles == 1).sum() == 3


def test_missing_root_says_where_to_get_data(tmp_path):
    with pytest.raises(DataError, match="synthetic.aerial") as err:
        University1652DataModule(root=str(tmp_path / "nowhere"))
    assert "nowhere" in str(err.value) and "University1652" in str(err.value)


def test_empty_building_folder_is_named(root, tmp_path):
    (tmp_path / "train" / "drone" / "0001").mkdir(parents=True)
    with pytest.raises(DataError, match="0001"):
        read_split(tmp_path, "train")


def test_building_without_satellite_view_is_an_error(tmp_path):
    import shutil

    root = make_dataset(tmp_path / "u", n_train=3, n_test=1, views=1, size=16, n_maps=1, templates=1, map_size=64)
    shutil.rmtree(root / "train" / "satellite" / "0002")
    with pytest.raises(DataError, match="0002"):
        University1652DataModule(root=str(root), val_fraction=0.0).setup("fit")
