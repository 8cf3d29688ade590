"""Process settings of the tasks, strict metrics JSON, generated folders, offline fail-fast."""

from __future__ import annotations

import json
import math
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from neurocorr.backbones.dinov2 import dinov2
from neurocorr.data.synthetic.atomic import MARKER, atomic_folder
from neurocorr.errors import DataError, WeightsError
from neurocorr.files import write_json
from neurocorr.tasks import process


def test_telemetry_off_by_default_and_the_users_choice_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    process.configure_process()()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    process.configure_process()()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"


def test_metrics_json_is_strict(tmp_path: Path) -> None:
    path = write_json(tmp_path / "metrics.json", {"val/pck": math.nan, "loss": math.inf, "ok": 0.5})
    text = path.read_text()
    assert json.loads(text) == {"val/pck": None, "loss": None, "ok": 0.5} and "NaN" not in text


def test_generated_folders_follow_the_umask_and_never_replace_a_users_folder(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_folder(tmp_path / "gen") as tmp:
            (tmp / "a.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "gen").stat().st_mode) == 0o755 and (tmp_path / "gen" / MARKER).is_file()
    with atomic_folder(tmp_path / "gen") as tmp:  # a generated folder may be regenerated
        (tmp / "b.txt").write_text("y")
    user = tmp_path / "photos"
    user.mkdir()
    (user / "me.jpg").write_bytes(b"precious")
    with pytest.raises(DataError, match="photos exists and was not written by a neurocorr generator"):
        with atomic_folder(user):
            pass
    assert (user / "me.jpg").read_bytes() == b"precious"


def test_dinov2_pretrained_true_offline_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="huggingface.co, which cannot be reached.*pretrained=/path/to"):
        dinov2(pretrained=True, depth=1)
    assert time.perf_counter() - start < 10
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set"):
        dinov2(pretrained=True, depth=1)
