"""Unlabeled images of a folder (flat or nested) for self-supervised pretraining (``model=dino``).

A batch is ``{"image": (B, 3, S, S) uint8}``. Optionally:
- ``subset``: keep only one split of a class-folder data set, split by group exactly as
  ``data=class_folders`` splits it (e.g. the HDS drawings of the training authors), labels unused;
- ``knn_root``: a labelled class folder for a k-NN probe per epoch (``knn``: a bank from its train
  split, queries from ``knn_split``), read once into memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch.utils.data import Dataset

from neurocorr.data.base import NeurocorrDataModule, check_int
from neurocorr.data.formats.class_folders import read_class_folders, split_class_folders
from neurocorr.data.formats.image_folder import read_image_folder
from neurocorr.data.qatm import load_resized
from neurocorr.errors import ConfigError

log = logging.getLogger(__name__)
SUBSET_KEYS = ("fractions", "group_pattern", "seed", "split")


class ImageFiles(Dataset):
    """Images resized to ``(3, size, size)`` uint8, read when asked for."""

    def __init__(self, files: Sequence[Path], size: int) -> None:
        self.files, self.size = list(files), size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": load_resized(self.files[index], self.size)}


def split_files(root: str | Path, fractions: Sequence[float], seed: int, group_pattern: Optional[str],
                verify: bool) -> tuple[list[str], dict[str, list[list[Path]]]]:
    """Class names and ``files[split][class]`` of a class folder, split as ``data=class_folders`` does."""
    names, files = read_class_folders(root, min_per_class=2, verify=verify)
    return names, split_class_folders(files, fractions, seed, group_pattern).files


class ImageFolderDataModule(NeurocorrDataModule):
    """Unlabeled images under ``root``; a seeded ``val_fraction`` of them validates (and tests).

    Args:
        root: the image folder (any depth).
        image_size: images are resized to this square, px.
        val_fraction: share of the images held out for val/test losses (at least one image).
        subset: ``{fractions, group_pattern, seed, split}``: ``root`` is a class folder; keep only
            ``split`` (train/val/test) of its split by group (as ``data=class_folders``), no labels.
        knn_root, knn_fractions, knn_group_pattern, knn_split: the labelled folder of the k-NN probe.
        verify_images: check every image header up front.
        **loader: batch_size, num_workers, pin_memory, seed, split_seed (see NeurocorrDataModule).
    """

    batch_keys = ("image",)

    def __init__(
        self, *, root: str, image_size: int = 64, val_fraction: float = 0.1, subset: Optional[Mapping[str, Any]] = None,
        knn_root: Optional[str] = None, knn_fractions: Sequence[float] = (0.6, 0.15, 0.25),
        knn_group_pattern: Optional[str] = None, knn_split: str = "val", verify_images: bool = False, **loader: Any,
    ) -> None:
        super().__init__(**loader)
        check_int("data.image_size", image_size, minimum=8)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must lie in (0, 1), got {val_fraction}")
        if knn_split not in ("val", "test"):
            raise ConfigError(f"data.knn_split must be val or test, got {knn_split!r}")
        self.image_size = image_size
        if subset:
            unknown = set(subset) - set(SUBSET_KEYS)
            if unknown or "split" not in subset or subset["split"] not in ("train", "val", "test"):
                raise ConfigError(f"data.subset needs split (train/val/test) and may hold {', '.join(SUBSET_KEYS)}, got {dict(subset)}")
            _, parts = split_files(root, subset.get("fractions", (0.6, 0.15, 0.25)), int(subset.get("seed", self.split_seed)),
                                   subset.get("group_pattern"), verify_images)
            files = sorted(p for per_class in parts[subset["split"]] for p in per_class)
        else:
            files = read_image_folder(root, verify=verify_images, min_images=2)
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        n_val = max(1, int(round(val_fraction * len(files))))
        val = [files[i] for i in order[:n_val]]
        self.datasets = {"train": ImageFiles([files[i] for i in order[n_val:]], image_size),
                         "val": ImageFiles(val, image_size), "test": ImageFiles(val, image_size)}
        self.knn: Optional[dict[str, torch.Tensor]] = None
        if knn_root:
            self.class_names, parts = split_files(knn_root, knn_fractions, self.split_seed, knn_group_pattern, verify_images)
            self.knn = {}
            for name, split in (("bank", "train"), ("query", knn_split)):
                pairs = [(p, c) for c, per_class in enumerate(parts[split]) for p in per_class]
                self.knn[f"{name}_image"] = torch.stack([load_resized(p, image_size) for p, _ in pairs])
                self.knn[f"{name}_label"] = torch.tensor([c for _, c in pairs])
        log.info("image folder %s: %d train / %d val images%s", root, len(self.datasets["train"]), len(val),
                 f"; k-NN probe {len(self.knn['bank_label'])} bank / {len(self.knn['query_label'])} queries" if self.knn else "")
