"""A sweep in one place: a parent MLflow run with every trial as its child, a summary table, the
best trial tagged, and failures named at the end (the other trials all run)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
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
    writer.writerow(["trial", "overrides", "status", "objective", "best", "mlflow_run", "error", "sweep"])
    for t in trials:
        overrides = [o for o in t["overrides"] if not o.startswith("+optuna.")]  # the sweeper's bookkeeping
        writer.writerow([t["trial"], " ".join(overrides), t["status"], t.get("objective"),
                         "yes" if best is not None and t is best else "", t.get("run_id") or "", t["error"],
                         t.get("sweep", "")])
    return out.getvalue()


def _study_key(config: DictConfig) -> Optional[str]:
    """``<storage>#<study>`` of a persistent Optuna sweep (its parent run continues when it resumes)."""
    storage = OmegaConf.select(config, "hydra.sweeper.storage", default=None)
    study = OmegaConf.select(config, "hydra.sweeper.study_name", default=None)
    return f"{storage}#{study}" if storage and study else None


def _earlier_trials(parent_tags: dict[str, str], sweep_dir: Path) -> list[dict[str, Any]]:
    """The trials of the earlier, interrupted sweeps of a resumed study (marked with their sweep folder)."""
    trials = []
    for folder in filter(None, parent_tags.get("neurocorr.sweep_dirs", "").split(os.pathsep)):
        if Path(folder) != sweep_dir:
            trials += [{**t, "sweep": Path(folder).name} for t in read_trials(Path(folder))]
    return trials


def close_interrupted(sweep_dir: Path, trial_config: DictConfig, signal_name: str) -> None:
    """An interrupted sweep (called by the trial that got the signal): the summary of the trials so far
    written to the sweep folder and the parent MLflow run ended KILLED; the same command resumes it."""
    trials = read_trials(sweep_dir)
    if trials:
        write_text(sweep_dir / "sweep_summary.csv", summary_csv(trials, None))
    uri = OmegaConf.select(trial_config, "logger.mlflow.tracking_uri", default=None)
    parent = os.environ.pop(PARENT_ENV, None)
    if uri is None or parent is None:
        return
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    client.set_tag(parent, "neurocorr.interrupted_by", signal_name)
    client.set_terminated(parent, status="KILLED")


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
        self.earlier: list[dict[str, Any]] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # the experiment name interpolates ${hydra:runtime.choices}
        self._stop_cleanly_between_trials(config)
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
        study = _study_key(config)
        resumed = self._unfinished_parent(client, experiment_id, study)
        if resumed is not None:  # the same Optuna study again: its interrupted parent run continues
            self.parent = resumed.info.run_id
            self.earlier = _earlier_trials(resumed.data.tags, Path(sweep_dir))
            dirs = resumed.data.tags.get("neurocorr.sweep_dirs", "")
            client.set_tag(self.parent, "neurocorr.sweep_dirs", os.pathsep.join(filter(None, [dirs, sweep_dir])))
            client.update_run(self.parent, status="RUNNING")
            os.environ[PARENT_ENV] = self.parent
            return
        tags = {"neurocorr.sweep_dir": sweep_dir, "neurocorr.sweep_dirs": sweep_dir, "neurocorr.sweep": "parent"}
        if study is not None:
            tags["neurocorr.study"] = study
        run = client.create_run(experiment_id, run_name=f"sweep {Path(sweep_dir).name}", tags=tags)
        self.parent = run.info.run_id
        os.environ[PARENT_ENV] = self.parent
        overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
        client.log_param(self.parent, "sweep.overrides", " ".join(overrides)[:6000])
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
        if params:
            client.log_param(self.parent, "sweep.search_space", json.dumps(OmegaConf.to_container(params))[:6000])

    @staticmethod
    def _stop_cleanly_between_trials(config: DictConfig) -> None:
        """SIGTERM / SIGINT while no trial runs (a running trial has its own handler, see ``tasks.cli``):
        the summary so far and the parent run KILLED, then exit 143 / 130."""
        sweep_dir = Path(str(config.hydra.sweep.dir))

        def stop(signum: int, frame: Any) -> None:
            close_interrupted(sweep_dir, config, signal.Signals(signum).name)
            print(f"neurocorr: error: sweep interrupted by {signal.Signals(signum).name}; the same command resumes "
                  f"an Optuna study", file=sys.stderr, flush=True)
            sys.exit(128 + signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)

    @staticmethod
    def _unfinished_parent(client: Any, experiment_id: str, study: Optional[str]) -> Any:
        if study is None:
            return None
        quoted = study.replace("'", "\\'")
        runs = client.search_runs([experiment_id], filter_string=f"tags.`neurocorr.study` = '{quoted}'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs and runs[0].info.status != "FINISHED" else None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        trials = read_trials(sweep_dir)  # this sweep's trials decide its exit status
        everything = self.earlier + trials  # a resumed study's summary holds the earlier trials too
        best = best_trial(everything, _maximize(config))
        path = write_text(sweep_dir / "sweep_summary.csv", summary_csv(everything, best)) if everything else None
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
