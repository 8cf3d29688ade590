"""Real images that scikit-image ships (no download), for training and synthetic sequences.

``bundled_photos()`` (every photo scikit-image ships, less ``HELD_OUT_IMAGES``) feeds
``data=textures`` by default; ``HELD_OUT_IMAGES`` are kept for the synthetic evaluation sequences,
so a detector is never scored on the images it was trained on.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neurocorr.errors import ConfigError

HELD_OUT_IMAGES = ("coins", "cell", "immunohistochemistry", "hubble_deep_field", "retina")
# the photos scikit-image ships inside its wheel (2-D or colour, at least 128 px a side); the others
# (brain, kidney, lily, ...) are downloaded on first use, so they are never asked for: the training
# set is the same on every machine, and nothing is fetched from the network. Stereo pairs count once
# per view.
SHIPPED_PHOTOS = ("astronaut", "brick", "camera", "cat", "cell", "chelsea", "clock", "coffee", "coins", "grass",
                  "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
                  "stereo_motorcycle:0", "stereo_motorcycle:1", "text")


def bundled_photos(exclude: Sequence[str] = HELD_OUT_IMAGES) -> list[str]:
    """Names of the shipped ``skimage.data`` photos (``SHIPPED_PHOTOS``) less ``exclude``."""
    return [name for name in SHIPPED_PHOTOS if name.split(":")[0] not in exclude]


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
