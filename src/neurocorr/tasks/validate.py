"""Checks of a composed config that need no data and no model: run before anything is created, so
a bad value is one line (``neurocorr: error: ...``) and leaves no run folder and no MLflow run."""

from __future__ import annotations

from numbers import Real
from typing import Any

from omegaconf import DictConfig

from neurocorr.errors import ConfigError
from neurocorr.families import FAMILIES
from neurocorr.tasks.common import choice


def _number(key: str, value: Any, minimum: float, strict: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ConfigError(f"{key} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")


def _integer(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value}")


# (group, key, kind, minimum): kind "pos" = number > minimum, "num" = number >= minimum, "int" = integer >= minimum
CHECKS: tuple[tuple[str, str, str, float], ...] = (
    ("trainer", "max_epochs", "int", -1),
    ("trainer", "min_epochs", "int", 0),
    ("trainer", "num_nodes", "int", 1),
    ("trainer", "log_every_n_steps", "int", 1),
    ("trainer", "check_val_every_n_epoch", "int", 1),
    ("optimizer", "lr", "pos", 0.0),
    ("optimizer", "weight_decay", "num", 0.0),
    ("optimizer", "momentum", "num", 0.0),
    ("scheduler", "step_size", "int", 1),
    ("scheduler", "T_max", "int", 1),
    ("scheduler", "gamma", "pos", 0.0),
    ("scheduler", "patience", "int", 0),
    ("data", "batch_size", "int", 1),
    ("data", "num_workers", "int", 0),
)


def validate_config(cfg: DictConfig) -> None:
    """Refuse, in one line naming the key and the value, what cannot work."""
    experiment, model = choice(cfg, "experiment"), choice(cfg, "model")
    if experiment in FAMILIES and model != experiment:  # a family's default pairing, chosen by model=
        raise ConfigError(f"experiment={experiment} is the default pairing of model={experiment}: "
                          f"use model={experiment} (it picks that pairing), not experiment={experiment}")
    if "seed" in cfg:
        _integer("seed", cfg.seed, 0)
    for group, key, kind, minimum in CHECKS:
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or node.get(key) is None:
            continue
        value, name = node.get(key), f"{group}.{key}"
        if kind == "int":
            _integer(name, value, int(minimum))
        else:
            _number(name, value, minimum, strict=kind == "pos")
    data = cfg.get("data")
    if isinstance(data, DictConfig):
        for key, value in data.items():  # image_size, crop_size, train_size, ...: a size of nothing is a mistake
            if str(key).endswith("_size") and value is not None and not isinstance(value, (list, tuple, DictConfig)) \
                    and not hasattr(value, "__len__"):
                _integer(f"data.{key}", value, 1)
