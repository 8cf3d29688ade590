"""The wrapper between ``@hydra.main`` and a task: one line for a user's error, nothing half-written.

- A :class:`NeurocorrError` (bad file, bad value) prints ``neurocorr: error: <message>`` and exits 2.
- SIGTERM / SIGINT exit 143 / 130; the task has marked its MLflow run KILLED.
- Whatever the failure, the run folder loses what this run created (never a pre-existing file, see
  ``run_folder``) unless the run already wrote a checkpoint, and an MLflow run that produced nothing
  is deleted.
- In a multirun, a failed trial does not end the sweep: it is recorded in ``trials.jsonl`` of the
  sweep folder and returns None (Optuna records it as FAIL); ``SweepSummary`` reports at the end.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from neurocorr.errors import NeurocorrError, TrialPruned
from neurocorr.tasks import common, process, run_folder, tracking
from neurocorr.tasks.sweep import close_interrupted, record_trial

log = logging.getLogger("neurocorr")
Task = Callable[[DictConfig], Optional[float]]


def user_error(err: BaseException) -> Optional[NeurocorrError]:
    """The :class:`NeurocorrError` behind ``err`` (Hydra and DataLoader workers wrap errors)."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, NeurocorrError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def one_line(err: BaseException) -> str:
    """The message of ``err`` as one line. A DataLoader worker re-raises an error as its own type with
    the worker's traceback in the message: keep the original error's own last line."""
    text = str(err).strip()
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if last.startswith("neurocorr.errors.") and ": " in last else last
    return " ".join(text.split())


def _hydra_dir() -> Optional[Path]:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # called outside Hydra
        return None


def _multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def _wrote_checkpoint(folder: Optional[Path]) -> bool:
    if folder is None or not folder.is_dir():
        return False
    return any(p.stat().st_mtime >= run_folder.PROCESS_START - 1 for p in folder.rglob("*.ckpt"))


def _undo(cfg: DictConfig) -> None:
    """Remove what a failed run left: its MLflow run and its files, unless it wrote a checkpoint
    (then both stay, as FAILED, so that the run can be resumed)."""
    record = common.CURRENT
    keep = _wrote_checkpoint(record.output_dir) or _wrote_checkpoint(_hydra_dir())
    if keep:
        tracking.end_runs(record.loggers, "FAILED")
    else:
        tracking.delete_runs(record.loggers)
        folder = _hydra_dir()
        if folder is not None:
            run_folder.remove_created(folder, str(cfg.get("task_name", "train")))
    common.CURRENT = common.RunRecord()


def _record_trial(status: str, value: Optional[float], error: str = "") -> None:
    """Append this trial's outcome to ``<sweep dir>/trials.jsonl`` (read by ``tasks.sweep``)."""
    hydra = HydraConfig.get()
    finite = value is not None and value == value and abs(value) != float("inf")
    record_trial(Path(hydra.sweep.dir), {
        "trial": int(hydra.job.num), "overrides": list(hydra.overrides.task), "status": status,
        "objective": value if finite else None, "error": error, "run_id": common.LAST_RUN_ID,
    })


def cli(task: Task) -> Task:
    """Wrap a task for ``@hydra.main`` (see the module docstring)."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Optional[float]:
        restore = process.configure_process()
        previous_threads: Optional[int] = None
        multirun = _multirun()
        common.LAST_RUN_ID = None
        try:
            previous_threads = process.set_threads(cfg.get("threads"))
            value = task(cfg)
        except BaseException as err:  # noqa: BLE001 - every failure is reported and undone the same way
            signum = process.received
            if signum is not None:
                tracking.end_runs(common.CURRENT.loggers, "KILLED")
                common.CURRENT = common.RunRecord()
                if multirun:
                    _record_trial("interrupted", None, str(process.Interrupted(signum)))
                    close_interrupted(Path(HydraConfig.get().sweep.dir), cfg, str(process.Interrupted(signum)))
                print(f"neurocorr: error: interrupted by {process.Interrupted(signum)}; the run keeps its "
                      f"checkpoints: resume with ckpt_path=last", file=sys.stderr, flush=True)
                sys.exit(128 + signum)
            if isinstance(err, SystemExit) and not err.code:
                raise
            cause = user_error(err)
            message = one_line(cause) if cause is not None else f"{type(err).__name__}: {one_line(err)}"
            if cause is None:
                log.error("%s", "".join(traceback.format_exception(err)))
            _undo(cfg)
            if multirun:
                print(f"neurocorr: error: trial {HydraConfig.get().job.num}: {message}", file=sys.stderr, flush=True)
                _record_trial("pruned" if isinstance(cause, TrialPruned) else "failed", None, message)
                return None
            if cause is None:
                raise
            print(f"neurocorr: error: {message}", file=sys.stderr, flush=True)
            sys.exit(2)
        finally:
            restore()
            process.set_threads(previous_threads)
        if multirun:
            _record_trial("finished", value)
        return value

    return wrapper

