"""NeurocorrModule's training-mean logging."""

from __future__ import annotations

import functools

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from neurocorr.models.base import NeurocorrModule


class _Linear(NeurocorrModule):
    def __init__(self) -> None:
        super().__init__(optimizer=functools.partial(torch.optim.SGD, lr=0.1))
        self.net = torch.nn.Linear(3, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = (self.net(x).squeeze(1) - y).pow(2).mean()
        self.log_train_mean("train/ours", loss, x.shape[0], prog_bar=True)
        self.log("train/lightning", loss, on_step=False, on_epoch=True, batch_size=x.shape[0])
        return loss


def test_log_train_mean_is_lightnings_batch_weighted_epoch_mean(tmp_path) -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(10, 3), torch.randn(10))
    module = _Linear()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(data, batch_size=4))  # batches of 4, 4 and 2: the weights matter
    metrics = trainer.callback_metrics
    torch.testing.assert_close(metrics["train/ours"], metrics["train/lightning"])
    assert "train/ours" in trainer.progress_bar_metrics
    assert module._train_sums == {}  # reset for the next epoch
