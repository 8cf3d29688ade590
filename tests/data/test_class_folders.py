"""Class folders: reading, balanced seeded pairs, disjoint splits (by image or by group), and clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurocorr.data.agfusion import ClassFoldersDataModule
from neurocorr.data.formats.image import read_image
from neurocorr.data.formats.class_folders import split_counts
from neurocorr.errors import ConfigError, DataError


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
                if img.mode == "I;16":  # scaled by the 16-bit range, where PIL's convert clips to 255
                    grey = np.rint(np.asarray(img).astype(np.float64) / 257).astype(np.uint8)
                    expected = grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)
                else:
                    expected = np.asarray(img.convert(mode))
            image = read_image(path, mode)
            # contiguous (C, H, W): torchvision decodes into (H, W, C) memory, and batches stacked from
            # such strided views cost a gather each (10x a plain stack)
            assert image.is_contiguous(), (path.name, mode, image.stride())
            got = image.numpy()
            got = got[0] if mode == "L" else got.transpose(1, 2, 0)
            assert np.array_equal(got, expected), (path.name, mode)


def write_named(root: Path, names: dict[str, list[str]], size: int = 8) -> Path:
    """``names``: class -> file names; tiny random images."""
    rng = np.random.default_rng(1)
    for cls, files in names.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for name in files:
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / cls / name)
    return root


def split_sets(dm: ClassFoldersDataModule) -> dict[str, set[Path]]:
    return {s: {p for images in dm.split.files[s] for p in images} for s in ("train", "val", "test")}


@pytest.mark.parametrize("per_class", [*range(6, 18), 25, 41])
def test_splits_are_disjoint_and_non_empty_for_every_class_size(tmp_path: Path, per_class: int) -> None:
    """Issue 11 item 8: classes of 6-7 images crashed at validation, 8-12 gave test == val, 13-17
    crashed at test. Every split now holds >= 2 images of every class, no image in two splits."""
    root = write_class_folders(tmp_path / "data", classes=2, per_class=per_class, size=8)
    dm = ClassFoldersDataModule(root=str(root), image_size=8, pairs=(6, 6, 6), batch_size=3)
    sets = split_sets(dm)
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sum(len(s) for s in sets.values()) == 2 * per_class
    for split in ("train", "val", "test"):
        assert all(len(images) >= 2 for images in dm.split.files[split]), (split, per_class)
        for i in range(6):  # every pair can be drawn (same-class pairs need two images)
            item = dm.datasets[split][i]
            assert float(item["label"]) == float(item["class_a"] == item["class_b"])


def test_a_class_below_the_minimum_is_refused_up_front(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "data", classes=2, per_class=5, size=8)
    with pytest.raises(DataError, match=r"class_0 holds 5 images; a train/val/test split needs at least 6"):
        ClassFoldersDataModule(root=str(root))
    # evaluating on the whole folder needs only two images a class
    dm = ClassFoldersDataModule(root=str(root), split="all", pairs=(4, 4, 4), image_size=8)
    assert all(len(images) == 5 for images in dm.split.files["test"])


def test_split_counts_keep_two_per_split_and_add_up() -> None:
    for fractions in [(0.8, 0.1, 0.1), (0.1, 0.45, 0.45), (0.34, 0.33, 0.33), (0.6, 0.1, 0.3)]:
        for n in range(6, 60):
            counts = split_counts(n, fractions)
            assert sum(counts) == n and min(counts) >= 2, (fractions, n, counts)


def hds_names(authors: int, per_author: int = 3) -> dict[str, list[str]]:
    return {cls: [f"{cls}.u{a:02d}.{i:04d}.png" for a in range(authors) for i in range(per_author)]
            for cls in ("ellipse", "rectangle", "triangle")}


def test_group_pattern_keeps_every_author_in_one_split(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_named(tmp_path / "data", hds_names(authors=12))
    pattern = r"^[^.]+\.([^.]+)\."
    with caplog.at_level(logging.INFO):
        dm = ClassFoldersDataModule(root=str(root), image_size=8, pairs=(6, 6, 6), fractions=(0.6, 0.2, 0.2),
                                    group_pattern=pattern, seed=5)
    authors = {s: {p.name.split(".")[1] for p in files} for s, files in split_sets(dm).items()}
    assert not (authors["train"] & authors["val"]) and not (authors["train"] & authors["test"])
    assert not (authors["val"] & authors["test"])
    assert sum(len(a) for a in authors.values()) == 12
    assert all(len(images) >= 2 for s in ("train", "val", "test") for images in dm.split.files[s])
    assert dm.split.groups == {s: len(authors[s]) for s in authors}
    # the split is reported: groups and images per split
    line = next(r.getMessage() for r in caplog.records if "split by group_pattern" in r.getMessage())
    assert f"train {len(authors['train'])} groups / {len(split_sets(dm)['train'])} images" in line
    # the same seed gives the same split; another seed another one
    again = ClassFoldersDataModule(root=str(root), image_size=8, fractions=(0.6, 0.2, 0.2), group_pattern=pattern, seed=5)
    assert split_sets(again) == split_sets(dm)


def test_group_pattern_errors_name_the_pattern_or_file(tmp_path: Path) -> None:
    root = write_named(tmp_path / "data", hds_names(authors=12))
    with pytest.raises(ConfigError, match="data.group_pattern '\\(' is not a regular expression"):
        ClassFoldersDataModule(root=str(root), group_pattern="(")
    with pytest.raises(DataError, match="does not match the file name of .*ellipse.u00.0000.png"):
        ClassFoldersDataModule(root=str(root), group_pattern=r"author=(\w+)")
    few = write_named(tmp_path / "few", hds_names(authors=2, per_author=4))
    with pytest.raises(DataError, match="finds 2 groups"):
        ClassFoldersDataModule(root=str(few), group_pattern=r"^[^.]+\.([^.]+)\.")
    # one author holds nearly everything: no split gives every class two images in every split
    lopsided = write_named(tmp_path / "lopsided", {c: [f"{c}.big.{i}.png" for i in range(20)] + [f"{c}.s{j}.0.png" for j in range(3)]
                                                   for c in ("a", "b")})
    with pytest.raises(DataError, match="no split of the 4 groups"):
        ClassFoldersDataModule(root=str(lopsided), group_pattern=r"^[^.]+\.([^.]+)\.")
