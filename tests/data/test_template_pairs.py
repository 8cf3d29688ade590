"""Template-pairs CSV reader: good rows, and one clear error per bad row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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
    dm = TemplatePairsDataModule(str(folder), batch_size=2)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert isinstance(batch, list) and batch[0]["scene"].shape == (3, 40, 60)
    with pytest.raises(ConfigError, match="evaluation"):
        dm.train_dataloader()


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"shared sample data not found at {SAMPLE}")
def test_reads_the_real_sample():
    pairs = read_template_pairs(SAMPLE / "pairs.csv")
    assert len(pairs) == 4 and all(p.template_box is None for p in pairs)
    assert pairs[3].box == (40, 100, 45, 20)
