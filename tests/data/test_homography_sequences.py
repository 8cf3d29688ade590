"""Homography sequence readers (HPatches and Oxford layouts), the synthetic generator, image folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurocorr.data.formats.homography_sequences import read_homography_sequences, read_sequence
from neurocorr.data.formats.image_folder import read_image_folder
from neurocorr.data.synthetic.homography_sequences import main as synth_main
from neurocorr.errors import DataError
from neurocorr.ops.geometry import warp_points
from tests.conftest import SHARED_DATA

BOAT = SHARED_DATA / "oxford_boat"


def test_synthetic_sequences_are_hpatches_layout_and_consistent(tmp_path: Path) -> None:
    synth_main(["--out", str(tmp_path / "seqs"), "--images", "camera,brick", "--size", "48", "--warps", "2",
                "--noise", "0"])
    seqs = read_homography_sequences(tmp_path / "seqs")
    assert [s.name for s in seqs] == ["s_brick", "s_camera"]
    seq = seqs[1]
    assert seq.layout == "hpatches" and [p.name for p in seq.images] == ["1.png", "2.png", "3.png"]
    assert len(seq.homographies) == 2 and seq.homographies[0].dtype == torch.float64
    # the stored H maps image 1 to image 2: pixels agree at points both see
    im1 = np.asarray(Image.open(seq.images[0]), dtype=np.float64)
    im2 = np.asarray(Image.open(seq.images[1]), dtype=np.float64)
    pts = torch.tensor([[x, y] for x in range(12, 36, 3) for y in range(12, 36, 3)], dtype=torch.float64)
    moved = warp_points(pts, seq.homographies[0]).round().long()
    ok = ((moved >= 2) & (moved <= 45)).all(1)
    a = im1[pts[ok, 1].long(), pts[ok, 0].long()]
    b = im2[moved[ok, 1], moved[ok, 0]]
    assert ok.sum() > 10 and np.corrcoef(a, b)[0, 1] > 0.8


def test_synthetic_sequences_never_replace_an_existing_folder(tmp_path: Path) -> None:
    mine = tmp_path / "seqs" / "s_brick"
    mine.mkdir(parents=True)
    (mine / "edited.txt").write_text("mine")
    with pytest.raises(DataError, match="s_brick"):
        synth_main(["--out", str(tmp_path / "seqs"), "--images", "camera,brick", "--size", "32", "--warps", "1"])
    assert [p.name for p in mine.iterdir()] == ["edited.txt"] and not (tmp_path / "seqs" / "s_camera").exists()


def _oxford(folder: Path, ext: str = ".pgm") -> Path:
    folder.mkdir(parents=True)
    for k in range(1, 4):
        Image.fromarray(np.full((10, 12), 40 * k, np.uint8)).save(folder / f"img{k}{ext}")
    for k in range(2, 4):
        (folder / f"H1to{k}p").write_text("1 0 %d\n0 1 0\n0 0 1\n" % k)
    return folder


def test_oxford_layout_any_extension_and_origin(tmp_path: Path) -> None:
    seq = read_sequence(_oxford(tmp_path / "bark", ".png"))
    assert seq.layout == "oxford" and len(seq.images) == 3
    assert seq.homographies[1][0, 2].item() == 3.0
    shifted = read_sequence(tmp_path / "bark", origin=1)  # Matlab-style files: converted (pure shifts are unchanged)
    assert torch.allclose(shifted.homographies[1], seq.homographies[1])


def test_missing_and_malformed_homography_files_are_named(tmp_path: Path) -> None:
    folder = _oxford(tmp_path / "a")
    (folder / "H1to3p").unlink()
    with pytest.raises(DataError, match=r"H1to3p is missing"):
        read_sequence(folder)
    (folder / "H1to3p").write_text("1 0 0\n0 1 x\n")
    with pytest.raises(DataError, match=r"H1to3p is malformed"):
        read_sequence(folder)
    (folder / "H1to3p").write_text("1 0 0\n0 1 0\n")
    with pytest.raises(DataError, match=r"H1to3p is malformed: expected 9 numbers"):
        read_sequence(folder)
    with pytest.raises(DataError, match="does not exist"):
        read_homography_sequences(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no homography sequence"):
        read_homography_sequences(tmp_path / "empty")


def test_image_folder_reader(tmp_path: Path) -> None:
    (tmp_path / "woods" / "oak").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "woods" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "woods" / "oak" / "b.jpg")
    (tmp_path / "woods" / "notes.txt").write_text("x")
    assert [p.name for p in read_image_folder(tmp_path / "woods")] == ["a.png", "b.jpg"]
    (tmp_path / "woods" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png"):
        read_image_folder(tmp_path / "woods", verify=True)
    with pytest.raises(DataError, match="does not exist"):
        read_image_folder(tmp_path / "none")


@pytest.mark.skipif(not BOAT.is_dir(), reason=f"shared sample {BOAT} is absent (it sits beside the repo root)")
def test_real_oxford_boat_sequence(tmp_path: Path) -> None:
    seq = read_sequence(BOAT)
    assert seq.layout == "oxford" and len(seq.images) == 6 and len(seq.homographies) == 5
    assert all(h.shape == (3, 3) and abs(h[2, 2].item() - 1) < 1e-9 for h in seq.homographies)
    # the same sequence copied into a folder of sequences is found by name
    shutil.copytree(BOAT, tmp_path / "boat")
    assert [s.name for s in read_homography_sequences(tmp_path)] == ["boat"]


def test_sequence_module_reads_a_list_of_roots_and_declares_its_keys(tmp_path: Path) -> None:
    from neurocorr.data.detector import HomographySequencesDataModule

    synth_main(["--out", str(tmp_path / "a"), "--images", "camera", "--size", "32", "--warps", "2"])
    _oxford(tmp_path / "b" / "boat")
    dm = HomographySequencesDataModule(root=[str(tmp_path / "a"), str(tmp_path / "b")])
    dm.setup("test")
    batches = list(dm.test_dataloader())
    assert len(batches) == 4 and {b["sequence"][0] for b in batches} == {"s_camera", "boat"}
    assert set(dm.batch_keys) <= set(batches[0]) and batches[0]["H"].dtype == torch.float64
    with pytest.raises(DataError, match="does not exist"):
        HomographySequencesDataModule(root=[str(tmp_path / "a"), str(tmp_path / "none")])


def test_texture_crops_are_seeded_and_mix_a_folder_with_bundled_photos(tmp_path: Path) -> None:
    from neurocorr.data.detector import TexturesDataModule
    from neurocorr.errors import ConfigError

    (tmp_path / "woods").mkdir()
    Image.fromarray((np.random.default_rng(0).random((80, 90)) * 255).astype(np.uint8)).save(tmp_path / "woods" / "a.png")
    dm = TexturesDataModule(root=str(tmp_path / "woods"), names=["camera"], crop_size=32, train_size=6, val_size=2,
                            test_size=2, batch_size=2, seed=3)
    dm.setup("fit")
    assert len(dm.images) == 2                                         # the folder's image and the bundled one
    first, again = next(iter(dm.train_dataloader())), next(iter(dm.train_dataloader()))
    assert first["image"].shape == (2, 1, 32, 32) and torch.equal(first["image"], again["image"])
    pair = next(iter(dm.val_dataloader()))
    assert set(dm.batch_keys) >= set(pair) | {"image"}
    assert (pair["image2"] == 0).float().mean() > 0.01                # zero padding around the warp
    with pytest.raises(ConfigError, match="names"):
        TexturesDataModule(names="all")
    with pytest.raises(ConfigError, match="no training images"):
        TexturesDataModule(names=[])


def test_eval_seed_fixes_the_validation_pairs_whatever_the_training_seed() -> None:
    from neurocorr.data.detector import TexturesDataModule
    from neurocorr.errors import ConfigError

    def module(seed: int, eval_seed: int | None) -> TexturesDataModule:
        dm = TexturesDataModule(names=["camera"], crop_size=32, train_size=2, val_size=2, test_size=2, batch_size=2,
                                max_side=64, seed=seed, eval_seed=eval_seed)
        dm.setup("fit")
        return dm

    a, b = module(1, 43), module(2, 43)
    assert not torch.equal(a.datasets["train"][0]["image"], b.datasets["train"][0]["image"])  # training follows seed
    for split in ("val", "test"):
        assert torch.equal(a.datasets[split][0]["image2"], b.datasets[split][0]["image2"])
    assert not torch.equal(a.datasets["val"][0]["image2"], a.datasets["test"][0]["image2"])
    old = module(42, None)   # unset: seed + 1, the pairs of earlier runs at the default seed
    assert torch.equal(old.datasets["val"][0]["image2"], module(7, 43).datasets["val"][0]["image2"])
    assert not torch.equal(module(1, None).datasets["val"][0]["image2"], module(2, None).datasets["val"][0]["image2"])
    with pytest.raises(ConfigError, match="data.eval_seed"):
        TexturesDataModule(names=["camera"], eval_seed=-1)


def test_validation_pictures_are_held_out_of_training() -> None:
    from neurocorr.data.detector import TexturesDataModule
    from neurocorr.errors import ConfigError

    dm = TexturesDataModule(names=["camera", "brick"], val_names=["brick"], crop_size=32, train_size=2, val_size=2,
                            test_size=2, batch_size=2, max_side=64)
    dm.setup("fit")
    assert dm.names == ["camera"] and len(dm.images) == 1
    held = dm.datasets["val"].images
    assert len(held) == 1 and not torch.equal(held[0], dm.images[0])   # brick for validation, camera for training
    assert dm.datasets["test"].images is held
    with pytest.raises(ConfigError, match="val_names"):
        TexturesDataModule(names=["brick"], val_names=["brick"])
