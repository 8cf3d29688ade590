"""Callbacks of the training spine."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import pytorch_lightning as pl
import torch

from neurocorr.errors import ConfigError


def _loss_of(outputs: Any) -> torch.Tensor | None:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping) and isinstance(outputs.get("loss"), torch.Tensor):
        return outputs["loss"]
    return None


class StopOnNonFiniteLoss(pl.Callback):
    """Stop training when the loss became NaN or infinite, and remember that it did.

    The check accumulates on the device and reads the flag once per epoch, so the training
    step never waits on the host. The train task then fails the run (a sweep records the
    trial as failed and goes on).
    """

    def __init__(self) -> None:
        self.failed = False
        self.epoch: int | None = None  # the epoch in which the loss became non-finite
        self._bad: torch.Tensor | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._bad = torch.zeros((), dtype=torch.bool, device=pl_module.device)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = _loss_of(outputs)
        if loss is not None and self._bad is not None:
            self._bad |= ~torch.isfinite(loss.detach()).all()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bad is not None and bool(trainer.strategy.reduce_boolean_decision(bool(self._bad), all=False)):
            self.failed = True
            self.epoch = trainer.current_epoch
            trainer.should_stop = True
            pl_module.print(f"Stopping: the training loss became non-finite in epoch {trainer.current_epoch}.")


class OptunaPruning(pl.Callback):
    """Reports ``monitor`` to an Optuna trial after every validation and stops the run when the
    study's pruner says so (raising :class:`~neurocorr.errors.TrialPruned`). Added by the train task
    to the trials of ``hydra/sweeper=neurocorr_optuna`` sweeps."""

    def __init__(self, storage: str, study: str, trial: int, monitor: str, median: Optional[dict] = None) -> None:
        import optuna

        self.monitor = monitor
        store = optuna.storages.get_storage(storage)
        study_id = store.get_study_id_from_name(study)
        # a study's pruner is not stored with it: the sweeper passes the median pruner's settings
        pruner = optuna.pruners.MedianPruner(**median) if median is not None else optuna.pruners.NopPruner()
        self.trial = optuna.trial.Trial(optuna.load_study(study_name=study, storage=store, pruner=pruner),
                                        store.get_trial_id_from_study_id_trial_number(study_id, int(trial)))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not torch.isfinite(value):
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            from neurocorr.errors import TrialPruned

            raise TrialPruned(f"pruned after epoch {trainer.current_epoch} ({self.monitor} = {float(value):.4g})")


class EpochWeightAverage(pl.Callback):
    """A uniform average of the weights at the end of every training epoch from ``start_epoch`` (0-based)
    on, in the manner of stochastic weight averaging without its learning-rate schedule.

    When training ends the module takes the average (floating-point parameters and buffers, BatchNorm
    statistics included; integer buffers keep their last value) and ``<dirpath>/<filename>`` is written
    (unless a summed epoch held non-finite weights);
    the train task then tests that file instead of the monitored best checkpoint. The running sum is part
    of the callback's state, so a resumed run averages the same epochs as an uninterrupted one. Nothing is
    averaged or written in ``fast_dev_run`` or when no epoch reached ``start_epoch``.
    """

    def __init__(self, dirpath: str, start_epoch: int = 0, filename: str = "average.ckpt") -> None:
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ConfigError(f"callbacks.weight_average.start_epoch must be an epoch index >= 0, got {start_epoch!r}")
        self.dirpath, self.start_epoch, self.filename = str(dirpath), start_epoch, filename
        self.count = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.path: Optional[str] = None  # the averaged checkpoint, once written

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fast_dev_run or trainer.current_epoch < self.start_epoch:
            return
        for name, value in pl_module.state_dict().items():
            if torch.is_floating_point(value):
                value = value.detach().to(torch.float64)
                self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.count += 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.count == 0:
            return
        if not all(bool(torch.isfinite(total).all()) for total in self.sums.values()):
            # a diverged epoch: the run fails on its own (StopOnNonFiniteLoss); no non-finite model is written
            return
        average = {name: (self.sums[name] / self.count).to(value.dtype) if name in self.sums else value
                   for name, value in pl_module.state_dict().items()}
        pl_module.load_state_dict(average)
        path = str(Path(self.dirpath) / self.filename)
        trainer.save_checkpoint(path, weights_only=False)
        self.path = path
        pl_module.print(f"Averaged the weights of {self.count} epochs (from epoch {self.start_epoch}) into {path}")

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sums": dict(self.sums)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.count = int(state_dict.get("count", 0))
        self.sums = dict(state_dict.get("sums", {}))
