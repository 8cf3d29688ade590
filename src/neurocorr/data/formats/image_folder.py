"""Image folders (Fibers, Woods, Flowers style): a flat or nested folder of image files."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from neurocorr.data.formats.image import check_image, list_images
from neurocorr.errors import DataError


def read_image_folder(root: Union[str, Path], verify: bool = False, min_images: int = 1) -> list[Path]:
    """The image files under ``root`` (recursively, sorted). :class:`DataError` if ``root`` is
    missing, holds fewer than ``min_images`` images, or (``verify``) holds an unreadable one."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (leave data.root empty to train on the images "
                        f"scikit-image ships)")
    files = list_images(root, recursive=True)
    if len(files) < min_images:
        raise DataError(f"image folder {root} holds {len(files)} images; at least {min_images} needed")
    if verify:
        for path in files:
            check_image(path)
    return files
