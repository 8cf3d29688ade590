"""Letterboxing real photos of any size and aspect, and mapping predictions back to their pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neurocorr.data.formats.label_studio import task_to_json, write_label_studio
from neurocorr.data.heatmapper import GaugesDataModule
from neurocorr.models.heatmapper.letterbox import letterbox_geometry, letterbox_image, to_input, to_original


def test_geometry_keeps_the_aspect_and_centres_the_content() -> None:
    assert letterbox_geometry(640, 480, 128) == ((128, 96), (0.2, 0.2), (0, 16))
    assert letterbox_geometry(300, 1000, 100) == ((30, 100), (0.1, 0.1), (35, 0))
    (cw, ch), scale, _ = letterbox_geometry(101, 37, 64)
    assert (cw, ch) == (64, 23) and scale == (64 / 101, 23 / 37)


def test_a_bright_pixel_maps_back_to_its_original_pixel() -> None:
    for w, h, (x, y) in ((640, 480, (500, 100)), (333, 900, (20, 871)), (64, 64, (7, 50))):
        image = torch.zeros(3, h, w, dtype=torch.uint8)
        image[:, y - 3 : y + 4, x - 3 : x + 4] = 255  # a 7 px square, centred on (x, y)
        boxed, scale, offset = letterbox_image(image, 96)
        assert boxed.shape == (3, 96, 96)
        scale_t, offset_t = torch.tensor([scale]), torch.tensor([offset], dtype=torch.float32)
        # the bright blob's centroid in the letterboxed image is where to_input puts (x, y)
        weight = boxed[0].double()
        rows, cols = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
        centroid = torch.tensor([(weight * cols).sum() / weight.sum(), (weight * rows).sum() / weight.sum()])
        expected = to_input(torch.tensor([[float(x), float(y)]]), scale_t[0], offset_t[0])[0]
        assert (centroid - expected.double()).norm() < 0.3, (w, h, centroid, expected)
        # and the centroid maps back to the original pixel
        back = to_original(centroid.float().view(1, 1, 1, 2), scale_t, offset_t)[0, 0, 0]
        assert (back - torch.tensor([float(x), float(y)])).norm() < 0.3 / min(scale), (w, h, back)


def test_data_module_letterboxes_and_carries_the_map_back(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    tasks = []
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(((200, 120), (90, 160), (128, 128), (300, 100)), start=1):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"{i}.png")
        pts = np.array([[0.0, 0.0], [w / 2, h / 3], [w - 1.0, h - 1.0]])
        tasks.append(task_to_json(i, f"images/{i}.png", w, h, pts, [0, 1, 2]))
    export = write_label_studio(tasks, tmp_path / "export.json")
    dm = GaugesDataModule(annotations=str(export), image_size=64, batch_size=4, fractions=(0.5, 0.25, 0.25))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 64, 64) and batch["scale"].shape == batch["offset"].shape == (2, 2)
    ds = dm.datasets["train"]
    for i, task in enumerate(ds.tasks):
        item = ds[i]
        back = to_original(item["points"].unsqueeze(0), item["scale"].unsqueeze(0), item["offset"].unsqueeze(0))[0]
        torch.testing.assert_close(back, torch.from_numpy(task.points).float(), atol=1e-3, rtol=0)
        # the letterbox border is black and the content is not
        ox, oy = item["offset"].long().tolist()
        if ox:
            assert item["image"][:, :, :ox].eq(0).all()
        if oy:
            assert item["image"][:, :oy].eq(0).all()
        assert item["image"].float().mean() > 20
