"""A thin Optuna sweeper on a current Optuna: persistent studies that resume, failed and pruned
trials told as such, any Hydra launcher.

hydra-optuna-sweeper 1.3 (the last release) pins optuna < 3, whose SQLite storage fails beside
SQLAlchemy 2, so its studies live in memory and an interrupted sweep starts over. This sweeper keeps
the plugin's search-space syntax (``tag(log, interval(1e-5, 1e-2))``, ``choice(...)``, ``range(...)``)
and stores the study in SQLite: running the same command again continues with the trials still to do.

Each trial gets ``+optuna.storage``, ``+optuna.study`` and ``+optuna.trial`` overrides, so the train
task can report its validation metric per epoch and stop when the pruner says so.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Optional

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("neurocorr")
OUTCOME = "neurocorr.outcome"  # user attribute of a trial that ran to a failure


def distribution(override: Override) -> Any:
    """An Optuna distribution for one sweep override (``interval``, ``choice``, ``range``; ``tag(log, ...)``)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return optuna.distributions.IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
        return optuna.distributions.FloatDistribution(value.start, value.stop, step=value.step)
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log_scale)
        return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{override.input_line}: not a search space (use choice, range or interval)")


def _built(node: Any) -> Any:
    """Hydra instantiates a plugin's nested ``_target_`` configs before its ``__init__``; a plain
    config (a caller building the sweeper by hand) is instantiated here."""
    return instantiate(node) if isinstance(node, (DictConfig, dict)) else node


class OptunaSweeper(Sweeper):
    """Hydra sweeper over an Optuna study.

    Args:
        params: ``key: <search space>`` (Hydra's sweep syntax).
        n_trials: trials of the whole study; a resumed study runs only those still to do.
        n_jobs: trials launched together (one launcher batch).
        direction: ``maximize`` or ``minimize`` the task's return value.
        study_name, storage: the study and its storage URL (``sqlite:///...``); ``None`` = in memory.
        sampler: a config with ``_target_`` (e.g. ``optuna.samplers.TPESampler``).
        median_pruner: settings of Optuna's median pruner (``n_startup_trials``, ``n_warmup_steps``, ...),
            or ``None`` for no pruning; the trials get them too, as a study does not store its pruner.
    """

    def __init__(self, params: Optional[DictConfig] = None, n_trials: int = 10, n_jobs: int = 1,
                 direction: str = "maximize", study_name: str = "neurocorr", storage: Optional[str] = None,
                 sampler: Any = None, median_pruner: Optional[DictConfig] = None) -> None:
        self.params = dict(params or {})
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.direction, self.study_name, self.storage = str(direction), str(study_name), storage
        self.sampler_cfg = sampler
        self.median = OmegaConf.to_container(median_pruner) if isinstance(median_pruner, DictConfig) else median_pruner
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def _space(self, arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
        parser = OverridesParser.create()
        lines = [f"{k}={v}" for k, v in self.params.items()]
        space: dict[str, Any] = {}
        fixed: list[str] = []
        for override in parser.parse_overrides(lines) + parser.parse_overrides(arguments):
            if override.is_sweep_override():
                space[override.get_key_element()] = distribution(override)
            else:
                space.pop(override.get_key_element(), None)
                fixed.append(override.input_line)
        return space, fixed

    def _study(self) -> optuna.Study:
        if self.storage and str(self.storage).startswith("sqlite:///"):
            Path(str(self.storage)[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return optuna.create_study(
            study_name=self.study_name, storage=self.storage, load_if_exists=True, direction=self.direction,
            sampler=_built(self.sampler_cfg),
            pruner=optuna.pruners.MedianPruner(**self.median) if self.median else optuna.pruners.NopPruner())

    def _median_overrides(self) -> list[str]:
        if not self.median:
            return []
        return [f"+optuna.median_pruner.{k}={v}" for k, v in self.median.items()]

    def sweep(self, arguments: list[str]) -> Any:
        from neurocorr.tasks.sweep import read_trials

        space, fixed = self._space(arguments)
        study = self._study()
        for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # its sweep was interrupted: run again
        done = sum(1 for t in study.get_trials(deepcopy=False) if t.state in (optuna.trial.TrialState.COMPLETE,
                   optuna.trial.TrialState.PRUNED) or t.user_attrs.get(OUTCOME) == "failed")
        remaining = max(0, self.n_trials - done)
        if done:
            log.info("study %s has %d trials; running the %d still to do", self.study_name, done, remaining)
            # a seeded sampler built afresh would draw its first samples again: the trials already done
            study.sampler.reseed_rng()
        returns = []
        while remaining > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, remaining))]
            batch = [[*fixed, *(f"{k}={v}" for k, v in t.params.items()),
                      f"+optuna.storage={self.storage}", f"+optuna.study={self.study_name}", f"+optuna.trial={t.number}",
                      *self._median_overrides()]
                     for t in trials]
            results = self.launcher.launch(batch, initial_job_idx=self.job_idx)
            recorded = {t["trial"]: t for t in read_trials(self.sweep_dir)}
            for offset, (trial, ret) in enumerate(zip(trials, results)):
                status = recorded.get(self.job_idx + offset, {}).get("status")
                value = ret.return_value if ret.status.name == "COMPLETED" else None
                if status == "pruned":
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                elif isinstance(value, (int, float)) and math.isfinite(value):
                    study.tell(trial, float(value))
                else:  # a failed trial, or one that returned no finite value: never a NaN told
                    trial.set_user_attr(OUTCOME, "failed")  # counted as done (an interrupted one is not)
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.job_idx += len(results)
            remaining -= len(results)
            returns.append(results)
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if complete:
            best = study.best_trial
            OmegaConf.save(OmegaConf.create({"name": "optuna", "best_params": best.params, "best_value": best.value,
                                             "trials": len(study.trials)}), self.sweep_dir / "optimization_results.yaml")
            log.info("best trial %d: %s -> %s", best.number, best.params, best.value)
        return returns
