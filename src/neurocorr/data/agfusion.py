"""Pair data for the siamese classifier (``agfusion``): synthetic shapes and real class folders.

A batch is a dict: ``image_a``/``image_b`` (B, 3, S, S) uint8, ``label`` (B,) float (1 = same
class), ``class_a``/``class_b`` (B,) long. Images are converted to float and augmented on the
device by the LightningModule.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from neurocorr.data.formats.class_folders import read_class_folders
from neurocorr.data.formats.image import read_image
from neurocorr.data.samplers import EpochSeededRandomSampler
from neurocorr.data.split_loaders import SplitLoaders
from neurocorr.data.synthetic.shapes import shape_pairs
from neurocorr.errors import ConfigError

SPLITS = ("train", "val", "test")


def _stack_batch(items: Any) -> Any:
    """Collate for datasets whose ``__getitems__`` already returns a batched dict."""
    return items


class ShapePairs(Dataset):
    """``length`` pairs of circle/square images; sample ``i`` is a pure function of (seed, i)."""

    def __init__(self, seed: int, length: int, image_size: int = 64, max_angle_deg: float = 0.0) -> None:
        self.seed, self.length, self.image_size = seed, length, image_size
        self.max_angle = math.radians(max_angle_deg)

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return shape_pairs(self.seed, torch.as_tensor(list(indices), dtype=torch.long), self.image_size, self.max_angle)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


class ClassFolderPairs(Dataset):
    """Balanced pairs drawn from class folders: pair ``i`` is a pure function of (seed, i);
    even ``i`` gives a same-class pair, odd ``i`` a different-class pair."""

    def __init__(self, files: list[list[Path]], seed: int, length: int, image_size: int) -> None:
        self.files, self.seed, self.length, self.image_size = files, seed, length, image_size

    def __len__(self) -> int:
        return self.length

    def _draw(self, index: int) -> tuple[int, int, int, int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        n_classes = len(self.files)
        class_a = int(torch.randint(n_classes, (1,), generator=g))
        if index % 2 == 0:
            class_b = class_a
        else:
            class_b = (class_a + 1 + int(torch.randint(n_classes - 1, (1,), generator=g))) % n_classes
        pick = torch.randperm(len(self.files[class_a]), generator=g)[:2].tolist()
        i_a = pick[0]
        i_b = pick[1] if class_b == class_a else int(torch.randint(len(self.files[class_b]), (1,), generator=g))
        return class_a, i_a, class_b, i_b

    def _load(self, path: Path) -> torch.Tensor:
        image = read_image(path, "RGB").unsqueeze(0).float()
        image = F.interpolate(image, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        return image[0].round().clamp(0, 255).to(torch.uint8)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        class_a, i_a, class_b, i_b = self._draw(index)
        return {
            "image_a": self._load(self.files[class_a][i_a]),
            "image_b": self._load(self.files[class_b][i_b]),
            "label": torch.tensor(float(class_a == class_b)),
            "class_a": torch.tensor(class_a),
            "class_b": torch.tensor(class_b),
        }


class PairDataModule(SplitLoaders):
    """Shared loader settings of the pair data modules; subclasses build ``self.datasets``."""

    def __init__(self, batch_size: int = 64, num_workers: int = 0, pin_memory: bool = True, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.num_workers, self.pin_memory, self.seed = batch_size, num_workers, pin_memory, seed
        self.datasets: dict[str, Dataset] = {}

    def _loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        sampler = EpochSeededRandomSampler(len(dataset), self.seed) if split == "train" else None
        batched = hasattr(dataset, "__getitems__")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            collate_fn=_stack_batch if batched else None,
            drop_last=split == "train" and len(dataset) > self.batch_size,
            # the loader's own generator: creating an iterator must not draw from the global RNG,
            # which stays untouched so resumed runs repeat exactly
            generator=torch.Generator().manual_seed(self.seed),
        )


class ShapesDataModule(PairDataModule):
    """Synthetic circle/square pairs; train, val and test use distinct seeds. Squares are
    axis-aligned unless ``max_angle_deg`` > 0 (a much harder task for a stride-4 stem)."""

    def __init__(
        self,
        image_size: int = 64,
        train_size: int = 20000,
        val_size: int = 1000,
        test_size: int = 2000,
        split_seeds: Sequence[int] = (1, 2, 3),
        max_angle_deg: float = 0.0,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        if len(set(split_seeds)) != 3:
            raise ConfigError(f"data.split_seeds must be three distinct seeds, got {list(split_seeds)}")
        sizes = (train_size, val_size, test_size)
        self.datasets = {
            s: ShapePairs(seed, n, image_size, max_angle_deg) for s, seed, n in zip(SPLITS, split_seeds, sizes)
        }
        self.class_names = ["circle", "square"]


class ClassFoldersDataModule(PairDataModule):
    """Real images in ``<root>/<class>/*``: each class's images are split train/val/test by a
    seeded shuffle, then balanced pairs are drawn within each split."""

    def __init__(
        self,
        root: str,
        image_size: int = 64,
        pairs: Sequence[int] = (10000, 1000, 1000),
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        verify_images: bool = True,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) <= 0:
            raise ConfigError(f"data.fractions must be three positive numbers summing to 1, got {list(fractions)}")
        self.class_names, files = read_class_folders(root, min_per_class=6, verify=verify_images)
        split_files: dict[str, list[list[Path]]] = {s: [] for s in SPLITS}
        for class_index, images in enumerate(files):
            g = torch.Generator().manual_seed(self.seed * 7919 + class_index)
            order = [images[i] for i in torch.randperm(len(images), generator=g).tolist()]
            n_train = max(2, int(round(fractions[0] * len(order))))
            n_val = max(2, int(round(fractions[1] * len(order))))
            split_files["train"].append(order[:n_train])
            split_files["val"].append(order[n_train : n_train + n_val])
            split_files["test"].append(order[n_train + n_val :] or order[-2:])
        for i, (split, n) in enumerate(zip(SPLITS, pairs)):
            self.datasets[split] = ClassFolderPairs(split_files[split], self.seed + 101 * (i + 1), n, image_size)
