"""The one data-module base: loader settings checked once, one DataLoader call, seeded order.

A family's data module fills ``self.datasets`` (split -> Dataset) and declares the keys its
batches carry (``batch_keys``); everything else (the batch-size check, the sampler, the loader's
own generator, pinned memory, dropping the last partial training batch) lives here.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from neurocorr.data.samplers import EpochSeededRandomSampler
from neurocorr.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def batched_collate(items: Any) -> Any:
    """Collate for datasets whose ``__getitems__`` already returns a batched dict."""
    return items


class NeurocorrDataModule(pl.LightningDataModule):
    """Base of every data module.

    Args:
        batch_size: samples per batch (>= 1).
        num_workers: DataLoader worker processes (>= 0; 0 = load in the main process).
        pin_memory: pin host memory when a CUDA device is present.
        seed: seeds the training order (a pure function of seed and epoch) and the loaders' own
            generators, so the global RNG is never drawn from and a resumed run repeats exactly.
        split_seed: seeds which samples make up the validation and test splits and their fixed draws,
            apart from ``seed``: runs with other seeds (a seed sweep) are scored on the same samples,
            and a training sample never moves into another run's test split. ``None`` = ``seed``.
    """

    #: keys of the dict batches this module yields (the model's ``required_batch_keys`` must be among them)
    batch_keys: tuple[str, ...] = ()

    def __init__(self, *, batch_size: int = 8, num_workers: int = 0, pin_memory: bool = True, seed: int = 0,
                 split_seed: Optional[int] = None) -> None:
        super().__init__()
        check_int("data.batch_size", batch_size, minimum=1)
        check_int("data.num_workers", num_workers, minimum=0)
        check_int("data.seed", seed, minimum=0)
        if split_seed is not None:
            check_int("data.split_seed", split_seed, minimum=0)
        self.batch_size, self.num_workers, self.pin_memory, self.seed = batch_size, num_workers, bool(pin_memory), seed
        self.split_seed = seed if split_seed is None else split_seed
        self.datasets: dict[str, Dataset] = {}

    def collate(self, split: str) -> Optional[Callable[[Any], Any]]:
        """The collate function of ``split`` (``None``: torch's default)."""
        return None

    def _loader(self, split: str, collate: Optional[Callable[[Any], Any]] = None) -> DataLoader:
        dataset = self.datasets.get(split)
        if dataset is None or len(dataset) == 0:  # type: ignore[arg-type]
            raise DataError(f"{type(self).__name__}: the {split} split is empty")
        train = split == "train"
        if collate is None:
            collate = self.collate(split)
        if collate is None and hasattr(dataset, "__getitems__"):
            collate = batched_collate
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochSeededRandomSampler(len(dataset), self.seed) if train else None,  # type: ignore[arg-type]
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
            drop_last=train and len(dataset) > self.batch_size,  # type: ignore[arg-type]
            # the loader's own generator: creating an iterator must not draw from the global RNG
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def check_int(key: str, value: Any, minimum: Optional[int] = None) -> int:
    """``value`` as an int no smaller than ``minimum``, or a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value}")
    return value
