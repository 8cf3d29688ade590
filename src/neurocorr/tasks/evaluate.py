"""The evaluate task: test a checkpoint (or an untrained family as a baseline) on a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from neurocorr.checkpoints import DATA_KEY, build_model, checked_target, model_from_checkpoint, resolve_ckpt_path
from neurocorr.errors import ConfigError
from neurocorr.families import family_of
from neurocorr.tasks import common
from neurocorr.tasks.build import build_datamodule, build_trainer, check_pairing
from neurocorr.tasks.validate import validate_config


def evaluate(cfg: DictConfig) -> Optional[float]:
    """Test a checkpoint on ``cfg.data`` (default: the data config stored in the checkpoint):
    metrics.json and figures in the run folder and in MLflow, in the family's experiment.

    Without ``ckpt_path``, ``model=<family>`` (with its ``backbone=``) evaluates the untrained network."""
    validate_config(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    chosen = cfg.get("model")
    ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), Path(cfg.paths.log_dir), checked_target(chosen, "model") if chosen else None)
    if ckpt is not None:
        model, state = model_from_checkpoint(ckpt)
        stored_data = state.get(DATA_KEY)
        source = f"checkpoint {ckpt}"
    elif chosen:
        model, stored_data, source = build_model(chosen), None, "untrained"
    else:
        raise ConfigError("evaluate needs ckpt_path=<file|last>, or model=<family> backbone=<name> to evaluate an untrained network")
    family = family_of((model.model_config or {}).get("_target_")) or "model"
    if chosen and chosen.get("_target_") != (model.model_config or {}).get("_target_"):
        raise ConfigError(f"model={chosen.get('_target_')} was given, but {source} holds a {family} model")
    data_cfg = cfg.get("data") or (OmegaConf.create(stored_data) if stored_data else None)
    if data_cfg is None:
        raise ConfigError(f"{source} stores no data config: pass data=<set> (and its data.root)")
    datamodule = build_datamodule(data_cfg, "data" if cfg.get("data") else f"{source} data")
    data_name = common.choice(cfg, "data") or str(data_cfg.get("_target_")).rsplit(".", 1)[-1]
    check_pairing(model, datamodule, family, data_name)

    uri = common.mlflow_uri(cfg)
    loggers = common.build_loggers(cfg, output_dir, experiment_name=f"neurocorr-{family}")
    trainer = build_trainer(cfg.trainer, logger=loggers or False, callbacks=[])
    if trainer.is_global_zero:
        common.start_runs(loggers, output_dir, uri)
        common.log_run_config(cfg, loggers, output_dir)
        print(f"[neurocorr] evaluating {family} from {source} on {data_name}", flush=True)
    trainer.test(model, datamodule=datamodule)
    if not trainer.is_global_zero:
        return None
    metrics = common.scalar_metrics(trainer.callback_metrics)
    for key, value in sorted(metrics.items()):
        print(f"[neurocorr] {key:32s} {value:.4f}")
    common.save_metrics(metrics, cfg, output_dir, loggers)
    # the checkpoint was chosen on val/<x>; evaluation reports test/<x>
    name = cfg.get("optimized_metric") or str(model.monitor)
    name = "test/" + name.split("/", 1)[1] if name.startswith("val/") else name
    common.CURRENT = common.RunRecord()
    return common.objective(metrics, name)
