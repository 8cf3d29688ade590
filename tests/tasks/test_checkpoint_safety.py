"""Checkpoints never run code, stored targets are checked before anything is built, ``last`` is safe."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest
import torch

from neurocorr.checkpoints import CONFIG_KEY, DATA_KEY, load_checkpoint, model_from_checkpoint, resolve_ckpt_path
from neurocorr.errors import ConfigError
from neurocorr.families import FAMILIES

AGFUSION = FAMILIES["agfusion"]


class Payload:
    """Unpickling this runs ``Path.touch(marker)``: what a planted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def test_a_pickle_payload_in_a_checkpoint_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "last.ckpt"
    with open(ckpt, "wb") as f:
        pickle.dump({"state_dict": {}, "payload": Payload(marker)}, f)
    with pytest.raises(ConfigError, match="last.ckpt.*never loaded"):
        load_checkpoint(ckpt)
    assert not marker.exists()


@pytest.mark.parametrize("target", ["pathlib.Path.touch", "shutil.copyfile", "numpy.savetxt", "torch.save"])
def test_a_stored_target_outside_the_families_is_refused_before_building(tmp_path: Path, target: str) -> None:
    marker = tmp_path / "written"
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, CONFIG_KEY: {"_target_": target, "_args_": [str(marker)]}}, ckpt)
    with pytest.raises(ConfigError, match="not a neurocorr family"):
        model_from_checkpoint(ckpt)
    assert not marker.exists()


def test_a_nested_target_is_refused_before_building(tmp_path: Path) -> None:
    marker = tmp_path / "written"
    ckpt = tmp_path / "model.ckpt"
    nested = {"_target_": AGFUSION, "net": {"_target_": "pathlib.Path.touch", "self": str(marker)}}
    torch.save({"state_dict": {}, CONFIG_KEY: nested}, ckpt)
    with pytest.raises(ConfigError, match="net._target_ 'pathlib.Path.touch'"):
        model_from_checkpoint(ckpt)
    assert not marker.exists()


def _ckpt(path: Path, target: str = AGFUSION, data: dict | None = None, age: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, CONFIG_KEY: {"_target_": target}, DATA_KEY: data or {"root": "a"}}, path)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_last_skips_an_unreadable_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = _ckpt(tmp_path / "logs/train/runs/a/checkpoints/last.ckpt", age=100)
    truncated = tmp_path / "logs/train/runs/b/checkpoints/last.ckpt"
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(good.read_bytes()[:50])
    assert resolve_ckpt_path("last", tmp_path / "logs", AGFUSION, {"root": "a"}) == good
    assert "skipping" in caplog.text and str(truncated) in caplog.text


def test_last_only_unreadable_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "logs/train/runs/b/checkpoints/last.ckpt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"")
    with pytest.raises(ConfigError, match="no readable last.ckpt"):
        resolve_ckpt_path("last", tmp_path / "logs", AGFUSION, None)


def test_last_needs_the_same_model_and_data(tmp_path: Path) -> None:
    _ckpt(tmp_path / "logs/train/runs/a/checkpoints/last.ckpt", data={"root": "other"})
    _ckpt(tmp_path / "logs/train/runs/b/checkpoints/last.ckpt", target=FAMILIES["qatm"])
    with pytest.raises(ConfigError, match="other data config"):
        resolve_ckpt_path("last", tmp_path / "logs", AGFUSION, {"root": "a"})


def test_last_refuses_an_older_run_when_the_newest_has_no_checkpoint(tmp_path: Path) -> None:
    _ckpt(tmp_path / "logs/train/runs/old/checkpoints/last.ckpt", age=100)
    newest = tmp_path / "logs/train/runs/new"
    newest.mkdir(parents=True)
    (newest / "config.yaml").write_text(f"task_name: train\nmodel:\n  _target_: {AGFUSION}\ndata:\n  root: a\n")
    with pytest.raises(ConfigError, match="has no checkpoint yet"):
        resolve_ckpt_path("last", tmp_path / "logs", AGFUSION, {"root": "a"})


def test_a_text_file_as_checkpoint_is_one_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ConfigError, match=r"cannot read checkpoint .*notes.ckpt: not a PyTorch file$"):
        load_checkpoint(text)


def test_a_stored_config_that_cannot_be_built_is_one_line(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, CONFIG_KEY: {"_target_": AGFUSION}}, ckpt)  # no net
    with pytest.raises(ConfigError, match="cannot build .*AGFusionModule: .*net"):
        model_from_checkpoint(ckpt)
