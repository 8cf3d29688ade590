"""Data for the ``qatm`` family.

``University1652DataModule``: training batches are dicts ``drone``/``satellite`` ``(B, 3, S, S)``
uint8 and ``label`` ``(B,)`` long (building index); validation and test batches are retrieval
items ``image`` ``(B, 3, S, S)`` uint8, ``label`` ``(B,)``, ``role`` ``(B,)`` (0 query, 1 gallery)
and ``index`` ``(B,)`` (the image's identity, for excluding a query's own image).

``TemplatePairsDataModule``: evaluation only; each batch is a list of dicts ``template``
``(3, h, w)`` uint8, ``template_box`` ``(4,)`` float (NaN = whole image), ``scene`` ``(3, H, W)``
uint8, ``box`` ``(4,)`` float xywh, ``row`` int.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from neurocorr.data.formats.image import read_image
from neurocorr.data.formats.template_pairs import read_template_pairs
from neurocorr.data.formats.university1652 import check_root, paired_buildings, read_split, require_view
from neurocorr.data.samplers import EpochSeededRandomSampler
from neurocorr.data.split_loaders import SplitLoaders
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


class _Loaders(SplitLoaders):
    def __init__(self, batch_size: int, num_workers: int, pin_memory: bool, seed: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.num_workers, self.pin_memory, self.seed = batch_size, num_workers, pin_memory, seed
        self.datasets: dict[str, Dataset] = {}

    def _loader(self, split: str, collate: Any = None) -> DataLoader:
        ds = self.datasets[split]
        train = split == "train"
        return DataLoader(
            ds, batch_size=self.batch_size, sampler=EpochSeededRandomSampler(len(ds), self.seed) if train else None,
            num_workers=self.num_workers, pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0, drop_last=train and len(ds) > self.batch_size, collate_fn=collate,
        )


class University1652DataModule(_Loaders):
    """University-1652 (real or synthetic): train on query/gallery view pairs, test with the official
    protocol ``test/query_<query>`` -> ``test/gallery_<gallery>``.

    Args:
        root: the folder holding ``train/`` and ``test/``.
        image_size: images are resized to this square side.
        query, gallery: views, ``drone`` -> ``satellite`` by default (swap them for the reverse).
        val_fraction: share of training buildings held out for validation (their query images
            against their gallery images).
        cache_images: keep up to this many decoded training images in memory (0 = none).
    """

    def __init__(
        self, root: str, image_size: int = 128, query: str = "drone", gallery: str = "satellite",
        val_fraction: float = 0.1, batch_size: int = 16, num_workers: int = 0, pin_memory: bool = True, seed: int = 0,
        cache_images: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, seed)
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
            order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(self.seed)).tolist()
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


class TemplatePairsDataset(Dataset):
    def __init__(self, csv_path: str | Path) -> None:
        self.pairs = read_template_pairs(csv_path)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = self.pairs[i]
        return {
            "template": read_image(p.template_image), "scene": read_image(p.scene_image),
            "template_box": torch.tensor(p.template_box if p.template_box else [float("nan")] * 4),
            "box": torch.tensor(p.box), "row": p.row, "template_name": p.template_image.name,
        }


def _as_list(items: Sequence[Any]) -> list[Any]:
    return list(items)


class TemplatePairsDataModule(_Loaders):
    """Template localisation pairs from a CSV (evaluation: ``val`` and ``test`` read the same rows)."""

    def __init__(self, root: str, csv: str = "pairs.csv", batch_size: int = 4, num_workers: int = 0, pin_memory: bool = False, seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, pin_memory, seed)
        path = Path(root).expanduser()
        self.csv_path = path if path.suffix.lower() == ".csv" else path / csv

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            ds = TemplatePairsDataset(self.csv_path)
            self.datasets = {"val": ds, "test": ds}

    def train_dataloader(self) -> DataLoader:
        raise ConfigError("data=template_pairs is for evaluation (python evaluate.py ...); train qatm with data=university1652")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", _as_list)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", _as_list)
