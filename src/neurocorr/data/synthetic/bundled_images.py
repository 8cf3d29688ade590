"""Real images that scikit-image ships (no download), for training and synthetic sequences.

``TRAIN_IMAGES`` feed ``data=textures`` by default; ``HELD_OUT_IMAGES`` are kept for the
synthetic evaluation sequences, so a detector is never scored on the images it was trained on.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neurocorr.errors import ConfigError

TRAIN_IMAGES = ("brick", "grass", "gravel", "camera", "coffee", "astronaut", "rocket", "text", "moon", "page",
                "chelsea")
HELD_OUT_IMAGES = ("coins", "cell", "immunohistochemistry", "hubble_deep_field", "retina")


def load_bundled(name: str) -> np.ndarray:
    """A bundled scikit-image picture as an ``(H, W)`` uint8 grey array."""
    import skimage.data
    from skimage.color import rgb2gray, rgba2rgb

    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise ConfigError(f"bundled image {name!r} is not in skimage.data")
    try:
        image = np.asarray(loader())
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
