"""One-factor homography sequences: layout, exact homographies, noise level, bad input, no overwriting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurocorr.data.formats.homography_sequences import read_homography_sequences
from neurocorr.data.synthetic.factor_sequences import (ANGLES_DEG, CORNER_SHIFTS, NOISE_STDS, ZOOMS, main,
                                                        rotations, write_factor_sequences)
from neurocorr.errors import ConfigError, DataError
from neurocorr.ops.geometry import warp_points


def _smooth_picture(path: Path, w: int = 64, h: int = 48) -> Path:
    """A smooth (low-frequency) grey picture, so that resampled pixels can be compared."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    im = 128 + 60 * np.sin(x / 7.0) * np.cos(y / 9.0) + 40 * np.cos((x + y) / 11.0)
    Image.fromarray(im.round().clip(0, 255).astype(np.uint8)).save(path)
    return path


def _agreement(im1: np.ndarray, im2: np.ndarray, H: torch.Tensor) -> tuple[int, float]:
    """(points compared, correlation) of image 1's pixels and image 2's pixels where H sends them."""
    h, w = im1.shape
    pts = torch.tensor([[x, y] for x in range(4, w - 4, 2) for y in range(4, h - 4, 2)], dtype=torch.float64)
    moved = warp_points(pts, H).round().long()
    ok = ((moved[:, 0] >= 1) & (moved[:, 0] <= w - 2) & (moved[:, 1] >= 1) & (moved[:, 1] <= h - 2))
    a = im1[pts[ok, 1].long(), pts[ok, 0].long()]
    b = im2[moved[ok, 1], moved[ok, 0]]
    return int(ok.sum()), float(np.corrcoef(a, b)[0, 1]) if ok.sum() > 2 else 0.0


def test_every_factor_writes_readable_sequences_whose_homographies_hold(tmp_path: Path) -> None:
    pic = _smooth_picture(tmp_path / "pic.png")
    main(["--out", str(tmp_path / "out"), "--images", str(pic)])
    counts = {"rotation": len(ANGLES_DEG), "zoom": len(ZOOMS), "noise": len(NOISE_STDS), "viewpoint": len(CORNER_SHIFTS)}
    for factor, n in counts.items():
        (seq,) = read_homography_sequences(tmp_path / "out" / factor)
        assert seq.name == f"{factor}_pic" and seq.layout == "hpatches"
        assert len(seq.images) == n + 1 and len(seq.homographies) == n
        im1 = np.asarray(Image.open(seq.images[0]), dtype=np.float64)
        for k, H in enumerate(seq.homographies[:3], start=1):  # the milder changes: enough pixels in common
            im2 = np.asarray(Image.open(seq.images[k]), dtype=np.float64)
            assert im2.shape == im1.shape
            seen, corr = _agreement(im1, im2, H)
            assert seen > 20 and corr > (0.9 if factor != "noise" else 0.7), (factor, k, seen, corr)


def test_rotation_by_90_degrees_is_exact_on_a_square_picture() -> None:
    image = torch.rand(1, 9, 9, generator=torch.Generator().manual_seed(0)) * 255
    turned, Hs = rotations(image, np.random.default_rng(0))
    i90 = ANGLES_DEG.index(90)
    # x' = c - (y - c), y' = c + (x - c): the picture turns clockwise on screen (y points down)
    assert np.allclose(Hs[i90], [[0, -1, 8], [1, 0, 0], [0, 0, 1]])
    assert torch.allclose(turned[i90], torch.rot90(image, k=-1, dims=(-2, -1)), atol=1e-3)


def test_noise_has_the_stated_std_and_the_identity_homography(tmp_path: Path) -> None:
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(tmp_path / "grey.png")
    (seq,) = write_factor_sequences(tmp_path / "out", [str(tmp_path / "grey.png")], factors=["noise"])
    for k, std in enumerate(NOISE_STDS, start=2):
        im = np.asarray(Image.open(seq / f"{k}.png"), dtype=np.float64)
        assert abs(im.std() - std) < 0.2 * std
        assert np.allclose(np.loadtxt(seq / f"H_1_{k}"), np.eye(3))


def test_zoom_homography_maps_pixel_centres(tmp_path: Path) -> None:
    pic = _smooth_picture(tmp_path / "pic.png", 40, 40)
    (seq,) = write_factor_sequences(tmp_path / "out", [str(pic)], factors=["zoom"])
    H = np.loadtxt(seq / "H_1_3")  # zoom 0.75: 40 px -> 30 px centred at offset 5
    assert np.allclose(H, [[0.75, 0, 0.5 * 0.75 - 0.5 + 5], [0, 0.75, 0.5 * 0.75 - 0.5 + 5], [0, 0, 1]])
    # the outer corners of the picture land on the outer corners of the shrunk copy
    assert np.allclose(H @ [-0.5, -0.5, 1], [4.5, 4.5, 1]) and np.allclose(H @ [39.5, 39.5, 1], [34.5, 34.5, 1])


def test_bad_factor_and_unreadable_picture_write_nothing(tmp_path: Path) -> None:
    pic = _smooth_picture(tmp_path / "pic.png")
    with pytest.raises(ConfigError, match="spin"):
        write_factor_sequences(tmp_path / "out", [str(pic)], factors=["spin"])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png"):
        write_factor_sequences(tmp_path / "out", [str(pic), str(bad)])
    assert not (tmp_path / "out").exists()


def test_an_existing_sequence_is_never_overwritten(tmp_path: Path) -> None:
    pic = _smooth_picture(tmp_path / "pic.png")
    mine = tmp_path / "out" / "zoom" / "zoom_pic"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="zoom_pic"):
        write_factor_sequences(tmp_path / "out", [str(pic)])
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "out" / "rotation").exists()  # checked before anything was written


def test_same_file_names_in_two_folders_get_the_folder_name(tmp_path: Path) -> None:
    (tmp_path / "v_a").mkdir()
    (tmp_path / "v_b").mkdir()
    a, b = _smooth_picture(tmp_path / "v_a" / "1.png"), _smooth_picture(tmp_path / "v_b" / "1.png", 50, 40)
    written = write_factor_sequences(tmp_path / "out", [str(a), str(b)], factors=["rotation"])
    assert [p.name for p in written] == ["rotation_v_a_1", "rotation_v_b_1"]
    with pytest.raises(ConfigError, match="more than once"):
        write_factor_sequences(tmp_path / "other", [str(a), str(a)], factors=["rotation"])
    assert not (tmp_path / "other").exists()
