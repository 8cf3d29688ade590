"""16-bit and float images keep their pixels: scaled to 8 bits, never clipped to all-white or all-black."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurocorr.data.formats.image import read_image
from neurocorr.errors import DataError

RAMP = np.linspace(0, 1, 256)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_16_bit_ramp_reads_as_the_8_bit_ramp(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "ramp16.png"
    Image.fromarray(np.round(RAMP * 65535).astype(np.uint16)[None].repeat(3, 0)).save(path)
    image = read_image(path, mode)
    assert image.shape == (3 if mode == "RGB" else 1, 3, 256)
    assert np.array_equal(image[0, 0].numpy(), np.round(RAMP * 255).astype(np.uint8))


def test_a_float_tiff_ramp_in_0_1_reads_as_the_8_bit_ramp(tmp_path: Path) -> None:
    path = tmp_path / "ramp.tif"
    Image.fromarray(RAMP.astype(np.float32)[None].repeat(2, 0), mode="F").save(path)
    image = read_image(path, "RGB")
    assert np.abs(image[:, 0].numpy().astype(int) - np.round(RAMP * 255)).max() <= 1
    assert (image[0] == image[1]).all() and (image[1] == image[2]).all()


def test_a_float_image_outside_0_1_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "depth.tif"
    Image.fromarray((RAMP * 40).astype(np.float32)[None], mode="F").save(path)
    with pytest.raises(DataError, match=r"depth.tif: float pixels must lie in \[0, 1\], found \[0, 40\]"):
        read_image(path, "L")
