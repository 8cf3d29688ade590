"""Resume continues the interrupted run: same folder, same best checkpoint, same test metrics."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from neurocorr.errors import ConfigError
from neurocorr.tasks.train import train
from tests.conftest import TINY_SHAPES
from tests.tasks.test_checkpoint_safety import Payload

TINY = [*TINY_SHAPES, "logger=none", "trainer=cpu", "trainer.deterministic=true", "callbacks.progress_bar=null",
        "trainer.max_epochs=2"]


def test_interrupted_then_resumed_equals_uninterrupted_bit_for_bit(make_cfg, tmp_path: Path) -> None:
    straight = make_cfg(*TINY, root=tmp_path / "straight")
    train(straight)
    expected = json.loads((Path(straight.paths.output_dir) / "metrics.json").read_text())

    first = make_cfg(*TINY, "+callbacks.interrupt._target_=tests.helpers.InterruptAfterEpoch", "+callbacks.interrupt.epoch=0",
                     root=tmp_path / "resumed")
    with pytest.raises(SystemExit):  # Lightning's graceful shutdown after Ctrl+C
        train(first)
    run_dir = Path(first.paths.output_dir)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "metrics.json").exists()

    second = make_cfg(*TINY, "ckpt_path=last", root=tmp_path / "resumed", run="run2")
    train(second)
    assert second.paths.output_dir == str(run_dir), "the resumed run continues in the interrupted run's folder"
    resumed = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/f1", "test/auroc", "test/acc", "test/loss", "val/f1", "train/loss"):
        assert resumed[key] == expected[key], key
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == \
        sorted(p.name for p in (Path(straight.paths.output_dir) / "checkpoints").iterdir())


def test_resume_never_unpickles_a_planted_checkpoint(make_cfg, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    planted = tmp_path / "last.ckpt"
    with open(planted, "wb") as f:
        pickle.dump({"state_dict": {}, "epoch": Payload(marker)}, f)
    cfg = make_cfg(*TINY, f"ckpt_path={planted}")
    with pytest.raises(ConfigError, match="never loaded"):
        train(cfg)
    assert not marker.exists()


def test_a_checkpoint_of_another_family_is_one_line(make_cfg, tmp_path: Path) -> None:
    import torch

    from neurocorr.checkpoints import CONFIG_KEY
    from neurocorr.families import FAMILIES

    other = tmp_path / "qatm.ckpt"
    torch.save({"state_dict": {}, CONFIG_KEY: {"_target_": FAMILIES["qatm"]}}, other)
    with pytest.raises(ConfigError, match="holds a qatm model; this run trains agfusion"):
        train(make_cfg(*TINY, f"ckpt_path={other}"))
