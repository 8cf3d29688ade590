"""bench/detector_bench.py times the untrained network and, with --ckpt, a checkpoint's detector as evaluate.py runs it
and its match steps on one pair."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from neurocorr.checkpoints import CONFIG_KEY, build_model
from tests.conftest import REPO
from tests.models.detector.tiny import TINY_DETECTOR


def _bench():
    spec = importlib.util.spec_from_file_location("bench_detector", REPO / "bench" / "detector_bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_checkpoint_is_timed_with_its_description_levels(make_cfg, tmp_path: Path, capsys) -> None:
    cfg = make_cfg("model=detector", "logger=none", *TINY_DETECTOR, "model.describe_scales=[1.0,0.5]", root=tmp_path / "train")
    model = build_model(cfg.model)
    ckpt = tmp_path / "detector.ckpt"
    torch.save({"state_dict": model.state_dict(), CONFIG_KEY: model.model_config}, ckpt)
    _bench().main(["--ckpt", str(ckpt), "--height", "64", "--width", "80", "--repeats", "1"])
    out = capsys.readouterr().out
    assert f"checkpoint {ckpt}, describe levels [1.0, 0.5]" in out
    timings = {line.split(":")[0].strip(): float(line.rsplit(":", 1)[1].split()[0]) for line in out.splitlines()[1:]}
    steps = [name for name in timings if name.startswith("match steps")]
    assert len(steps) == 1 and steps[0].startswith("match steps (MatchRelocation, MatchAlignment) on ")
    assert set(timings) - set(steps) == {"model (as evaluate.py runs it)", "sift", "orb", "akaze", "harris", "hessian"}
    assert all(ms > 0 for ms in timings.values())


def test_a_checkpoint_of_another_family_is_refused(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("model=agfusion", "logger=none", root=tmp_path / "train")
    model = build_model(cfg.model)
    ckpt = tmp_path / "agfusion.ckpt"
    torch.save({"state_dict": model.state_dict(), CONFIG_KEY: model.model_config}, ckpt)
    with pytest.raises(SystemExit, match="not a detector"):
        _bench().main(["--ckpt", str(ckpt), "--height", "32", "--width", "32", "--repeats", "1"])
