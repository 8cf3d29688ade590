"""Data for the keypoint detector.

- ``TexturesDataModule`` (``data=textures``): random square crops of real photos (every photo
  scikit-image ships that loads offline, plus any folder given). Training batches are
  ``{"image": (B, C, S, S) uint8}``; the two warped, photometrically changed views are made on the
  device by the LightningModule. Validation and test batches are fixed pairs (seeded crop + seeded
  homography on a zero-padded canvas: rotations 0-360 degrees, zoom 0.5-2).
- ``HomographySequencesDataModule`` (``data=homography_sequences``): every (image 1, image k) pair
  of HPatches/Oxford sequences, for evaluation.

Pair batches: ``image1`` (B, C, H, W) uint8, ``image2`` (B, C, H2, W2) uint8, ``H`` (B, 3, 3)
float64 (image 1 -> image 2, pixel centres at integer coordinates), ``sequence`` (list of str),
``pair`` (B,) long (k of image k).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from neurocorr.data.base import NeurocorrDataModule, check_int

from neurocorr.data.formats.homography_sequences import read_homography_sequences
from neurocorr.data.formats.image import read_image
from neurocorr.data.formats.image_folder import read_image_folder
from neurocorr.data.synthetic.bundled_images import bundled_photos, load_bundled
from neurocorr.data.synthetic.homography_sequences import random_homographies
from neurocorr.errors import ConfigError, DataError
from neurocorr.ops.geometry import scale_homography, warp_image


def limit_size(image: torch.Tensor, max_side: Optional[int]) -> tuple[torch.Tensor, float]:
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
    """``(C, H, W)`` uint8 images from ``root`` (if given) and the bundled pictures ``names``."""
    images = [read_image(p, "L" if grey else "RGB") for p in read_image_folder(root)] if root else []
    for name in names:
        a = torch.from_numpy(load_bundled(name))[None]
        images.append(a if grey else a.expand(3, -1, -1).contiguous())
    images = [limit_size(im, max_side)[0] for im in images]
    kept = [im for im in images if min(im.shape[-2:]) >= min_side]
    if not kept:
        raise DataError(f"no image in {root or 'the bundled set'} is at least {min_side} px on its shorter side")
    return kept


def _crop(image: torch.Tensor, size: int, generator: Optional[torch.Generator], scale: float = 1.0) -> torch.Tensor:
    """A random square crop of ``image`` ``(C, H, W)`` covering ``size * scale`` px (clipped to the
    image), resized to ``size`` when ``scale != 1``."""
    h, w = image.shape[-2:]
    side = max(8, min(h, w, round(size * scale)))
    top = int(torch.randint(h - side + 1, (1,), generator=generator))
    left = int(torch.randint(w - side + 1, (1,), generator=generator))
    crop = image[:, top : top + side, left : left + side]
    if side == size:
        return crop
    out = F.interpolate(crop[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return out.round().clamp(0, 255).to(torch.uint8)


class RandomCrops(Dataset):
    """Crop ``i``: a random image, place and scale (log-uniform in ``scale_range``), a pure function
    of (seed, i). The training order is shuffled per epoch and the model draws fresh warps and
    photometric changes every step, so a fixed set of crops is seen differently each time."""

    def __init__(self, images: list[torch.Tensor], crop_size: int, length: int, seed: int = 0,
                 scale_range: Sequence[float] = (1.0, 1.0)) -> None:
        self.images, self.crop_size, self.length, self.seed = images, crop_size, length, seed
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        image = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        lo, hi = math.log(self.scale_range[0]), math.log(self.scale_range[1])
        scale = math.exp(lo + float(torch.rand((), generator=g)) * (hi - lo))
        return {"image": _crop(image, self.crop_size, g, scale).contiguous()}


class FixedWarpPairs(Dataset):
    """Pair ``i``: a crop and its warp on a zero-padded canvas by a random homography (rotation in
    [0, ``max_angle_deg``], zoom in ``zoom``), both pure functions of (seed, i)."""

    def __init__(self, images: list[torch.Tensor], crop_size: int, length: int, seed: int,
                 max_angle_deg: float = 360.0, zoom: Sequence[float] = (0.5, 2.0)) -> None:
        self.images, self.crop_size, self.length, self.seed = images, crop_size, length, seed
        self.max_angle_deg, self.zoom = max_angle_deg, (float(zoom[0]), float(zoom[1]))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        image = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        crop = _crop(image, self.crop_size, g).contiguous()
        H = random_homographies(1, self.crop_size, g, max_angle_deg=self.max_angle_deg, scale=self.zoom)
        warped = warp_image(crop[None].float(), H.float(), (self.crop_size, self.crop_size))[0]
        return {"image1": crop, "image2": warped.round().clamp(0, 255).to(torch.uint8), "H": H[0],
                "sequence": f"crop{index:03d}", "pair": torch.tensor(2)}


PAIR_KEYS = ("image1", "image2", "H", "sequence", "pair")


class TexturesDataModule(NeurocorrDataModule):
    """Random crops of real photos for self-supervised training.

    Args:
        root: a flat or nested image folder (optional); its images join the bundled ones.
        names: scikit-image pictures to use: a list of names, ``photos`` (every photo scikit-image
            ships that loads offline, except the ones held out for the synthetic sequences) or
            ``[]`` (the folder alone).
        crop_size: side of the square crops (px). crop_scale: (low, high) size of the region a
            crop covers relative to ``crop_size`` (log-uniform), so the content's scale varies.
        grey: read images as grey (1 channel) or RGB (3).
        train_size: crops per training epoch. val_size/test_size: fixed pairs.
        max_side: images are downscaled so their longer side is at most this (px; None = keep).
        max_angle_deg, zoom: rotation range and zoom range of the fixed validation/test warps.
        val_names: scikit-image pictures held out of training for the fixed validation/test pairs
            (None = validate on other crops of the training pictures), so that the checkpoint is
            chosen on pictures the model never saw.
        eval_seed: seeds the fixed validation pairs (the test pairs take ``eval_seed + 1``) apart from
            ``seed``, so that runs trained with different seeds are validated on the same pairs and their
            ``val/*`` figures compare (None: ``split_seed + 1`` and ``+ 2``; ``split_seed`` defaults to ``seed``).
        batch_size, num_workers, pin_memory, seed, split_seed: see :class:`NeurocorrDataModule`.
    """

    batch_keys = ("image", *PAIR_KEYS)

    def __init__(self, *, root: Optional[str] = None, names: Union[str, Sequence[str]] = "photos", crop_size: int = 128,
                 crop_scale: Sequence[float] = (0.7, 1.4), grey: bool = True, train_size: int = 2000,
                 val_size: int = 64, test_size: int = 32, max_side: Optional[int] = 640, max_angle_deg: float = 360.0,
                 zoom: Sequence[float] = (0.5, 2.0), val_names: Optional[Sequence[str]] = None,
                 eval_seed: Optional[int] = None, **base: Any) -> None:
        super().__init__(**base)
        if eval_seed is not None:
            check_int("data.eval_seed", eval_seed, minimum=0)
        self.eval_seed = self.split_seed + 1 if eval_seed is None else eval_seed
        if crop_size < 16:
            raise ConfigError(f"data.crop_size must be >= 16, got {crop_size}")
        if root and not Path(root).is_dir():
            raise DataError(f"data.root {root} does not exist (leave it empty to use the images scikit-image ships)")
        if isinstance(names, str):
            if names != "photos":
                raise ConfigError(f"data.names must be a list of skimage.data names or 'photos', got {names!r}")
            names = bundled_photos()
        if not root and not names:
            raise ConfigError("data.names is empty and data.root is not set: no training images")
        self.root, self.names, self.crop_size, self.grey = root, list(names), crop_size, grey
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.sizes = (train_size, val_size, test_size)
        self.max_side, self.max_angle_deg, self.zoom = max_side, max_angle_deg, (float(zoom[0]), float(zoom[1]))
        self.val_names = list(val_names or [])
        if self.val_names:
            self.names = [n for n in self.names if n not in self.val_names]
            if not root and not self.names:
                raise ConfigError(f"data.val_names={self.val_names} leaves no training picture in data.names")
        self.images: Optional[list[torch.Tensor]] = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.images is None:
            self.images = load_texture_images(self.root, self.names, self.grey, self.max_side, self.crop_size)
            held = (load_texture_images(None, self.val_names, self.grey, self.max_side, self.crop_size)
                    if self.val_names else self.images)
            train, val, test = self.sizes
            self.datasets = {
                "train": RandomCrops(self.images, self.crop_size, train, self.seed, self.crop_scale),
                "val": FixedWarpPairs(held, self.crop_size, val, self.eval_seed, self.max_angle_deg, self.zoom),
                "test": FixedWarpPairs(held, self.crop_size, test, self.eval_seed + 1, self.max_angle_deg, self.zoom),
            }


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
        image1, s1 = limit_size(read_image(seq.images[0], mode), self.max_side)
        image2, s2 = limit_size(read_image(seq.images[k + 1], mode), self.max_side)
        H = scale_homography(seq.homographies[k], s1, s2)
        return {"image1": image1, "image2": image2, "H": H, "sequence": seq.name, "pair": torch.tensor(k + 2)}


class HomographySequencesDataModule(NeurocorrDataModule):
    """HPatches/Oxford sequences for evaluation (``val`` and ``test`` both yield every pair).

    Args:
        root: one sequence folder or a folder of them, or a list of such folders.
        origin: ``auto`` or the pixel origin of the homography files (0 or 1).
        max_side: downscale images so their longer side is at most this (px; None = full size).
        batch_size (1: pairs differ in size), num_workers, pin_memory, seed: see :class:`NeurocorrDataModule`.
    """

    batch_keys = PAIR_KEYS

    def __init__(self, *, root: Union[str, Sequence[str]], origin: Any = "auto", grey: bool = True,
                 max_side: Optional[int] = None, **base: Any) -> None:
        base.setdefault("batch_size", 1)
        super().__init__(**base)
        self.roots = [str(root)] if isinstance(root, (str, Path)) else [str(r) for r in root]
        self.origin, self.grey, self.max_side = origin, grey, max_side
        for r in self.roots:
            if not Path(r).is_dir():
                raise DataError(f"data.root {r} does not exist; make synthetic sequences with "
                                f"python -m neurocorr.data.synthetic.homography_sequences --out {r}")

    def setup(self, stage: Optional[str] = None) -> None:
        if not self.datasets:
            pairs = ConcatDataset([SequencePairs(r, self.origin, self.grey, self.max_side) for r in self.roots])
            self.datasets = {"val": pairs, "test": pairs}

    def train_dataloader(self) -> DataLoader:
        raise ConfigError("data=homography_sequences is for evaluation; train with data=textures")
