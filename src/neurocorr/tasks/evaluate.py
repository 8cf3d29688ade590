"""The evaluate task: test a checkpoint (or an untrained family as a baseline) on a data set.

The model and its data config come from the checkpoint. On the command line:
- ``model.<key>=<value>`` changes a setting of the stored model config (``model.pck_threshold=5``,
  ``model.extraction.method=meanshift``, ``model.top_k=500``); a key the stored config lacks is refused
  in one line listing the valid keys;
- ``data=<set>`` replaces the data set; the preprocessing the checkpoint was trained with
  (``checkpoints.stored_preprocessing``: input size, grey/RGB) is kept unless that key is given too, and a
  difference between the two is one warning naming both values;
- ``data.<key>=<value>`` without ``data=`` changes a setting of the stored data config (for example
  ``data.split=test_all`` to evaluate a whole labelled set).

``conf/evaluate.yaml`` selects ``model: checkpoint`` and ``data: checkpoint`` (registered below): open
nodes, so that Hydra accepts keys it cannot know before the checkpoint is read.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
from hydra.core.config_store import ConfigStore
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict

from neurocorr.checkpoints import (DATA_KEY, build_model, check_nested_targets, checked_target,
                                   model_from_checkpoint, override_config, resolve_ckpt_path, settings_of,
                                   stored_preprocessing)
from neurocorr.errors import ConfigError
from neurocorr.families import family_of
from neurocorr.tasks import common
from neurocorr.tasks.build import build_datamodule, build_trainer, check_pairing
from neurocorr.tasks.validate import validate_config

log = logging.getLogger("neurocorr")

#: the option of the model and data groups that means "what the checkpoint stores" (conf/evaluate.yaml)
FROM_CHECKPOINT = "checkpoint"


def register_configs() -> None:
    """Register ``model/checkpoint`` and ``data/checkpoint``: empty configs whose struct flag is off, so that
    ``model.<key>=`` and ``data.<key>=`` reach the task (Hydra refuses unknown keys of a struct node)."""
    store = ConfigStore.instance()
    for group in ("model", "data"):
        node = OmegaConf.create({})
        OmegaConf.set_struct(node, False)
        store.store(group=group, name=FROM_CHECKPOINT, node=node)


register_configs()  # before @hydra.main composes conf/evaluate.yaml (evaluate.py imports this module first)


def command_line_keys(cfg: DictConfig) -> set[str]:
    """Keys set on the command line (``data.image_size=64`` -> ``data.image_size``), from Hydra's record."""
    from hydra.core.hydra_config import HydraConfig

    try:
        task = list(HydraConfig.get().overrides.task)
    except ValueError:  # composed outside @hydra.main (tests carry the record in cfg)
        task = list(OmegaConf.select(cfg, "hydra.overrides.task", default=None) or [])
    return {str(item).split("=", 1)[0].lstrip("+~") for item in task if "=" in str(item)}


def keep_stored_preprocessing(data_cfg: DictConfig, stored: dict[str, Any], explicit: set[str], data_name: str) -> DictConfig:
    """``data_cfg`` with the checkpoint's preprocessing values where it has the same keys, unless the key was
    given on the command line; one warning per key whose given and stored values differ."""
    out = data_cfg.copy()
    for key, trained in stored.items():
        if key not in data_cfg or data_cfg.get(key) == trained:
            continue
        given = data_cfg.get(key)
        if f"data.{key}" in explicit:
            log.warning("data.%s=%s was given; the checkpoint was trained with data.%s=%s: evaluating at %s",
                        key, given, key, trained, given)
            continue
        log.warning("data.%s: data=%s sets %s, the checkpoint was trained with %s: evaluating at %s "
                    "(pass data.%s=%s to use the other)", key, data_name, given, trained, trained, key, given)
        out[key] = trained
    return out


def data_config(cfg: DictConfig, state: Optional[dict], source: str) -> tuple[DictConfig, str]:
    """The data config to test on and its name: ``data=`` (with the stored preprocessing), or the stored
    data config with ``data.<key>=`` settings applied."""
    given, stored = cfg.get("data"), (state or {}).get(DATA_KEY)
    explicit = command_line_keys(cfg)
    if isinstance(given, DictConfig) and "_target_" in given:
        name = common.choice(cfg, "data") or str(given.get("_target_")).rsplit(".", 1)[-1]
        preprocessing = {k: v for k, v in stored_preprocessing(state or {}).items() if k in given}
        return keep_stored_preprocessing(given, preprocessing, explicit, name), name
    if not stored:
        raise ConfigError(f"{source} stores no data config: pass data=<set> (and its data.root)")
    name = str(stored.get("_target_")).rsplit(".", 1)[-1]
    settings = settings_of(given)
    if settings:
        check_nested_targets(stored, f"{source} data")
        cls = get_object(str(stored.get("_target_")))
        accepted = tuple(k for k in inspect.signature(cls.__init__).parameters if k not in ("self", "base", "loader", "kwargs"))
        stored = override_config(stored, settings, "data", f"the data config in {source} ({name})", accepted)
    return OmegaConf.create(stored), name


def check_family_fit(model: Any, data_cfg: DictConfig, family: str, data_name: str, source: str) -> None:
    """A data set whose batches the model cannot use, in one line naming both, before it is built."""
    check_nested_targets(data_cfg, f"{source} data")  # nothing from a checkpoint is imported unchecked
    cls = get_object(str(data_cfg.get("_target_"))) if data_cfg.get("_target_") else None
    declared = tuple(getattr(cls, "batch_keys", ()) or ())
    missing = model.missing_batch_keys(declared) if declared else []
    if missing:
        raise ConfigError(f"data={data_name} ({cls.__name__}) does not fit the {family} model of {source}: its batches "
                          f"lack {', '.join(missing)}; choose a data set of the {family} family")


def evaluate(cfg: DictConfig) -> Optional[float]:
    """Test a checkpoint on ``cfg.data`` (default: the data config stored in the checkpoint):
    metrics.json and figures in the run folder and in MLflow, in the family's experiment.

    Without ``ckpt_path``, ``model=<family>`` (with its ``backbone=``) evaluates the untrained network."""
    validate_config(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    node = cfg.get("model")
    chosen = node if isinstance(node, DictConfig) and "_target_" in node else None
    settings = settings_of(node)
    ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), Path(cfg.paths.log_dir), checked_target(chosen, "model") if chosen else None)
    state: Optional[dict] = None
    if ckpt is not None:
        model, state = model_from_checkpoint(ckpt, overrides=settings)
        source = f"checkpoint {ckpt}"
    elif chosen:
        model, source = build_model(chosen), "untrained"
    elif settings:
        raise ConfigError(f"model.{next(iter(settings))}=... changes a checkpoint's model: pass ckpt_path=<file|last> "
                          f"(or model=<family> to evaluate an untrained network)")
    else:
        raise ConfigError("evaluate needs ckpt_path=<file|last>, or model=<family> backbone=<name> to evaluate an untrained network")
    family = family_of((model.model_config or {}).get("_target_")) or "model"
    if chosen and chosen.get("_target_") != (model.model_config or {}).get("_target_"):
        raise ConfigError(f"model={chosen.get('_target_')} was given, but {source} holds a {family} model")
    given = cfg.get("data")
    if isinstance(given, DictConfig) and "_target_" in given:  # before any warning about its preprocessing
        check_family_fit(model, given, family, common.choice(cfg, "data") or str(given.get("_target_")), source)
    data_cfg, data_name = data_config(cfg, state, source)
    datamodule = build_datamodule(data_cfg, "data" if "_target_" in (cfg.get("data") or {}) else f"{source} data")
    check_pairing(model, datamodule, family, data_name)
    with open_dict(cfg):  # the run's config.yaml and MLflow params: what was evaluated, not the empty groups
        cfg.model, cfg.data = OmegaConf.create(model.model_config or {}), data_cfg

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
