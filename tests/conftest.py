"""Shared fixtures: configs composed from conf/ into a temporary run folder, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = REPO.parent / "shared" / "data"

# Tiny synthetic shapes: a few batches per split, fast on 2 cores.
TINY_SHAPES = [
    "data.train_size=96", "data.val_size=64", "data.test_size=64", "data.batch_size=32", "data.image_size=32",
]


def tiny_agfusion_data(tmp_path: Path) -> list[str]:
    return list(TINY_SHAPES)


# family -> function(tmp_path) writing tiny data for that family's experiments and returning the
# overrides that point them at it (used by the fast_dev_run test of every experiment config)
TINY_DATA: dict[str, Callable[[Path], list[str]]] = {
    "agfusion": tiny_agfusion_data,
}


def compose_config(tmp_path: Path, overrides: list[str], config_name: str = "train", run: str = "run") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` as ``@hydra.main`` would, with every path under ``tmp_path``
    and the run folder ``logs/<task>/runs/<run>``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        run_dir = tmp_path / "logs" / str(cfg.task_name) / "runs" / run
        cfg.paths.output_dir = str(run_dir)
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg(*overrides, config_name="train", root=tmp_path, run="run")`` -> composed config."""

    def make(*overrides: str, config_name: str = "train", root: Path | None = None, run: str = "run") -> DictConfig:
        return compose_config(root or tmp_path, list(overrides), config_name, run)

    yield make
    GlobalHydra.instance().clear()


def run_cli(script: str, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300,
            workdir: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python <script> args`` (the script from the repo or ``cwd``) in ``workdir`` (default: the
    script's folder), offline, capturing output."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str((cwd or REPO) / script), *args],
        cwd=workdir or cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )

# qatm family: tiny synthetic University-1652 (added by the qatm helper)
from tests.models.qatm.tiny import tiny_qatm_data  # noqa: E402

TINY_DATA["qatm"] = tiny_qatm_data

# heatmapper family: tiny synthetic gauges (added by the heatmapper helper)
from tests.models.heatmapper.tiny import tiny_heatmapper_data  # noqa: E402

TINY_DATA["heatmapper"] = tiny_heatmapper_data

# detector family: bundled scikit-image crops, tiny net (added by the detector helper)
from tests.models.detector.tiny import tiny_detector_data  # noqa: E402

TINY_DATA["detector"] = tiny_detector_data
