"""Data for the keypoint detector.

- ``TexturesDataModule`` (``data=textures``): random square crops of a folder of images (or, with
  no folder, of the pictures scikit-image ships). Training batches are ``{"image": (B, C, S, S)
  uint8}``; the random homographic warp is made on the device by the LightningModule. Validation
  and test batches are fixed pairs (seeded crop + seeded homography, rotations 0-360 degrees).
- ``HomographySequencesDataModule`` (``data=homography_sequences``): every (image 1, image k) pair
  of HPatches/Oxford sequences, for evaluation.

Pair batches: ``image1`` (B, C, H, W) uint8, ``image2`` (B, C, H2, W2) uint8, ``H`` (B, 3, 3)
float64 (image 1 -> image 2, pixel centres at integer coordinates), ``sequence`` (list of str),
``pair`` (B,) long (k of image k).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from neurocorr.data.formats.homography_sequences import read_homography_sequences
from neurocorr.data.formats.image import read_image
from neurocorr.data.formats.image_folder import read_image_folder
from neurocorr.data.synthetic.bundled_images import TRAIN_IMAGES, load_bundled
from neurocorr.data.synthetic.homography_sequences import random_homographies
from neurocorr.errors import ConfigError, DataError
from neurocorr.ops.geometry import scale_homography, warp_image


def _limit_size(image: torch.Tensor, max_side: Optional[int]) -> tuple[torch.Tensor, float]:
    """Downscale ``(C, H, W)`` uint8 so its longer side is at most ``max_side``; returns (image, scale)."""
    h, w = image.shape[-2:]
    if not max_side or max(h, w) <= max_side:
        return image, 1.0
    s = max_side / max(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return out.round().clamp(0, 255).to(torch.uint8), s


def load_texture_images(root: Optional[str], names: Sequence[str], grey: bool, max_side: Optional[int],
                        min_side: int) -> list[torch.Tensor]:
    """``(C, H, W)`` uint8 images from ``root`` or, when ``root`` is empty, the bundled pictures ``names``."""
    if root:
        images = [read_image(p, "L" if grey else "RGB") for p in read_image_folder(root)]
    else:
        images = []
        for name in names:
            a = torch.from_numpy(load_bundled(name))[None]
            images.append(a if grey else a.expand(3, -1, -1).contiguous())
    images = [_limit_size(im, max_side)[0] for im in images]
    kept = [im for im in images if min(im.shape[-2:]) >= min_side]
    if not kept:
        raise DataError(f"no image in {root or 'the bundled set'} is at least {min_side} px on its shorter side")
    return kept


def _crop(image: torch.Tensor, size: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    h, w = image.shape[-2:]
    top = int(torch.randint(h - size + 1, (1,), generator=generator))
    left = int(torch.randint(w - size + 1, (1,), generator=generator))
    return image[:, top : top + size, left : left + size]


class RandomCrops(Dataset):
    """``length`` random crops per epoch (fresh randomness from the global RNG, which the
    trainer seeds per epoch)."""

    def __init__(self, images: list[torch.Tensor], crop_size: int, length: int) -> None:
        self.images, self.crop_size, self.length = images, crop_size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.images[int(torch.randint(len(self.images), (1,)))]
        return {"image": _crop(image, self.crop_size, None).contiguous()}


class FixedWarpPairs(Dataset):
    """Pair ``i``: a crop and its warp by a random homography, both pure functions of (seed, i)."""

    def __init__(self, images: list[torch.Tensor], crop_size: int, length: int, seed: int,
                 max_angle_deg: float = 360.0) -> None:
        self.images, self.crop_size, self.length, self.seed = images, crop_size, length, seed
        self.max_angle_deg = max_angle_deg

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        image = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        crop = _crop(image, self.crop_size, g).contiguous()
        H = random_homographies(1, self.crop_size, g, max_angle_deg=self.max_angle_deg, scale=(0.85, 1.15))
        warped = warp_image(crop[None].float(), H.float(), (self.crop_size, self.crop_size))[0]
        return {"image1": crop, "image2": warped.round().clamp(0, 255).to(torch.uint8), "H": H[0],
                "sequence": f"crop{index:03d}", "pair": torch.tensor(2)}


class _Base(pl.LightningDataModule):
    def __init__(self, batch_size: int, num_workers: int, pin_memory: bool, seed: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.num_workers, self.pin_memory, self.seed = batch_size, num_workers, pin_memory, seed

    def _loader(self, dataset: Dataset, batch_size: int, train: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=self.num_workers,
                          pin_memory=self.pin_memory and torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0, drop_last=train)


class TexturesDataModule(_Base):
    """Random crops of texture images for self-supervised training.

    Args:
        root: a flat or nested image folder; empty/None = the bundled scikit-image pictures ``names``.
        crop_size: side of the square crops (px).
        grey: read images as grey (1 channel) or RGB (3).
        train_size: crops per training epoch. val_size/test_size: fixed pairs.
        max_side: images are downscaled so their longer side is at most this (px; None = keep).
        max_angle_deg: rotation range of the fixed validation/test warps.
    """

    def __init__(self, root: Optional[str] = None, names: Sequence[str] = TRAIN_IMAGES, crop_size: int = 96,
                 grey: bool = True, train_size: int = 2000, val_size: int = 64, test_size: int = 32,
                 max_side: Optional[int] = 512, max_angle_deg: float = 360.0, batch_size: int = 16,
                 num_workers: int = 0, pin_memory: bool = True, seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, pin_memory, seed)
        if crop_size < 16:
            raise ConfigError(f"data.crop_size must be >= 16, got {crop_size}")
        self.root, self.names, self.crop_size, self.grey = root, list(names), crop_size, grey
        self.sizes = (train_size, val_size, test_size)
        self.max_side, self.max_angle_deg = max_side, max_angle_deg
        self.images: Optional[list[torch.Tensor]] = None
        if root and not Path(root).is_dir():
            raise DataError(f"data.root {root} does not exist (leave it empty to use the images scikit-image ships)")

    def setup(self, stage: Optional[str] = None) -> None:
        if self.images is None:
            self.images = load_texture_images(self.root, self.names, self.grey, self.max_side, self.crop_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader(RandomCrops(self.images, self.crop_size, self.sizes[0]), self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(FixedWarpPairs(self.images, self.crop_size, self.sizes[1], self.seed + 1, self.max_angle_deg),
                            self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(FixedWarpPairs(self.images, self.crop_size, self.sizes[2], self.seed + 2, self.max_angle_deg),
                            self.batch_size)


class SequencePairs(Dataset):
    """Every (image 1, image k) pair of a list of sequences, images optionally downscaled."""

    def __init__(self, root: str, origin: Any = "auto", grey: bool = True, max_side: Optional[int] = None) -> None:
        self.sequences = read_homography_sequences(root, origin)
        self.pairs = [(s, k) for s in self.sequences for k in range(len(s.homographies))]
        self.grey, self.max_side = grey, max_side

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq, k = self.pairs[index]
        mode = "L" if self.grey else "RGB"
        image1, s1 = _limit_size(read_image(seq.images[0], mode), self.max_side)
        image2, s2 = _limit_size(read_image(seq.images[k + 1], mode), self.max_side)
        H = scale_homography(seq.homographies[k], s1, s2)
        return {"image1": image1, "image2": image2, "H": H, "sequence": seq.name, "pair": torch.tensor(k + 2)}


class HomographySequencesDataModule(_Base):
    """HPatches/Oxford sequences for evaluation (``val`` and ``test`` both yield every pair).

    Args:
        root: one sequence folder or a folder of them.
        origin: ``auto`` or the pixel origin of the homography files (0 or 1).
        max_side: downscale images so their longer side is at most this (px; None = full size).
    """

    def __init__(self, root: str, origin: Any = "auto", grey: bool = True, max_side: Optional[int] = None,
                 batch_size: int = 1, num_workers: int = 0, pin_memory: bool = True, seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, pin_memory, seed)
        self.root, self.origin, self.grey, self.max_side = root, origin, grey, max_side
        self.dataset: Optional[SequencePairs] = None
        if not Path(root).is_dir():
            raise DataError(f"data.root {root} does not exist; make synthetic sequences with "
                            f"python -m neurocorr.data.synthetic.homography_sequences --out {root}")

    def setup(self, stage: Optional[str] = None) -> None:
        if self.dataset is None:
            self.dataset = SequencePairs(self.root, self.origin, self.grey, self.max_side)

    def train_dataloader(self) -> DataLoader:
        raise ConfigError("data=homography_sequences is for evaluation; train with data=textures")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset, 1)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset, 1)
