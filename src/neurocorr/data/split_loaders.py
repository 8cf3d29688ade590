"""The three loader hooks every data module has, each one ``self._loader(split)``."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader


class SplitLoaders(pl.LightningDataModule):
    """A data module whose subclass builds ``_loader(split)`` for ``train``, ``val`` and ``test``."""

    def _loader(self, split: str) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
