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
            array = np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"image {path} cannot be read: {err}") from err
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


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
