"""The MLflow store survives concurrent first runs, killed runs and failed runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import ViewType

from neurocorr.tasks import tracking
from tests.conftest import REPO, TINY_SHAPES

QUIET = ["trainer=cpu", "callbacks.progress_bar=null"]


def _uri(root: Path) -> str:
    return f"sqlite:///{root}/mlruns/mlflow.db"


def _runs(uri: str, view: int = ViewType.ACTIVE_ONLY) -> list:
    client = mlflow.MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, run_view_type=view) if ids else []


def test_three_concurrent_first_runs_then_a_fourth(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    code = ("import sys, mlflow; from neurocorr.tasks.tracking import prepare_store; prepare_store(sys.argv[1]); "
            "c = mlflow.MlflowClient(sys.argv[1]); e = c.get_experiment_by_name('x') or None; "
            "c.create_run(e.experiment_id if e else c.create_experiment('x-' + sys.argv[2]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, uri, str(i)], stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    fourth = subprocess.run([sys.executable, "-c", code, uri, "4"], capture_output=True, text=True, timeout=120)
    assert fourth.returncode == 0, fourth.stderr[-2000:]
    assert len(_runs(uri)) == 4


def test_a_killed_process_leaves_no_running_run(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    tracking.prepare_store(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    experiment = client.create_experiment("e")
    dead = client.create_run(experiment, tags={tracking.HOST_TAG: socket.gethostname(), tracking.PID_TAG: str(gone.pid)})
    alive = client.create_run(experiment, tags={tracking.HOST_TAG: socket.gethostname(), tracking.PID_TAG: str(os.getpid())})
    tracking.prepare_store(uri)  # what the next run in the same root does first
    assert client.get_run(dead.info.run_id).info.status == "KILLED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"


@pytest.mark.slow
def test_sigterm_exits_non_zero_and_marks_the_run_killed(tmp_path: Path) -> None:
    env = {**os.environ, "NEUROCORR_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *TINY_SHAPES, *QUIET, "trainer.max_epochs=1000"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(tmp_path.glob("logs/train/runs/*/checkpoints/last.ckpt")):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("neurocorr: error: interrupted by SIGTERM")
    runs = _runs(_uri(tmp_path))
    assert [r.info.status for r in runs] == ["KILLED"]
    assert list(tmp_path.glob("logs/train/runs/*/checkpoints/last.ckpt")), "the interrupted run keeps its checkpoints"


def test_an_error_after_the_run_started_leaves_no_orphan_run(tmp_path: Path) -> None:
    classes = tmp_path / "classes"
    for name in ("a", "b"):
        (classes / name).mkdir(parents=True)
        for i in range(8):
            (classes / name / f"{i}.png").write_bytes(b"not an image at all")  # found only when loaded
    env = {**os.environ, "NEUROCORR_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(REPO / "train.py"), "data=class_folders", f"data.root={classes}",
                             "data.verify_images=false", "data.image_size=32", "data.batch_size=4", *QUIET],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("neurocorr: error: image ")
    assert _runs(_uri(tmp_path)) == []
    assert not list(tmp_path.glob("logs/train/runs/*"))
