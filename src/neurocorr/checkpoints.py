"""Checkpoints: the stored configs, safe reading, ``ckpt_path=last``, a model rebuilt from a file.

A checkpoint written by a neurocorr run holds plain data only (tensors, numbers, strings, lists,
dicts), so it is always read with ``torch.load(weights_only=True)``: no code in a file ever runs.
It also carries the resolved model config (``CONFIG_KEY``) and data config (``DATA_KEY``). A stored
``_target_`` is instantiated only after it is checked against the registered families.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Optional

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

import pytorch_lightning as pl

from neurocorr.errors import ConfigError, NeurocorrError
from neurocorr.files import load_torch_file
from neurocorr.families import FAMILIES, family_of
from neurocorr.models.base import NeurocorrModule

log = logging.getLogger("neurocorr")

CONFIG_KEY = "neurocorr_model_config"
DATA_KEY = "neurocorr_data_config"
RUN_CONFIG = "config.yaml"  # the resolved config every run writes in its folder


class StoreConfigs(pl.Callback):
    """Writes the module's resolved model config and the run's data config into every checkpoint."""

    def __init__(self, data_config: Optional[dict]) -> None:
        self.data_config = data_config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        model_config = getattr(pl_module, "model_config", None)
        if model_config is not None:
            checkpoint[CONFIG_KEY] = model_config
        if self.data_config is not None:
            checkpoint[DATA_KEY] = self.data_config


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``, or fail in one line naming the file."""
    try:
        state = load_torch_file(path)
    except (ValueError, OSError) as err:
        raise ConfigError(f"ckpt_path: cannot read checkpoint {path}: {err}") from err
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ConfigError(f"ckpt_path: {path} is not a Lightning checkpoint (no state_dict)")
    return state


def checked_target(model_cfg: Any, source: str) -> str:
    """The ``_target_`` of ``model_cfg`` if it names a registered family (and every nested target is
    one neurocorr builds with), else one ConfigError; nothing is instantiated."""
    target = model_cfg.get("_target_") if isinstance(model_cfg, (dict, DictConfig)) else None
    if family_of(target) is None:
        known = ", ".join(sorted(FAMILIES))
        raise ConfigError(f"{source}: model _target_ {target!r} is not a neurocorr family ({known}); refusing to build it")
    check_nested_targets(model_cfg, source)
    return str(target)


def check_nested_targets(node: Any, source: str, path: str = "") -> None:
    """Refuse a config whose ``_target_`` anywhere is not a class from neurocorr, a registered
    family's package, ``torch.nn`` or ``torch.optim`` (or a backbone factory of ``neurocorr.backbones``): a config read from a file
    must not be able to call an arbitrary function (``shutil.rmtree``, ``pathlib.Path.touch``)."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and not _allowed_target(str(target)):
            raise ConfigError(f"{source}: {path or 'config'}._target_ {target!r} is not a class neurocorr builds; refusing it")
        for key, value in node.items():
            check_nested_targets(value, source, f"{path}.{key}" if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_nested_targets(value, source, f"{path}[{i}]")


_ALLOWED_PREFIXES = ("neurocorr.", "torch.nn.", "torch.optim.")


def _allowed_target(target: str) -> bool:
    family_packages = tuple(f"{path.split('.', 1)[0]}." for path in FAMILIES.values())  # plugin families
    if not target.startswith(_ALLOWED_PREFIXES + family_packages):
        return False  # nothing outside these packages is even imported
    try:
        obj = get_object(target)  # imports the module (only neurocorr's or torch's), calls nothing
    except Exception:
        return False
    if isinstance(obj, type):
        return True
    return target.startswith("neurocorr.backbones.") and callable(obj)  # backbone factories build modules


def build_model(model_cfg: DictConfig | dict, source: str = "model") -> NeurocorrModule:
    """Instantiate a family's module from its config, after checking its target; store the config."""
    cfg = model_cfg if isinstance(model_cfg, DictConfig) else OmegaConf.create(model_cfg)
    checked_target(cfg, source)
    try:
        model = instantiate(cfg, _convert_="partial")
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, NeurocorrError):
            raise cause from err
        reason = str(cause or err).strip().splitlines()[0] if str(cause or err).strip() else type(cause).__name__
        raise ConfigError(f"{source}: cannot build {cfg.get('_target_')}: {reason}") from err
    if not isinstance(model, NeurocorrModule):  # a registered path that is not a module: a bug, still refused
        raise ConfigError(f"{source}: {cfg.get('_target_')} is not a NeurocorrModule")
    model.model_config = OmegaConf.to_container(cfg, resolve=True)
    return model


def constructor_keywords(target: str) -> tuple[str, ...]:
    """The keyword arguments of a checked model target's constructor (its own, not its nested modules'):
    a checkpoint saved before one of them existed still takes it as an override (its default applied
    otherwise)."""
    try:
        params = inspect.signature(get_object(target)).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: no keywords known
        return ()
    return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self")


def nested_constructor_keywords(config: dict, path: str = "") -> tuple[str, ...]:
    """Dotted keys (``net.harris_skip_form``) of the constructor keywords of every nested ``_target_`` node
    of a model config whose targets :func:`checked_target` has passed, the top level's without a prefix:
    the settings any part of the model may take, including ones added after a checkpoint was saved."""
    keys: list[str] = []
    target = config.get("_target_")
    if target is not None:
        keys += [f"{path}{k}" for k in constructor_keywords(str(target))]
    for key, value in config.items():
        if isinstance(value, dict):
            keys += nested_constructor_keywords(value, f"{path}{key}.")
    return tuple(keys)


def model_from_checkpoint(path: str | Path, fallback: Optional[DictConfig] = None,
                          overrides: Optional[dict] = None) -> tuple[NeurocorrModule, dict[str, Any]]:
    """Rebuild the module stored in ``path`` (its config and weights); returns it and the checkpoint.
    ``overrides`` (nested, e.g. ``{"pck_threshold": 5}``) replace values of the stored model config
    before it is built (see :func:`override_config`)."""
    state = load_checkpoint(path)
    stored = state.get(CONFIG_KEY)
    if stored is None and fallback is None:
        raise ConfigError(f"ckpt_path: {path} holds no neurocorr model config; pass model=<family> with it")
    config = stored if stored is not None else fallback
    if overrides:
        base = OmegaConf.to_container(config, resolve=False) if isinstance(config, DictConfig) else config
        checked_target(base, f"checkpoint {path}")
        newer = nested_constructor_keywords(base)  # settings added after it was saved
        config = override_config(base, overrides, "model", f"the {family_of(base.get('_target_')) or 'model'} config in {path}",
                                 newer)
    model = build_model(config, source=f"checkpoint {path}")
    missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    if missing or unexpected:
        detail = ", ".join([f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in unexpected[:3]])
        raise ConfigError(f"ckpt_path: the weights in {path} do not fit {type(model).__name__} ({detail})")
    return model, state


def stored_configs(path: Path) -> tuple[Optional[str], Optional[dict]]:
    """(model target, data config) stored in a checkpoint; raises ConfigError if unreadable."""
    state = load_checkpoint(path)
    model_cfg = state.get(CONFIG_KEY) or {}
    return model_cfg.get("_target_"), state.get(DATA_KEY)


def resolve_ckpt_path(
    ckpt_path: Optional[str], log_dir: Path, model_target: Optional[str] = None,
    data_cfg: Optional[dict] = None, exclude: Optional[Path] = None,
) -> Optional[Path]:
    """``None`` -> None; a path -> that file (it must exist); ``"last"`` -> the newest readable
    ``last.ckpt`` under ``log_dir`` of the same model (and the same data config when given).

    ``last`` refuses, in one line, when the newest run of that model and data has no checkpoint yet
    (resuming an older run instead would be a silent surprise) or when nothing matches."""
    if ckpt_path in (None, "", "null"):
        return None
    if str(ckpt_path) != "last":
        path = Path(str(ckpt_path)).expanduser()
        if not path.is_file():
            raise ConfigError(f"ckpt_path: checkpoint {path} does not exist")
        return path
    found = sorted(log_dir.rglob("checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    chosen: Optional[Path] = None
    other: list[str] = []
    for path in found:
        try:
            target, data = stored_configs(path)
        except ConfigError as err:
            log.warning("ckpt_path=last: skipping %s", err)
            continue
        if model_target is not None and target != model_target:
            other.append(f"{path} ({target})")
            continue
        if data_cfg is not None and data != data_cfg:
            other.append(f"{path} (other data config)")
            continue
        chosen = path
        break
    what = f"{model_target or 'any model'}" + (" with this data config" if data_cfg is not None else "")
    if chosen is None:
        seen = f"; found only: {', '.join(other[:3])}" if other else ""
        raise ConfigError(f"ckpt_path=last: no readable last.ckpt of {what} under {log_dir}{seen}; "
                          f"train first or pass ckpt_path=<file>")
    newer = _newer_run_without_checkpoint(log_dir, chosen, model_target, data_cfg, exclude)
    if newer is not None:
        raise ConfigError(f"ckpt_path=last: the newest run of {what} ({newer}) has no checkpoint yet; "
                          f"pass ckpt_path={chosen} to resume the older run")
    return chosen


def run_folder_of(ckpt: Path) -> Optional[Path]:
    """The run folder a checkpoint was written in (``<run>/checkpoints/x.ckpt`` with ``<run>/config.yaml``)."""
    run = ckpt.resolve().parent.parent
    return run if ckpt.resolve().parent.name == "checkpoints" and (run / RUN_CONFIG).is_file() else None


def _newer_run_without_checkpoint(
    log_dir: Path, chosen: Path, model_target: Optional[str], data_cfg: Optional[dict], exclude: Optional[Path],
) -> Optional[Path]:
    since = chosen.stat().st_mtime
    for config in log_dir.rglob(RUN_CONFIG):
        run = config.parent
        if config.stat().st_mtime <= since or (exclude is not None and run.resolve() == exclude.resolve()):
            continue
        if any(run.glob("checkpoints/*.ckpt")):
            continue
        try:
            stored = OmegaConf.to_container(OmegaConf.load(config))
        except Exception:  # a config we cannot read says nothing about this model
            continue
        if not isinstance(stored, dict) or stored.get("task_name") != "train":
            continue
        if model_target is not None and (stored.get("model") or {}).get("_target_") != model_target:
            continue
        if data_cfg is not None and stored.get("data") != data_cfg:
            continue
        return run
    return None


#: keys of a data config that fix how images are prepared for the network (input side in px, grey or RGB)
PREPROCESSING_KEYS = ("image_size", "grey")


def stored_preprocessing(state: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing a checkpoint was trained with: the :data:`PREPROCESSING_KEYS` its stored data
    config holds (e.g. ``{"image_size": 32}``), plus ``input_norm`` from its model config's network when
    it has one (the normalisation happens inside the network). Empty for a checkpoint without configs."""
    data = state.get(DATA_KEY) or {}
    found = {key: data[key] for key in PREPROCESSING_KEYS if data.get(key) is not None}
    net = (state.get(CONFIG_KEY) or {}).get("net") or {}
    if isinstance(net, dict) and net.get("input_norm") is not None:
        found["input_norm"] = net["input_norm"]
    return found


def leaf_keys(tree: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves of a nested dict (``_target_`` and ``_partial_`` left out)."""
    if not isinstance(tree, dict) or not tree:
        return [prefix[:-1]] if prefix else []
    out: list[str] = []
    for key, value in tree.items():
        if str(key) not in ("_target_", "_partial_"):
            out += leaf_keys(value, f"{prefix}{key}.")
    return out


def settings_of(node: Any) -> Optional[dict]:
    """A group node without ``_target_`` (``model.<key>=`` / ``data.<key>=`` settings to apply to a stored
    config), as a dict; None for an empty node or a whole config with its ``_target_``."""
    if isinstance(node, DictConfig) and len(node) and "_target_" not in node:
        return OmegaConf.to_container(node, resolve=True)
    return None


def override_config(stored: dict, overrides: Any, group: str, source: str, extra_keys: tuple[str, ...] = ()) -> dict:
    """``stored`` with the leaves of ``overrides`` (nested) replaced; a key that ``stored`` lacks (and that
    is not in ``extra_keys``) is refused in one line naming it and listing the valid keys."""
    if isinstance(overrides, DictConfig):
        overrides = OmegaConf.to_container(overrides, resolve=True)
    valid = leaf_keys(stored)
    merged = OmegaConf.create(stored)
    for key in leaf_keys(overrides):
        known = key in extra_keys or any(v == key or v.startswith(key + ".") or key.startswith(v + ".") for v in valid)
        if not known or key.split(".")[0] in ("_target_", "_partial_"):
            raise ConfigError(f"{group}.{key} is not a setting of {source}; valid keys: {', '.join(dict.fromkeys(valid + list(extra_keys)))}")
        OmegaConf.update(merged, key, OmegaConf.select(OmegaConf.create(overrides), key), merge=False, force_add=True)
    return OmegaConf.to_container(merged, resolve=False)
