"""bench/throughput.py runs end to end on the CPU (tiny), and its GPU configurations compose."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from neurocorr.families import FAMILIES
from tests.conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("bench_throughput", REPO / "bench" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cpu_run_writes_json_and_markdown(tmp_path: Path) -> None:
    bench = _bench()
    tiny = ["data.image_size=32", "data.batch_size=8", "data.train_size=64"]
    code = bench.main(["--families", "agfusion", "--warmup", "1", "--steps", "3", "--data-dir", str(tmp_path / "data"),
                       "--out", str(tmp_path / "out"), "--override", *tiny])
    assert code == 0
    (result,) = json.loads((tmp_path / "out" / "throughput_cpu.json").read_text())
    assert result["family"] == "agfusion" and result["batch_size"] == 8
    assert result["input_shapes"] == [[8, 3, 32, 32]]  # the network's own inputs were captured
    assert result["loop_samples_per_s"] > 0 and result["bare_samples_per_s"] > 0 and result["bare_mean_samples_per_s"] > 0
    # the JSON rounds the ratio to 3 decimals: a slow loop (ratio 0.0297 -> 0.030) is off by 1 % from rounding alone
    assert result["ratio"] == pytest.approx(result["loop_samples_per_s"] / result["bare_samples_per_s"], rel=1e-2, abs=1e-3)
    assert "| agfusion | 8 |" in (tmp_path / "out" / "throughput_cpu.md").read_text()


def test_output_scalar_reaches_every_float_output() -> None:
    bench = _bench()
    a, b = torch.ones(2, requires_grad=True), torch.full((3,), 2.0, requires_grad=True)
    total = bench.output_scalar((a * 1, {"x": b * 1, "n": torch.tensor([1, 2])}))
    total.backward()
    assert float(total) == pytest.approx(3.0)
    assert a.grad is not None and b.grad is not None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_gpu_configurations_compose(tmp_path: Path, family: str) -> None:
    bench = _bench()
    spec = bench.specs("gpu")[family]
    cfg = bench.compose_config([*spec.overrides, f"data.root={tmp_path}" if family in ("qatm", "heatmapper") else
                                "trainer.max_epochs=1"], tmp_path)
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"


def test_gpu_mode_without_cuda_is_one_clear_error(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert _bench().main(["--mode", "gpu", "--out", str(tmp_path)]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
