"""A sweep in one place: a parent MLflow run with every trial as its child, a summary table, the
best trial tagged, and failures named at the end (the other trials all run)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from neurocorr.files import write_text

PARENT_ENV = "NEUROCORR_SWEEP_PARENT_RUN"  # trials started by this sweep tag their runs as its children
PARENT_TAG = "mlflow.parentRunId"  # the tag the MLflow UI nests child runs by


def read_trials(sweep_dir: Path) -> list[dict[str, Any]]:
    """The trials recorded in ``trials.jsonl`` (the last record of each trial number wins)."""
    path = sweep_dir / "trials.jsonl"
    if not path.is_file():
        return []
    trials: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            trials[int(entry["trial"])] = entry
    return [trials[k] for k in sorted(trials)]


def record_trial(sweep_dir: Path, entry: dict[str, Any]) -> None:
    """Append one trial's outcome (one line, so concurrent trials do not interleave)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / "trials.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def best_trial(trials: list[dict[str, Any]], maximize: bool) -> Optional[dict[str, Any]]:
    done = [t for t in trials if t["status"] == "finished" and isinstance(t.get("objective"), (int, float))
            and math.isfinite(t["objective"])]
    if not done:
        return None
    return (max if maximize else min)(done, key=lambda t: t["objective"])


def summary_csv(trials: list[dict[str, Any]], best: Optional[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial", "overrides", "status", "objective", "best", "mlflow_run", "error"])
    for t in trials:
        overrides = [o for o in t["overrides"] if not o.startswith("+optuna.")]  # the sweeper's bookkeeping
        writer.writerow([t["trial"], " ".join(overrides), t["status"], t.get("objective"),
                         "yes" if best is not None and t["trial"] == best["trial"] else "", t.get("run_id") or "", t["error"]])
    return out.getvalue()


def _maximize(config: DictConfig) -> bool:
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if direction is not None:
        return str(direction).lower().startswith("max")
    return str(OmegaConf.select(config, "model.monitor_mode", default="max")) == "max"


def _mlflow(config: DictConfig) -> tuple[Optional[str], Optional[str]]:
    uri = OmegaConf.select(config, "logger.mlflow.tracking_uri", default=None)
    name = OmegaConf.select(config, "logger.mlflow.experiment_name", default=None)
    return (str(uri), str(name)) if uri and name else (None, None)


class SweepSummary(Callback):
    """Hydra callback for multiruns (grid, Optuna, any launcher).

    Start: a parent MLflow run holding the sweep's config (its id goes to the trials through the
    environment). End: ``sweep_summary.csv`` (trial, overrides, status, objective, best, run) in the
    sweep folder, logged to the parent; the best trial's run and the parent tagged; status 1 when
    any trial failed."""

    def __init__(self) -> None:
        self.parent: Optional[str] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # the experiment name interpolates ${hydra:runtime.choices}
        uri, name = _mlflow(config)
        if uri is None:
            return
        from mlflow import MlflowClient

        from neurocorr.tasks.tracking import prepare_store

        prepare_store(uri)
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        sweep_dir = str(config.hydra.sweep.dir)
        run = client.create_run(experiment_id, run_name=f"sweep {Path(sweep_dir).name}",
                                tags={"neurocorr.sweep_dir": sweep_dir, "neurocorr.sweep": "parent"})
        self.parent = run.info.run_id
        os.environ[PARENT_ENV] = self.parent
        overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
        client.log_param(self.parent, "sweep.overrides", " ".join(overrides)[:6000])
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
        if params:
            client.log_param(self.parent, "sweep.search_space", json.dumps(OmegaConf.to_container(params))[:6000])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        trials = read_trials(sweep_dir)
        best = best_trial(trials, _maximize(config))
        path = write_text(sweep_dir / "sweep_summary.csv", summary_csv(trials, best)) if trials else None
        failed = [t for t in trials if t["status"] != "finished"]
        self._close_parent(config, path, best, failed)
        if path is None:
            return
        print(f"[neurocorr] sweep summary ({path}):\n{path.read_text()}", flush=True)
        if best is not None:
            print(f"[neurocorr] best trial {best['trial']}: {' '.join(best['overrides'])} -> {best['objective']}", flush=True)
        if failed:
            names = ", ".join(f"{t['trial']} ({' '.join(t['overrides'])}: {t['status']})" for t in failed)
            print(f"neurocorr: error: {len(failed)} of {len(trials)} trials failed: {names}", file=sys.stderr, flush=True)
            sys.exit(1)

    def _close_parent(self, config: DictConfig, summary: Optional[Path], best: Optional[dict], failed: list) -> None:
        uri, _ = _mlflow(config)
        if uri is None or self.parent is None:
            return
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        if summary is not None:
            client.log_artifact(self.parent, str(summary))
        if best is not None:
            client.set_tag(self.parent, "neurocorr.best_trial", str(best["trial"]))
            client.log_metric(self.parent, "best_objective", float(best["objective"]))
            if best.get("run_id"):
                client.set_tag(self.parent, "neurocorr.best_run", best["run_id"])
                client.set_tag(best["run_id"], "neurocorr.best_trial", "true")
        client.set_tag(self.parent, "neurocorr.failed_trials", str(len(failed)))
        client.set_terminated(self.parent, status="FINISHED")
        os.environ.pop(PARENT_ENV, None)
