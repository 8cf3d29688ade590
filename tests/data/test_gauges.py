"""The synthetic gauge generator and the gauges data module."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocorr.data.formats.label_studio import read_label_studio
from neurocorr.data.heatmapper import GaugesDataModule, collate_keypoints
from neurocorr.data.synthetic.gauges import main, make_dataset, render_gauges
from neurocorr.errors import DataError
from tests.data.test_gauges_generator import one_thread  # noqa: F401 - autouse: one torch thread


def test_rendered_gauges_have_start_middle_end_on_dark_ticks() -> None:
    out = render_gauges(torch.Generator().manual_seed(0), 4, 96)
    assert out.images.shape == (4, 3, 96, 96) and out.images.dtype == torch.uint8
    for i in range(4):
        labels = out.labels[i][out.labels[i] >= 0]
        assert (labels == 0).sum() == 1 and (labels == 2).sum() == 1 and (labels == 1).sum() >= 3
        pts = out.points[i][out.labels[i] >= 0]
        assert ((pts > 0) & (pts < 95)).all()
    again = render_gauges(torch.Generator().manual_seed(0), 4, 96)
    assert torch.equal(out.images, again.images)  # a pure function of the seed


def test_make_dataset_writes_label_studio_exports_and_refuses_to_overwrite(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "g", n_train=3, n_val=2, n_test=2, size=48)
    tasks = {s: read_label_studio(root / s / "export.json") for s in ("train", "val", "test")}
    assert [len(t) for t in tasks.values()] == [3, 2, 2]
    assert all(t.image.is_file() and (t.width, t.height) == (48, 48) for ts in tasks.values() for t in ts)
    # distinct seeds per split
    assert not np.allclose(tasks["train"][0].points[:1], tasks["val"][0].points[:1])
    with pytest.raises(DataError, match="not empty"):
        make_dataset(root, 1, 1, 1, 48)
    assert main([str(root), "--train", "1", "--val", "1", "--test", "1", "--size", "48"]) == 2
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no half-written folder left


def test_data_module_batches_and_missing_root(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "g", n_train=3, n_val=2, n_test=2, size=64)
    dm = GaugesDataModule(root=str(root), image_size=32, batch_size=2)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["image"].dtype == torch.uint8
    assert batch["points"].shape[:2] == batch["labels"].shape and batch["labels"].dtype == torch.long
    # points are scaled with the image: (x + 0.5) * 32 / 64 - 0.5
    task = dm.datasets["train"].tasks[0]
    item = dm.datasets["train"][0]
    torch.testing.assert_close(item["points"], (torch.from_numpy(task.points) + 0.5) * 0.5 - 0.5)
    with pytest.raises(DataError, match="python -m neurocorr.data.synthetic.gauges"):
        GaugesDataModule(root=str(tmp_path / "nothing"))


def test_setup_preloads_the_stage_splits_and_names_a_bad_image(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "g", n_train=3, n_val=2, n_test=2, size=64)
    dm = GaugesDataModule(root=str(root), image_size=32, batch_size=2)
    dm.setup("fit")
    assert len(dm.datasets["train"]._images) == 3 and len(dm.datasets["val"]._images) == 2
    assert not dm.datasets["test"]._images  # not needed for fit
    # preloaded pixels are the ones a lazy read gives
    lazy = GaugesDataModule(root=str(root), image_size=32, batch_size=2, cache=False)
    assert torch.equal(dm.datasets["train"][1]["image"], lazy.datasets["train"][1]["image"])
    lazy.setup("fit")
    assert not lazy.datasets["train"]._images  # cache=false decodes on every access
    # a broken test image fails at setup("test"), naming its file
    bad = dm.datasets["test"].tasks[0].image
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=bad.name):
        GaugesDataModule(root=str(root), image_size=32, batch_size=2).setup("test")


def test_collate_pads_points_with_zeros_and_labels_with_minus_one() -> None:
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    items = [{"image": image, "points": torch.full((n, 2), float(n + 1)), "labels": torch.full((n,), n, dtype=torch.long)}
             for n in (2, 0, 3)]
    batch = collate_keypoints(items)
    assert batch["image"].shape == (3, 3, 4, 4) and batch["points"].shape == (3, 3, 2)
    assert batch["labels"].tolist() == [[2, 2, -1], [-1, -1, -1], [3, 3, 3]]
    assert batch["points"][0, :2].eq(3).all() and batch["points"][0, 2].eq(0).all() and batch["points"][2].eq(4).all()
    empty = collate_keypoints([items[1], items[1]])  # no points at all: still one (padding) slot
    assert empty["points"].shape == (2, 1, 2) and empty["labels"].tolist() == [[-1], [-1]]


def test_a_split_without_keypoints_is_refused(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "g", n_train=3, n_val=2, n_test=2, size=48)
    val = root / "val" / "export.json"
    tasks = json.loads(val.read_text())
    for task in tasks:
        task["annotations"][0]["result"] = []
    val.write_text(json.dumps(tasks))
    with pytest.raises(DataError, match=re.escape(f"{val} holds no keypoints")):
        GaugesDataModule(root=str(root), image_size=32, batch_size=2)
