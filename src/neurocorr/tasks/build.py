"""Building the run's objects from the config, each failure one ConfigError naming the value."""

from __future__ import annotations

import logging
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from neurocorr.checkpoints import check_nested_targets
from neurocorr.data.base import NeurocorrDataModule
from neurocorr.errors import ConfigError
from neurocorr.models.base import NeurocorrModule

log = logging.getLogger("neurocorr")


def build_trainer(trainer_cfg: DictConfig, **kwargs: Any) -> pl.Trainer:
    """Instantiate ``cfg.trainer``; a value Lightning refuses (precision, an accelerator the machine
    lacks) is one ConfigError. ``sync_batchnorm`` is kept only where SyncBatchNorm runs (CUDA)."""
    if trainer_cfg.get("sync_batchnorm") and not (
        str(trainer_cfg.get("accelerator", "auto")) in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    ):
        if rank_zero_only.rank == 0:
            log.warning("trainer.sync_batchnorm needs CUDA devices; batch norm statistics stay per process")
        kwargs["sync_batchnorm"] = False
    try:
        return instantiate(trainer_cfg, **kwargs)
    except InstantiationException as wrapped:
        err = wrapped.__cause__ or wrapped
        if not isinstance(err, (MisconfigurationException, ValueError, TypeError)):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = "; no CUDA device here: use trainer=cpu" if not torch.cuda.is_available() and "gpu" in first.lower() else ""
        raise ConfigError(f"trainer (accelerator={trainer_cfg.get('accelerator')}, precision={trainer_cfg.get('precision')}, "
                          f"devices={trainer_cfg.get('devices')}): {first}{hint}") from err


def build_datamodule(data_cfg: DictConfig | dict, source: str = "data") -> NeurocorrDataModule:
    """Instantiate a data module after checking that its target is one (configs read from checkpoints
    are checked the same way as the command line's)."""
    node = data_cfg if isinstance(data_cfg, DictConfig) else OmegaConf.create(data_cfg)
    target = node.get("_target_")
    check_nested_targets(node, source)
    cls = get_object(str(target)) if target else None
    if not (isinstance(cls, type) and issubclass(cls, NeurocorrDataModule)):
        raise ConfigError(f"{source}._target_ {target!r} is not a neurocorr data module")
    return instantiate(node, _convert_="partial")


def check_pairing(model: NeurocorrModule, datamodule: NeurocorrDataModule, model_name: str, data_name: str) -> None:
    """A model and a data module that cannot work together, named in one line before the run starts."""
    declared = getattr(datamodule, "batch_keys", ())
    missing = model.missing_batch_keys(declared) if declared else []
    if missing:
        raise ConfigError(f"model={model_name} needs batches with {', '.join(missing)}, which data={data_name} "
                          f"({type(datamodule).__name__}) does not yield; choose a data set of that family")
    model.check_data(datamodule)


def check_monitor(model: NeurocorrModule, monitor: Optional[str]) -> None:
    """``model.monitor`` must be something the module logs at validation."""
    names = model.validation_metrics()
    if monitor and monitor not in names:
        raise ConfigError(f"model.monitor={monitor} is not logged by {type(model).__name__}; "
                          f"it logs {', '.join(names)}")
