"""Small pieces the tests plug into runs through the config (``+callbacks.x._target_=tests.helpers...``)."""

from __future__ import annotations

import pytorch_lightning as pl


class InterruptAfterEpoch(pl.Callback):
    """Raises KeyboardInterrupt (what Ctrl+C does) as the epoch after ``epoch`` starts, when that
    epoch's checkpoints are written: an interrupted run, at a known point. (Lightning runs checkpoint
    callbacks after all others at an epoch's end, so the end of ``epoch`` is too early.)"""

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch + 1:
            raise KeyboardInterrupt
