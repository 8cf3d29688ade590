"""Template-pairs CSV reader: good rows, and one clear error per bad row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurocorr.data.formats.template_pairs import read_template_pairs
from neurocorr.data.qatm import TemplatePairsDataModule
from neurocorr.errors import ConfigError, DataError

HEADER = "template_image,tx,ty,tw,th,scene_image,x,y,w,h\n"
SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "qatm_sample"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "scene.png")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "t.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    return tmp_path


def write(folder: Path, *rows: str) -> Path:
    path = folder / "pairs.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_reads_whole_image_and_boxed_templates(folder):
    pairs = read_template_pairs(write(folder, "t.png,,,,,scene.png,5,6,12,10", "scene.png,1,2,20,10,scene.png,1,2,20,10"))
    assert pairs[0].template_box is None and pairs[0].box == (5, 6, 12, 10) and pairs[0].scene_image == folder / "scene.png"
    assert pairs[1].template_box == (1, 2, 20, 10) and pairs[1].row == 3


@pytest.mark.parametrize("row, message", [
    ("t.png,,,,,scene.png,5,6,12", "wrong number of columns"),  # a missing column
    ("t.png,,,,,scene.png,5,6,,10", "column w is empty"),
    ("t.png,1,,,,scene.png,5,6,12,10", "all empty or all given"),
    ("t.png,,,,,scene.png,50,6,12,10", "outside"),               # scene box leaves the image
    ("t.png,0,0,20,10,scene.png,5,6,12,10", "outside"),          # template box leaves the template
    ("broken.png,,,,,scene.png,5,6,12,10", "broken.png"),
    ("missing.png,,,,,scene.png,5,6,12,10", "missing.png"),
    ("t.png,,,,,scene.png,a,6,12,10", "numbers"),
    ("t.png,,,,,scene.png,5,6,0,10", "positive"),
])
def test_bad_rows_name_the_row(folder, row, message):
    path = write(folder, "t.png,,,,,scene.png,5,6,12,10", row)
    with pytest.raises(DataError, match=message) as err:
        read_template_pairs(path)
    assert f"{path} row 3" in str(err.value)


def test_missing_columns_and_files(folder):
    (folder / "bad.csv").write_text("template_image,x\n")
    with pytest.raises(DataError, match="lacks columns"):
        read_template_pairs(folder / "bad.csv")
    with pytest.raises(DataError, match="does not exist"):
        read_template_pairs(folder / "none.csv")


def test_datamodule_is_for_evaluation(folder):
    write(folder, "t.png,,,,,scene.png,5,6,12,10")
    dm = TemplatePairsDataModule(root=str(folder), batch_size=2)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert isinstance(batch["scene"], list) and batch["scene"][0].shape == (3, 40, 60)
    with pytest.raises(ConfigError, match="evaluation"):
        dm.train_dataloader()


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"shared sample data not found at {SAMPLE}")
def test_reads_the_real_sample():
    pairs = read_template_pairs(SAMPLE / "pairs.csv")
    assert len(pairs) == 4 and all(p.template_box is None for p in pairs)
    assert pairs[3].box == (40, 100, 45, 20)


@pytest.fixture(scope="module")
def view_pairs(tmp_path_factory) -> Path:
    from neurocorr.data.synthetic.aerial_pairs import make_view_pairs

    return make_view_pairs(tmp_path_factory.mktemp("v") / "pairs", n_train=2, n_val=1, n_heldout=1, views=1, templates=2, world_size=160, view=96)


def test_view_pair_generator_writes_three_splits_with_boxes_inside(view_pairs):
    for split in ("train", "val", "heldout"):
        pairs = read_template_pairs(view_pairs / f"{split}_pairs.csv")  # the reader checks every box lies inside
        assert pairs and all(p.template_box is not None and p.template_box[2] == p.template_box[3] for p in pairs)
    worlds = {p.scene_image.parent.name for p in read_template_pairs(view_pairs / "train_pairs.csv")}
    held = {p.scene_image.parent.name for p in read_template_pairs(view_pairs / "heldout_pairs.csv")}
    assert worlds.isdisjoint(held)  # held-out pairs come from new places


def test_training_pairs_from_csv_keep_the_template_in_its_box(folder):

    from neurocorr.data.qatm_pairs import CsvTrainingPairs

    rng = np.random.default_rng(0)
    scene = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(scene).save(folder / "big.png")
    # the template is the scene's box itself: after resizing both alike it must sit in the pair's box
    ds = CsvTrainingPairs([write(folder, "big.png,30,20,16,16,big.png,30,20,16,16")], template_size=16, context=4, scene_size=40)
    item = ds[0]
    assert item["template"].shape == (3, 24, 24) and item["scene"].shape == (3, 40, 40) and item["warp"] is False
    x, y, w, h = item["box"].tolist()
    assert (w, h) == (16, 16) and 0 <= x <= 24 and 0 <= y <= 24
    crop = item["scene"][:, round(y) : round(y) + 16, round(x) : round(x) + 16].float()
    assert (crop - item["template"][:, 4:20, 4:20].float()).abs().mean() < 40  # bilinear at a sub-pixel shift


def test_datamodule_trains_on_csv_pairs_and_image_crops(view_pairs):
    dm = TemplatePairsDataModule(root=str(view_pairs / "heldout_pairs.csv"), train_csv=[str(view_pairs / "train_pairs.csv")],
                                 val_csv=str(view_pairs / "val_pairs.csv"), bundled_images=["camera"], crops_per_image=3,
                                 extra_test={"val": str(view_pairs / "val_pairs.csv")}, template_size=24, context=8, scene_size=64,
                                 batch_size=64)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(dm.batch_keys) >= set(batch) - {"set", "row"}
    assert batch["template"].shape[1:] == (3, 40, 40) and batch["scene"].shape[1:] == (3, 64, 64)
    assert int(batch["warp"].sum()) == 3 and len(batch["warp"]) == len(dm.datasets["train"])
    test = next(iter(dm.test_dataloader()))
    assert {"", "val"} >= set(test["set"])
    with pytest.raises(ConfigError, match="template_size"):
        TemplatePairsDataModule(root=str(view_pairs), template_size=48, context=16, scene_size=64)


def test_validation_pictures_are_fixed_warped_pairs_of_images_not_trained_on(view_pairs):
    dm = TemplatePairsDataModule(root=str(view_pairs / "heldout_pairs.csv"), val_csv=str(view_pairs / "val_pairs.csv"),
                                 val_images=["coins"], val_pairs_per_image=4, template_size=24, context=8, scene_size=64)
    dm.setup("fit")
    n_csv = len(read_template_pairs(view_pairs / "val_pairs.csv"))
    val = dm.datasets["val"]
    assert len(val) == n_csv + 4
    items = [val[n_csv + i] for i in range(4)]
    again = val[n_csv + 1]
    assert torch.equal(items[1]["scene"], again["scene"]) and torch.equal(items[1]["box"], again["box"])  # fixed pairs
    for it in items:
        assert it["template"].shape == (3, 40, 40) and it["scene"].shape == (3, 64, 64)
        assert it["template_box"].tolist() == [8.0, 8.0, 24.0, 24.0]
        x, y, w, h = it["box"].tolist()
        assert 0 <= x and 0 <= y and x + w <= 64.01 and y + h <= 64.01
    sides = [float(it["box"][2:].prod().sqrt()) for it in items]
    assert 0.85 * 24 <= sides[1] <= 1.2 * 24  # every other pair moves as little as consecutive frames
    with pytest.raises(ConfigError, match="coins"):
        TemplatePairsDataModule(root=str(view_pairs), val_images=["coins"], bundled_images=["coins", "camera"])


def test_a_template_larger_than_its_scene_names_the_row(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "scene.png")
    Image.fromarray(np.zeros((80, 60, 3), np.uint8)).save(tmp_path / "tmpl.png")
    csv = tmp_path / "pairs.csv"
    csv.write_text("template_image,tx,ty,tw,th,scene_image,x,y,w,h\ntmpl.png,,,,,scene.png,0,0,10,10\n")
    with pytest.raises(DataError, match=r"row 2.*template \(60x80\) is larger than the scene .*scene.png \(40x40\)"):
        read_template_pairs(csv)
