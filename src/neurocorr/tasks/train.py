"""The train task: fit, test the best checkpoint, return ``metrics[cfg.optimized_metric]``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint

from neurocorr.callbacks import EpochWeightAverage, OptunaPruning, StopOnNonFiniteLoss
from neurocorr.checkpoints import StoreConfigs, build_model, checked_target, resolve_ckpt_path, run_folder_of, stored_configs
from neurocorr.errors import ConfigError, NeurocorrError
from neurocorr.families import family_of
from neurocorr.tasks import common, tracking
from neurocorr.tasks.build import build_datamodule, build_trainer, check_monitor, check_pairing
from neurocorr.tasks.validate import validate_config

log = logging.getLogger("neurocorr")


class TrainingDiverged(NeurocorrError):
    """The training loss became NaN or infinite."""


def _resume_target(cfg: DictConfig, target: str, data_cfg: dict) -> tuple[Optional[Path], Optional[Path]]:
    """(checkpoint to resume, the run folder to continue in) for ``cfg.ckpt_path``."""
    output_dir = Path(cfg.paths.output_dir)
    ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), Path(cfg.paths.log_dir), target,
                             data_cfg if cfg.get("ckpt_path") == "last" else None, exclude=output_dir)
    if ckpt is None:
        return None, None
    stored, _ = stored_configs(ckpt)
    if stored is not None and stored != target:
        raise ConfigError(f"ckpt_path: {ckpt} holds a {family_of(stored) or stored} model; this run trains "
                          f"{family_of(target)} (pass a checkpoint of that family, or model={family_of(stored)})")
    return ckpt, run_folder_of(ckpt)


def train(cfg: DictConfig) -> Optional[float]:
    """Fit, test the best checkpoint, and return ``metrics[cfg.optimized_metric]``.

    Everything that can be checked without training is checked before the run folder gets files
    or an MLflow run exists. ``ckpt_path`` resumes in the run folder that wrote the checkpoint, so
    the best-checkpoint bookkeeping carries on and the test uses the same best checkpoint as an
    uninterrupted run would.
    """
    validate_config(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    target = checked_target(cfg.model, "model")
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    ckpt, resumed_dir = _resume_target(cfg, target, data_cfg)
    if resumed_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(resumed_dir)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = build_datamodule(cfg.data)
    model = build_model(cfg.model)
    check_pairing(model, datamodule, common.choice(cfg, "model") or str(family_of(target)),
                  common.choice(cfg, "data") or str(cfg.data.get("_target_")))
    check_monitor(model, cfg.model.get("monitor"))

    callbacks: list[Callback] = [*common.instantiate_group(cfg.get("callbacks")), StoreConfigs(data_cfg)]
    if cfg.get("optuna"):  # a trial of an Optuna sweep: report per epoch, stop when pruned
        trial = cfg.optuna
        median = OmegaConf.to_container(trial.median_pruner) if trial.get("median_pruner") else None
        callbacks.append(OptunaPruning(str(trial.storage), str(trial.study), int(trial.trial), str(cfg.model.monitor), median))
    uri = common.mlflow_uri(cfg)
    resume_run = None
    if resumed_dir is not None and uri is not None:
        resume_run = tracking.find_run(uri, str(cfg.logger.mlflow.experiment_name), resumed_dir)
    loggers = common.build_loggers(cfg, output_dir, resume_run)
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    trainer = build_trainer(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    if trainer.is_global_zero:
        common.start_runs(loggers, output_dir, uri)
        common.log_run_config(cfg, loggers, output_dir, write=resumed_dir is None)
    if ckpt is not None:
        print(f"[neurocorr] resuming from {ckpt}" + (f" in {resumed_dir}" if resumed_dir else ""), flush=True)

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
        metrics.update(common.scalar_metrics(trainer.callback_metrics))
    diverged = next((cb for cb in callbacks if isinstance(cb, StopOnNonFiniteLoss) and cb.failed), None)

    checkpoints = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]
    checkpoint = next((cb for cb in checkpoints if cb.monitor), checkpoints[0] if checkpoints else None)
    averaged = next((cb.path for cb in callbacks if isinstance(cb, EpochWeightAverage) and cb.path), None)
    # the weight average, when one was written, is the run's model
    best = averaged or (checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None)
    if cfg.get("test", True) and diverged is None:
        if best is None and cfg.get("train", True) and not trainer.fast_dev_run:
            log.warning("no best checkpoint was saved; testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
        metrics.update(common.scalar_metrics(trainer.callback_metrics))
    # DDP: Lightning's launcher re-runs this script for ranks 1..n-1 (with Hydra's run dir, so they
    # share rank 0's folder); files, prints and MLflow artifacts are rank 0's alone
    if not trainer.is_global_zero:
        return None
    if best and cfg.get("export_ckpt"):
        export = Path(cfg.export_ckpt)
        export.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, export.with_suffix(".tmp"))
        export.with_suffix(".tmp").replace(export)
    path = common.save_metrics(metrics, cfg, output_dir, loggers)
    if diverged is not None:
        raise TrainingDiverged(f"the training loss became non-finite in epoch {diverged.epoch}; metrics in {path}")
    value = common.objective(metrics, cfg.get("optimized_metric"))
    print(f"[neurocorr] {cfg.get('optimized_metric')} = {value}; metrics in {path}", flush=True)
    common.CURRENT = common.RunRecord()  # finished: nothing to undo
    return value
