"""Small pieces the tests plug into runs through the config (``+callbacks.x._target_=tests.helpers...``)."""

from __future__ import annotations

import pytorch_lightning as pl


class InterruptAfterEpoch(pl.Callback):
    """Raises KeyboardInterrupt (what Ctrl+C does) when training epoch ``epoch`` has ended and its
    checkpoints are written: an interrupted run, at a known point."""

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt
