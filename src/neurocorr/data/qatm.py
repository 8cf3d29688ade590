"""Data for the ``qatm`` family.

``University1652DataModule``: training batches are dicts ``drone``/``satellite`` ``(B, 3, S, S)``
uint8 and ``label`` ``(B,)`` long (building index); validation and test batches are retrieval
items ``image`` ``(B, 3, S, S)`` uint8, ``label`` ``(B,)``, ``role`` ``(B,)`` (0 query, 1 gallery)
and ``index`` ``(B,)`` (the image's identity, for excluding a query's own image).

``TemplatePairsDataModule``: template localisation pairs (see :mod:`neurocorr.data.qatm_pairs` for
the batch layouts): evaluation pairs from CSVs, and, for training the matcher, fixed-size pairs from
template-pairs CSVs plus self-supervised crops of any images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from neurocorr.data.base import NeurocorrDataModule
from neurocorr.data.formats.image import read_image
from neurocorr.data.formats.university1652 import check_root, paired_buildings, read_split, require_view
from neurocorr.data.qatm_pairs import (CsvTrainingPairs, ImageCrops, PairItems, WarpedValidationPairs, collate_pairs,
                                       load_image_sources)
from neurocorr.errors import ConfigError

VIEWS = ("drone", "satellite", "street", "google")


def load_resized(path: Path, size: int) -> torch.Tensor:
    """Read an image as ``(3, size, size)`` uint8 (antialiased bilinear)."""
    image = read_image(path, "RGB")
    if image.shape[-2:] == (size, size):
        return image
    out = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


class ImageCache:
    """Decoded, resized images kept in memory (``max_images`` at most), so later epochs skip decoding."""

    def __init__(self, image_size: int, max_images: int = 0) -> None:
        self.image_size, self.max_images = image_size, max_images
        self.images: dict[Path, torch.Tensor] = {}

    def __call__(self, path: Path) -> torch.Tensor:
        image = self.images.get(path)
        if image is None:
            image = load_resized(path, self.image_size)
            if len(self.images) < self.max_images:
                self.images[path] = image
        return image


class CrossViewPairs(Dataset):
    """Every image of the query view paired with its building's image of the other view."""

    def __init__(self, pairs: list[tuple[Path, Path, int]], image_size: int, cache_images: int = 0) -> None:
        self.pairs, self.image_size = pairs, image_size
        self.load = ImageCache(image_size, cache_images)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a, b, label = self.pairs[i]
        return {"drone": self.load(a), "satellite": self.load(b), "label": torch.tensor(label)}


class RetrievalItems(Dataset):
    """Query and gallery images in one list, flagged by ``role``."""

    def __init__(self, items: list[tuple[Path, int, int]], image_size: int) -> None:
        self.items, self.image_size = items, image_size
        ids: dict[Path, int] = {}
        self.identity = [ids.setdefault(p.resolve(), len(ids)) for p, _, _ in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        path, label, role = self.items[i]
        return {"image": load_resized(path, self.image_size), "label": torch.tensor(label), "role": torch.tensor(role), "index": torch.tensor(self.identity[i])}


def retrieval_items(queries: dict[str, list[Path]], gallery: dict[str, list[Path]], labels: dict[str, int]) -> list[tuple[Path, int, int]]:
    """Items grouped by building (its queries, then its gallery images), so that every batch
    holds both roles; gallery buildings without queries (distractors) come last."""
    items = []
    for b in sorted(queries):
        items += [(p, labels.setdefault(b, len(labels)), 0) for p in queries[b]]
        items += [(p, labels[b], 1) for p in gallery.get(b, [])]
    for b in sorted(set(gallery) - set(queries)):
        items += [(p, labels.setdefault(b, len(labels)), 1) for p in gallery[b]]
    return items


class University1652DataModule(NeurocorrDataModule):
    """University-1652 (real or synthetic): train on query/gallery view pairs, test with the official
    protocol ``test/query_<query>`` -> ``test/gallery_<gallery>``.

    Args:
        root: the folder holding ``train/`` and ``test/``.
        image_size: images are resized to this square side.
        query, gallery: views, ``drone`` -> ``satellite`` by default (swap them for the reverse).
        val_fraction: share of training buildings held out for validation (their query images
            against their gallery images).
        cache_images: keep up to this many decoded training images in memory (0 = none).
        batch_size, num_workers, pin_memory, seed, split_seed: see :class:`NeurocorrDataModule`.
    """

    batch_keys = ("drone", "satellite", "label", "image", "role", "index")

    def __init__(
        self, *, root: str, image_size: int = 128, query: str = "drone", gallery: str = "satellite",
        val_fraction: float = 0.1, cache_images: int = 0, **base: Any,
    ) -> None:
        super().__init__(**{"batch_size": 16, **base})
        for key, view in (("query", query), ("gallery", gallery)):
            if view not in VIEWS:
                raise ConfigError(f"data.{key} must be one of {VIEWS}, got {view!r}")
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        self.root, self.image_size, self.query, self.gallery, self.val_fraction = Path(root), image_size, query, gallery, val_fraction
        self.cache_images = int(cache_images)
        check_root(self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        train_dir = self.root / "train"
        if train_dir.is_dir() or stage in (None, "fit", "validate"):
            views = read_split(self.root, "train")
            q, g = require_view(views, self.query, train_dir), require_view(views, self.gallery, train_dir)
            ids = paired_buildings(q, g, train_dir / self.query)
            order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
            n_val = int(round(self.val_fraction * len(ids))) if len(ids) > 2 else 0
            val_ids = sorted(ids[i] for i in order[:n_val])
            train_ids = sorted(ids[i] for i in order[n_val:])
            pairs = []
            for label, b in enumerate(train_ids):
                for k, p in enumerate(q[b]):
                    pairs.append((p, g[b][k % len(g[b])], label))
            self.datasets["train"] = CrossViewPairs(pairs, self.image_size, self.cache_images)
            val_ids = val_ids or train_ids[: max(1, len(train_ids) // 10)]
            self.datasets["val"] = RetrievalItems(retrieval_items({b: q[b] for b in val_ids}, {b: g[b] for b in val_ids}, {}), self.image_size)
        test_dir = self.root / "test"
        if test_dir.is_dir() or stage == "test":
            views = read_split(self.root, "test")
            q = require_view(views, f"query_{self.query}", test_dir)
            g = require_view(views, f"gallery_{self.gallery}", test_dir)
            self.datasets["test"] = RetrievalItems(retrieval_items(q, g, {}), self.image_size)


class TemplatePairsDataModule(NeurocorrDataModule):
    """Template localisation pairs.

    Args:
        root: the evaluation pairs (test): a template-pairs CSV, or a folder holding ``csv``.
        extra_test: more evaluation sets ``{name: csv}``, reported as ``test/<name>/...``.
        train_csv: template-pairs CSVs to train the matcher on (optional).
        val_csv: pairs for validation (default: the evaluation pairs of ``root``).
        val_images: scikit-image picture names (not trained on) whose fixed warped crops join the
            validation pairs (``val_pairs_per_image`` each): the checkpoint is chosen, and
            ``model.match.min_score=auto`` calibrated, on pictures as well as on ``val_csv``.
        image_folders, bundled_images: images (folders, or scikit-image picture names) whose crops
            become self-supervised pairs (``crops_per_image`` each per epoch).
        template_size, context, scene_size: training pair sizes in pixels (must match ``model.pairs``).
        batch_size, num_workers, pin_memory, seed, split_seed: see :class:`NeurocorrDataModule`.
    """

    batch_keys = ("template", "scene", "box", "template_box", "warp", "set")

    def __init__(
        self, *, root: str, csv: str = "pairs.csv", extra_test: Optional[dict[str, str]] = None,
        train_csv: Optional[Sequence[str]] = None, val_csv: Optional[str] = None,
        val_images: Optional[Sequence[str]] = None, val_pairs_per_image: int = 8,
        image_folders: Optional[Sequence[str]] = None, bundled_images: Optional[Sequence[str]] = None,
        crops_per_image: int = 16, template_size: int = 48, context: int = 16, scene_size: int = 128, **base: Any,
    ) -> None:
        super().__init__(**{"batch_size": 4, "pin_memory": False, **base})
        self.csv_path = self._csv(root, csv)
        self.extra_test = {str(k): self._csv(v, csv) for k, v in (extra_test or {}).items()}
        self.train_csv = [self._csv(p, csv) for p in ([train_csv] if isinstance(train_csv, str) else train_csv or [])]
        self.val_csv = self._csv(val_csv, csv) if val_csv else None
        self.image_folders, self.bundled_images = list(image_folders or []), list(bundled_images or [])
        self.val_images, self.val_pairs_per_image = list(val_images or []), int(val_pairs_per_image)
        shared = sorted(set(self.val_images) & set(self.bundled_images))
        if shared:
            raise ConfigError(f"data.val_images {shared} are also in data.bundled_images: validation pictures must not be trained on")
        self.crops_per_image = int(crops_per_image)
        self.sizes = (int(template_size), int(context), int(scene_size))
        if self.sizes[0] + 2 * self.sizes[1] > self.sizes[2]:
            raise ConfigError(f"data.template_size + 2 * data.context must be <= data.scene_size, got {self.sizes}")

    @staticmethod
    def _csv(path: str, name: str) -> Path:
        p = Path(path).expanduser()
        return p if p.suffix.lower() == ".csv" else p / name

    @property
    def trains(self) -> bool:
        return bool(self.train_csv or self.image_folders or self.bundled_images)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        test = PairItems(self.csv_path)
        sets: list[Dataset] = [test] + [PairItems(p, name) for name, p in self.extra_test.items()]
        val: Dataset = PairItems(self.val_csv) if self.val_csv else test
        if self.val_images:
            t, c, s = self.sizes
            pictures = WarpedValidationPairs(load_image_sources([], self.val_images), t, c, s, self.val_pairs_per_image, seed=self.split_seed)
            val = ConcatDataset([val, pictures])
        self.datasets = {"test": ConcatDataset(sets), "val": val}
        if self.trains and stage in (None, "fit"):
            t, c, s = self.sizes
            parts: list[Dataset] = []
            if self.train_csv:
                parts.append(CsvTrainingPairs(self.train_csv, t, c, s, self.seed))
            images = load_image_sources(self.image_folders, self.bundled_images)
            if images:
                parts.append(ImageCrops(images, t, c, s, self.crops_per_image, seed=self.seed))
            self.datasets["train"] = ConcatDataset(parts)

    def collate(self, split: str) -> Optional[Callable[[Any], Any]]:
        return None if split == "train" else collate_pairs

    def train_dataloader(self) -> DataLoader:
        if not self.trains:
            raise ConfigError("data=template_pairs trains only with data.train_csv, data.image_folders or "
                              "data.bundled_images; without them it is for evaluation (python evaluate.py ...)")
        return self._loader("train")
