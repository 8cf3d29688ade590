"""Class folders: reading, balanced seeded pairs, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurocorr.data.agfusion import ClassFoldersDataModule
from neurocorr.data.formats.image import read_image
from neurocorr.errors import DataError


def write_class_folders(root: Path, classes: int = 3, per_class: int = 8, size: int = 20) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i}.png")
    return root


def test_pairs_are_balanced_deterministic_and_resized(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "data")
    dm = ClassFoldersDataModule(root=str(root), image_size=16, pairs=(40, 10, 10), batch_size=4, seed=3)
    assert dm.class_names == ["class_0", "class_1", "class_2"]
    train = dm.datasets["train"]
    labels = [float(train[i]["label"]) for i in range(40)]
    assert sum(labels) == 20
    item = train[5]
    assert item["image_a"].shape == (3, 16, 16) and item["image_a"].dtype.is_floating_point is False
    assert float(item["label"]) == float(item["class_a"] == item["class_b"])
    again = ClassFoldersDataModule(root=str(root), image_size=16, pairs=(40, 10, 10), batch_size=4, seed=3)
    assert all((again.datasets["train"][5][k] == item[k]).all() for k in item)


def test_missing_root_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"data root {tmp_path / 'missing'} does not exist"):
        ClassFoldersDataModule(root=str(tmp_path / "missing"))


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "data")
    bad = root / "class_1" / "3.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(DataError, match=str(bad)):
        ClassFoldersDataModule(root=str(root))
    with pytest.raises(DataError, match=str(bad)):
        read_image(bad)


def test_too_few_classes_or_images(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "one", classes=1)
    with pytest.raises(DataError, match="at least two class folders"):
        ClassFoldersDataModule(root=str(root))
    root = write_class_folders(tmp_path / "few", classes=2, per_class=3)
    with pytest.raises(DataError, match="holds 3 images"):
        ClassFoldersDataModule(root=str(root))


def test_fast_rgb_decoding_gives_the_pixels_pil_gives(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    Image.fromarray(pixels).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(pixels).convert("RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(pixels[..., 0].astype(np.uint16) * 200).save(tmp_path / "grey16.png")
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", quality=90)
    for path in sorted(tmp_path.iterdir()):
        for mode in ("RGB", "L"):
            with Image.open(path) as img:
                expected = np.asarray(img.convert(mode))
            image = read_image(path, mode)
            # contiguous (C, H, W): torchvision decodes into (H, W, C) memory, and batches stacked from
            # such strided views cost a gather each (10x a plain stack)
            assert image.is_contiguous(), (path.name, mode, image.stride())
            got = image.numpy()
            got = got[0] if mode == "L" else got.transpose(1, 2, 0)
            assert np.array_equal(got, expected), (path.name, mode)
