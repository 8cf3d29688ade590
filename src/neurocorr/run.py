"""The two tasks behind the entry points: ``train(cfg)`` and ``evaluate(cfg)``.

Both instantiate everything from the Hydra config with ``hydra.utils.instantiate``, print
where their outputs and MLflow run are, and return the metric named by ``optimized_metric``
so that any Hydra sweeper can optimise it.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import Logger, MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from neurocorr.callbacks import StopOnNonFiniteLoss
from neurocorr.errors import ConfigError, NeurocorrError
from neurocorr.host_memory import keep_freed_host_memory
from neurocorr.models.base import NeurocorrModule
from neurocorr.viz.artifacts import log_artifact

log = logging.getLogger("neurocorr")
CONFIG_KEY = "neurocorr_model_config"


# ----------------------------------------------------------------------------- helpers


def instantiate_group(group: Optional[DictConfig]) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, logger) that has a target."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become their string form."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree if isinstance(tree, (int, float, str, bool)) or tree is None else str(tree)}


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Tensors and numbers of a Lightning metrics dict as plain floats."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = float(value)
        elif isinstance(value, (int, float)):
            out[key] = float(value)
    return out


def write_json(data: dict[str, Any], path: Path) -> Path:
    """Write JSON through a temporary file, so no half-written file is left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def mlflow_loggers(loggers: list[Logger]) -> list[MLFlowLogger]:
    return [lg for lg in loggers if isinstance(lg, MLFlowLogger)]


def announce(output_dir: Path, loggers: list[Logger]) -> None:
    """Print where the run's outputs and its MLflow run are."""
    print(f"[neurocorr] output folder: {output_dir}", flush=True)
    for lg in mlflow_loggers(loggers):
        uri = lg._tracking_uri  # the sqlite URI we passed in
        print(f"[neurocorr] MLflow run {lg.run_id} in experiment '{lg._experiment_name}' ({uri}); "
              f"browse with: mlflow ui --backend-store-uri {uri}", flush=True)


def log_run_config(cfg: DictConfig, loggers: list[Logger], output_dir: Path) -> None:
    """Log the flattened params and the full resolved config (as an artifact)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    path = output_dir / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    params = {k: v for k, v in flatten(resolved).items() if not k.startswith("hydra.")}
    for lg in loggers:
        lg.log_hyperparams(params)
    for lg in mlflow_loggers(loggers):
        log_artifact([lg], path)
        tags = {"neurocorr.model": str(cfg.model.get("_target_", "")), "neurocorr.output_dir": str(output_dir)}
        tags.update({f"tag.{t}": "1" for t in cfg.get("tags") or []})
        for key, value in tags.items():
            lg.experiment.set_tag(lg.run_id, key, value)


def resolve_ckpt_path(ckpt_path: Optional[str], log_dir: Path, model_target: Optional[str]) -> Optional[str]:
    """``None`` -> None; ``"last"`` -> the newest ``last.ckpt`` under ``log_dir`` written by the
    same model class; anything else must be an existing file."""
    if ckpt_path in (None, "", "null"):
        return None
    if str(ckpt_path) == "last":
        found = sorted(log_dir.rglob("checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in found:
            if model_target is None or _stored_target(path) in (None, model_target):
                return str(path)
        raise ConfigError(f"ckpt_path=last: no last.ckpt of {model_target} under {log_dir}; train first or pass a path")
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path: checkpoint {path} does not exist")
    return str(path)


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``, or fail naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"ckpt_path: cannot read checkpoint {path}: {err}") from err


def _stored_target(path: Path) -> Optional[str]:
    try:
        return load_checkpoint(str(path)).get(CONFIG_KEY, {}).get("_target_")
    except ConfigError:
        return None


def build_model(model_cfg: DictConfig) -> NeurocorrModule:
    model = instantiate(model_cfg, _convert_="partial")
    if not isinstance(model, NeurocorrModule):
        raise ConfigError(f"model._target_ {model_cfg.get('_target_')} is not a NeurocorrModule")
    model.model_config = OmegaConf.to_container(model_cfg, resolve=True)
    return model


def build_trainer(trainer_cfg: DictConfig, **kwargs: Any) -> pl.Trainer:
    """Instantiate ``cfg.trainer``. ``sync_batchnorm`` is kept only where SyncBatchNorm runs (CUDA):
    DDP on CPUs (gloo processes, ``trainer=ddp trainer.accelerator=cpu``) keeps per-process statistics."""
    if trainer_cfg.get("sync_batchnorm") and not (
        str(trainer_cfg.get("accelerator", "auto")) in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    ):
        if rank_zero_only.rank == 0:
            log.warning("trainer.sync_batchnorm needs CUDA devices; batch norm statistics stay per process")
        kwargs["sync_batchnorm"] = False
    return instantiate(trainer_cfg, **kwargs)


def finish(
    metrics: dict[str, float], cfg: DictConfig, output_dir: Path, loggers: list[Logger], failed: bool,
    metric_name: Optional[str] = None,
) -> Optional[float]:
    """Write metrics.json (and ``metrics_file``), log it, set the MLflow status; return
    ``metrics[metric_name]`` (default ``cfg.optimized_metric``)."""
    path = write_json(metrics, output_dir / "metrics.json")
    if cfg.get("metrics_file"):
        write_json(metrics, Path(cfg.metrics_file))
    for lg in mlflow_loggers(loggers):
        log_artifact([lg], path)
        if failed:
            lg.experiment.set_terminated(lg.run_id, status="FAILED")
    name = metric_name or cfg.get("optimized_metric")
    if not name:
        return None
    if failed:
        return float("nan")
    if name not in metrics:
        log.warning("optimized_metric %s was not logged; logged: %s", name, ", ".join(sorted(metrics)))
        return None
    return metrics[name]


# ----------------------------------------------------------------------------- tasks


def train(cfg: DictConfig) -> Optional[float]:
    """Fit, test the best checkpoint, and return ``metrics[cfg.optimized_metric]``."""
    keep_freed_host_memory()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    model = build_model(cfg.model)
    callbacks: list[Callback] = instantiate_group(cfg.get("callbacks"))
    loggers: list[Logger] = instantiate_group(cfg.get("logger"))
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), Path(cfg.paths.log_dir), cfg.model.get("_target_"))
    trainer = build_trainer(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    if trainer.is_global_zero:
        announce(output_dir, loggers)
        log_run_config(cfg, loggers, output_dir)
    if ckpt_path:
        print(f"[neurocorr] resuming from {ckpt_path}", flush=True)

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    failed = any(isinstance(cb, StopOnNonFiniteLoss) and cb.failed for cb in callbacks)

    checkpoints = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]
    checkpoint = next((cb for cb in checkpoints if cb.monitor), checkpoints[0] if checkpoints else None)
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    if cfg.get("test", True) and not failed:
        if best is None and cfg.get("train", True) and not trainer.fast_dev_run:
            log.warning("no best checkpoint was saved; testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    # DDP: Lightning's launcher re-runs this script for ranks 1..n-1 (with Hydra's run dir, so they
    # share rank 0's folder); files, prints and MLflow artifacts are rank 0's alone
    if not trainer.is_global_zero:
        return None
    if best and cfg.get("export_ckpt"):
        export = Path(cfg.export_ckpt)
        export.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, export.with_suffix(".tmp"))
        export.with_suffix(".tmp").replace(export)
    value = finish(metrics, cfg, output_dir, loggers, failed)
    print(f"[neurocorr] {cfg.get('optimized_metric')} = {value}; metrics in {output_dir / 'metrics.json'}", flush=True)
    return value


def evaluate(cfg: DictConfig) -> Optional[float]:
    """Test a checkpoint on ``cfg.data``: metrics.json and figures in the run folder and MLflow.

    The model is rebuilt from the config stored in the checkpoint, so ``model=`` need not be given.
    """
    keep_freed_host_memory()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), Path(cfg.paths.log_dir), None)
    if ckpt_path is None:
        raise ConfigError("ckpt_path: evaluate needs a checkpoint (ckpt_path=<file> or ckpt_path=last)")
    checkpoint = load_checkpoint(ckpt_path)
    stored = checkpoint.get(CONFIG_KEY)
    model_cfg = OmegaConf.create(stored) if stored else cfg.model
    model = build_model(model_cfg)
    model.load_state_dict(checkpoint["state_dict"])
    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    loggers: list[Logger] = instantiate_group(cfg.get("logger"))
    trainer = build_trainer(cfg.trainer, logger=loggers or False, callbacks=[])
    if trainer.is_global_zero:
        announce(output_dir, loggers)
        log_run_config(cfg, loggers, output_dir)
    trainer.test(model, datamodule=datamodule)
    if not trainer.is_global_zero:
        return None
    metrics = scalar_metrics(trainer.callback_metrics)
    for key, value in sorted(metrics.items()):
        print(f"[neurocorr] {key:32s} {value:.4f}")
    # the checkpoint was chosen on val/<x>; evaluation reports test/<x>
    name = cfg.get("optimized_metric") or str(model.monitor)
    name = "test/" + name.split("/", 1)[1] if name.startswith("val/") else name
    return finish(metrics, cfg, output_dir, loggers, failed=False, metric_name=name)


# ----------------------------------------------------------------------------- CLI glue


def cli(task: Callable[[DictConfig], Optional[float]]) -> Callable[[DictConfig], Optional[float]]:
    """Wrap a task for ``@hydra.main``: a :class:`NeurocorrError` becomes one line on stderr and
    exit status 2, and the run folder it left (holding only Hydra's own files) is removed."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Optional[float]:
        try:
            return task(cfg)
        except Exception as err:
            cause = user_error(err)
            if cause is None:
                raise
            _remove_empty_run_dir(cfg)
            print(f"neurocorr: error: {cause}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper


def user_error(err: BaseException) -> Optional[NeurocorrError]:
    """The :class:`NeurocorrError` behind ``err`` (Hydra wraps errors raised while instantiating)."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, NeurocorrError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _remove_empty_run_dir(cfg: DictConfig) -> None:
    try:
        output_dir = Path(cfg.paths.output_dir)
    except Exception:
        return
    if output_dir.is_dir() and not any(p.suffix == ".ckpt" for p in output_dir.rglob("*")):
        logging.shutdown()
        shutil.rmtree(output_dir, ignore_errors=True)
