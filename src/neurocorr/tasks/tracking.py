"""The MLflow side of a run: the store created once under a lock, stale runs closed, a run's end.

Every neurocorr run tags its MLflow run with the host and process id that ran it, so a later run in
the same store can tell a run that is still going from one whose process was killed (SIGKILL, power
loss) and mark the latter KILLED instead of leaving it RUNNING forever.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional
from urllib.parse import urlparse

if TYPE_CHECKING:  # Lightning is imported by the functions that take loggers, not by prepare_store
    from pytorch_lightning.loggers import Logger, MLFlowLogger

log = logging.getLogger("neurocorr")

HOST_TAG, PID_TAG, OUTPUT_TAG = "neurocorr.host", "neurocorr.pid", "neurocorr.output_dir"


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive file lock beside a sqlite store: creating its tables is not safe to race."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / ".mlflow.db.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_store(uri: str) -> None:
    """Create the store's tables once (under the lock) and mark this host's dead RUNNING runs KILLED."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    for name in ("alembic", "mlflow.store.db.utils"):  # table creation logs a dozen INFO lines
        logging.getLogger(name).setLevel(logging.WARNING)
    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        experiments = client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
    ids = [e.experiment_id for e in experiments]
    if not ids:
        return
    host = socket.gethostname()
    for run in client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if tags.get(HOST_TAG) != host or not tags.get(PID_TAG, "").isdigit():
            continue
        if not _alive(int(tags[PID_TAG])):
            client.set_terminated(run.info.run_id, status="KILLED")
            log.warning("MLflow run %s (pid %s) was left RUNNING by a process that is gone: marked KILLED",
                        run.info.run_id, tags[PID_TAG])


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mlflow_loggers(loggers: list[Logger]) -> list[MLFlowLogger]:
    from pytorch_lightning.loggers import MLFlowLogger

    return [lg for lg in loggers if isinstance(lg, MLFlowLogger)]


def end_runs(loggers: list[Logger], status: str) -> None:
    """Set the status of every MLflow run the loggers started (FINISHED, FAILED or KILLED)."""
    for lg in mlflow_loggers(loggers):
        if lg.run_id is not None:
            lg.experiment.set_terminated(lg.run_id, status=status)


def delete_runs(loggers: list[Logger]) -> None:
    """Delete the MLflow runs the loggers started, with their artifacts (a run that failed before it
    produced anything must not stay behind as an orphan)."""
    for lg in mlflow_loggers(loggers):
        if lg.run_id is None:
            continue
        client = lg.experiment
        artifact_uri = client.get_run(lg.run_id).info.artifact_uri
        client.delete_run(lg.run_id)
        parsed = urlparse(artifact_uri)
        if parsed.scheme in ("", "file") and Path(parsed.path).is_dir():
            shutil.rmtree(parsed.path, ignore_errors=True)


def find_run(uri: str, experiment_name: str, output_dir: Path) -> Optional[str]:
    """The id of the MLflow run that wrote ``output_dir`` (to continue it on resume), if any."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{OUTPUT_TAG}` = '{output_dir}'",
                              max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None
