"""Pieces every task shares: building from the config, the run's MLflow side, metrics on disk."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger

from neurocorr.files import write_json, write_text
from neurocorr.tasks import tracking
from neurocorr.tasks.sweep import PARENT_ENV, PARENT_TAG
from neurocorr.viz.artifacts import log_artifact

log = logging.getLogger("neurocorr")


@dataclass
class RunRecord:
    """What the running task has opened, so that the CLI wrapper can close or undo it on failure."""

    loggers: list[Logger] = field(default_factory=list)
    output_dir: Optional[Path] = None


#: the task running in this process (set by :func:`start_runs`; read by ``tasks.cli``)
CURRENT = RunRecord()
#: the MLflow run id of the task that ran last in this process (for a sweep's trial record)
LAST_RUN_ID: Optional[str] = None


def instantiate_group(group: Optional[DictConfig], **kwargs: Any) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, logger) that has a target."""
    if not group:
        return []
    return [instantiate(node, **kwargs) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def choice(cfg: DictConfig, group: str) -> Optional[str]:
    """The option chosen for a config group (``data=...``), from Hydra's runtime record; None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    try:
        chosen = HydraConfig.get().runtime.choices.get(group)
    except ValueError:  # composed outside @hydra.main (tests may carry the record in cfg)
        chosen = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}", default=None)
    return None if chosen in (None, "None") else str(chosen)


def mlflow_uri(cfg: DictConfig) -> Optional[str]:
    """The tracking URI of the configured MLflow logger, if there is one."""
    for node in (cfg.get("logger") or {}).values():
        if isinstance(node, DictConfig) and str(node.get("_target_", "")).endswith("MLFlowLogger"):
            return str(node.tracking_uri)
    return None


def build_loggers(cfg: DictConfig, output_dir: Path, resume_run: Optional[str] = None,
                  experiment_name: Optional[str] = None) -> list[Logger]:
    """Build the loggers; no MLflow run exists until :func:`start_runs`. The store is prepared first
    (an MLflow client creates the tables of a new store, which is not safe to race): tables created
    once under a lock, dead RUNNING runs of this host marked KILLED."""
    uri = mlflow_uri(cfg)
    if uri is not None:
        tracking.prepare_store(uri)
    tags = {tracking.HOST_TAG: socket.gethostname(), tracking.PID_TAG: str(os.getpid()),
            tracking.OUTPUT_TAG: str(output_dir), "neurocorr.model": str((cfg.get("model") or {}).get("_target_", ""))}
    tags.update({f"tag.{t}": "1" for t in cfg.get("tags") or []})
    if os.environ.get(PARENT_ENV):  # a trial of a sweep: a child of the sweep's parent run
        tags[PARENT_TAG] = os.environ[PARENT_ENV]
    loggers: list[Logger] = []
    for node in (cfg.get("logger") or {}).values():
        if not (isinstance(node, DictConfig) and "_target_" in node):
            continue
        if str(node.get("_target_", "")).endswith("MLFlowLogger"):
            extra: dict[str, Any] = {"tags": tags, "run_id": resume_run}
            if experiment_name:
                extra["experiment_name"] = experiment_name
            loggers.append(instantiate(node, **extra))
        else:
            loggers.append(instantiate(node))
    return loggers


def start_runs(loggers: list[Logger], output_dir: Path, uri: Optional[str]) -> None:
    """Start (or continue) the MLflow runs, print where the outputs and the runs are, and register
    them so that a failure closes or removes them (``tasks.cli``)."""
    global LAST_RUN_ID
    CURRENT.loggers, CURRENT.output_dir = loggers, output_dir
    print(f"[neurocorr] output folder: {output_dir}", flush=True)
    for lg in tracking.mlflow_loggers(loggers):
        LAST_RUN_ID = lg.run_id
        run = lg.experiment.get_run(lg.run_id)
        if run.info.status != "RUNNING":  # a resumed run continues under this process
            lg.experiment.update_run(lg.run_id, status="RUNNING")
            lg.experiment.set_tag(lg.run_id, tracking.PID_TAG, str(os.getpid()))
        name = lg.experiment.get_experiment(lg.experiment_id).name
        print(f"[neurocorr] MLflow run {lg.run_id} in experiment '{name}' ({uri}); "
              f"browse with: mlflow ui --backend-store-uri {uri}", flush=True)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become their string form."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree if isinstance(tree, (int, float, str, bool)) or tree is None else str(tree)}


def log_run_config(cfg: DictConfig, loggers: list[Logger], output_dir: Path, write: bool = True) -> None:
    """Write the resolved config as ``config.yaml`` (unless ``write`` is False: a resumed run keeps
    its own), log the flattened params and the file."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    path = output_dir / "config.yaml"
    if write:
        write_text(path, OmegaConf.to_yaml(OmegaConf.create(resolved)))
    params = {k: v for k, v in flatten(resolved).items() if not k.startswith("hydra.")}
    for lg in loggers:
        lg.log_hyperparams(params)
    if path.is_file():
        log_artifact(loggers, path)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Tensors and numbers of a Lightning metrics dict as plain floats."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = float(value)
        elif isinstance(value, (int, float)):
            out[key] = float(value)
    return out


def save_metrics(metrics: dict[str, float], cfg: DictConfig, output_dir: Path, loggers: list[Logger]) -> Path:
    """Write ``metrics.json`` (and ``cfg.metrics_file``) as strict JSON and log it to MLflow."""
    bad = sorted(k for k, v in metrics.items() if v != v or v in (float("inf"), float("-inf")))
    if bad:
        log.warning("metrics %s are not finite; metrics.json holds null for them", ", ".join(bad))
    path = write_json(output_dir / "metrics.json", metrics)
    if cfg.get("metrics_file"):
        write_json(Path(cfg.metrics_file), metrics)
    log_artifact(loggers, path)
    return path


def objective(metrics: dict[str, float], name: Optional[str]) -> Optional[float]:
    """``metrics[name]`` for a sweeper, or None (with a warning) when it was not logged."""
    if not name:
        return None
    if name not in metrics:
        log.warning("optimized_metric %s was not logged; logged: %s", name, ", ".join(sorted(metrics)))
        return None
    return metrics[name]
