"""Reading image files into uint8 tensors, with one clear error per bad file."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image, read_file

from neurocorr.errors import DataError

# RGB PNG and JPEG decode about twice as fast with torchvision's libpng/libjpeg readers than through
# PIL + numpy, with the same pixels; anything they refuse falls back to PIL, which names the bad
# file. Not for mode L: libjpeg/libpng grey conversion differs from PIL's by a few levels.
FAST_DECODE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
FAST_DECODE_MODES = {"RGB": ImageReadMode.RGB}
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp", ".gif"})


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files in ``folder`` (sorted, so the order is the same on every machine)."""
    files: Iterable[Path] = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if is_image_file(p))


def read_image(path: str | Path, mode: str = "RGB") -> torch.Tensor:
    """Read an image file as a ``(C, H, W)`` uint8 tensor; ``mode`` ``RGB`` (C=3) or ``L`` (C=1).

    Raises :class:`DataError` naming the file when it is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} does not exist")
    if path.suffix.lower() in FAST_DECODE_SUFFIXES and mode in FAST_DECODE_MODES:
        decoded = _decode_with_torchvision(path, mode)
        if decoded is not None:
            return decoded
    try:
        with Image.open(path) as img:
            if img.mode in WIDE_MODES:
                array = _wide_to_uint8(np.asarray(img), img.mode, path)
                array = array if mode == "L" else np.repeat(array[..., None], 3, axis=2)
            else:
                array = np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"image {path} cannot be read: {err}") from err
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


# PIL modes of one-channel images wider than 8 bits: 16-bit integer, 32-bit integer, 32-bit float.
# PIL's convert() to L or RGB clips them to [0, 255] (a 16-bit image reads as all 255, a float one in
# [0, 1] as all 0), so they are scaled here instead.
WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def _wide_to_uint8(array: np.ndarray, pil_mode: str, path: Path) -> np.ndarray:
    """A 16-bit, 32-bit integer or float image as uint8: integers by their type's full range (a 16-bit
    value v -> v / 257), floats in [0, 1] times 255; anything else is refused, naming the file."""
    values = array.astype(np.float64)
    if pil_mode == "F":
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        if not np.isfinite(values).all() or low < 0.0 or high > 1.0:
            raise DataError(f"image {path}: float pixels must lie in [0, 1], found [{low:g}, {high:g}]")
        scaled = values * 255.0
    else:
        high = float(values.max()) if values.size else 0.0
        if values.min() < 0 or high > 65535:
            raise DataError(f"image {path}: {pil_mode} pixels outside 0..65535 cannot be scaled to 8 bits")
        scaled = values / 257.0  # 65535 -> 255, the 16-bit range whether the file is I;16 or I
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _decode_with_torchvision(path: Path, mode: str) -> torch.Tensor | None:
    """``(C, H, W)`` uint8, or ``None`` when torchvision cannot give that (16-bit, corrupt...)."""
    try:
        image = decode_image(read_file(str(path)), mode=FAST_DECODE_MODES[mode])
    except Exception:
        return None
    # torchvision gives a (C, H, W) view of (H, W, C) memory: made contiguous once here, rather than
    # gathered from strides by every batch stack and every op downstream
    return image.contiguous() if image.dtype == torch.uint8 and image.dim() == 3 else None


def check_image(path: Path) -> None:
    """Check a file's header without decoding all of it; raise :class:`DataError` naming it."""
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as err:
        raise DataError(f"image {path} cannot be read: {err}") from err
