"""Real images that scikit-image ships (no download), for training and synthetic sequences.

``bundled_photos()`` (every photo that loads offline, less ``HELD_OUT_IMAGES``) feeds
``data=textures`` by default; ``HELD_OUT_IMAGES`` are kept for the synthetic evaluation sequences,
so a detector is never scored on the images it was trained on.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neurocorr.errors import ConfigError

HELD_OUT_IMAGES = ("coins", "cell", "immunohistochemistry", "hubble_deep_field", "retina")
# drawings, masks, phantoms, tiny or stacked images: not photos
NOT_PHOTOS = frozenset({"binary_blobs", "checkerboard", "colorwheel", "horse", "logo", "shepp_logan_phantom",
                        "microaneurysms", "lfw_subset", "file_hash", "download_all", "data_dir", "cells3d"})


def bundled_photos(exclude: Sequence[str] = HELD_OUT_IMAGES) -> list[str]:
    """Names of the ``skimage.data`` photos (2-D or colour images of at least 128 px a side) that
    load offline, in ``skimage.data.__all__`` order, less ``exclude``. Stereo pairs count once
    per view (``stereo_motorcycle:0``, ``stereo_motorcycle:1``)."""
    import skimage.data

    names = []
    for name in skimage.data.__all__:
        if name in NOT_PHOTOS or name in exclude:
            continue
        try:
            value = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - needs a download or an optional package
            continue
        views = [f"{name}:{i}" for i in range(2)] if isinstance(value, tuple) else [name]
        first = np.asarray(value[0] if isinstance(value, tuple) else value)
        if first.dtype != bool and first.ndim in (2, 3) and min(first.shape[:2]) >= 128:
            names.extend(views)
    return names


def load_bundled(name: str) -> np.ndarray:
    """A bundled scikit-image picture as an ``(H, W)`` uint8 grey array (``name:i``: view i of a pair)."""
    import skimage.data
    from skimage.color import rgb2gray, rgba2rgb

    base, _, view = name.partition(":")
    loader = getattr(skimage.data, base, None)
    if loader is None:
        raise ConfigError(f"bundled image {name!r} is not in skimage.data")
    try:
        value = loader()
        image = np.asarray(value[int(view or 0)] if isinstance(value, tuple) else value)
    except Exception as err:  # noqa: BLE001 - some need optional downloads
        raise ConfigError(f"bundled image {name!r} cannot be loaded offline: {err}") from err
    if image.ndim == 3:
        if image.shape[-1] == 4:
            image = rgba2rgb(image)
        image = rgb2gray(image)
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-12) * 255.0
        image = image.round().astype(np.uint8)
    return image


def load_many(names: Sequence[str]) -> list[np.ndarray]:
    return [load_bundled(n) for n in names]
