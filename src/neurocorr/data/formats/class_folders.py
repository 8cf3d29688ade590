"""Class folders: ``<root>/<class>/*.<image>``; one folder per class, images anywhere below it."""

from __future__ import annotations

from pathlib import Path

from neurocorr.data.formats.image import check_image, list_images
from neurocorr.errors import DataError


def read_class_folders(root: str | Path, min_per_class: int = 2, verify: bool = True) -> tuple[list[str], list[list[Path]]]:
    """Return ``(class_names, files_per_class)``, both sorted.

    Raises :class:`DataError` when ``root`` is missing, has fewer than two classes, a class has
    fewer than ``min_per_class`` images, or (``verify``) an image's header is unreadable.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist (expected <root>/<class>/*.png)")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [list_images(c) for c in classes]
    if len(classes) < 2:
        raise DataError(f"data root {root} needs at least two class folders, found {len(classes)}")
    for folder, images in zip(classes, files):
        if len(images) < min_per_class:
            raise DataError(f"class folder {folder} holds {len(images)} images; at least {min_per_class} are needed")
        if verify:
            for path in images:
                check_image(path)
    return [c.name for c in classes], files
