"""``EpochWeightAverage``: the run's model is the uniform average of the chosen epochs' weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neurocorr.callbacks import EpochWeightAverage
from neurocorr.checkpoints import load_checkpoint
from neurocorr.errors import ConfigError
from neurocorr.tasks.train import train
from tests.conftest import TINY_SHAPES

TINY = [*TINY_SHAPES, "logger=none", "trainer=cpu", "trainer.deterministic=true", "callbacks.progress_bar=null",
        "trainer.max_epochs=3", "callbacks.model_checkpoint.save_top_k=-1"]
AVERAGE = ["+callbacks.weight_average._target_=neurocorr.callbacks.EpochWeightAverage",
           "+callbacks.weight_average.dirpath=${paths.output_dir}/checkpoints", "+callbacks.weight_average.start_epoch=1"]


def test_the_average_of_the_chosen_epochs_is_written_tested_and_exported(make_cfg, tmp_path: Path) -> None:
    export = tmp_path / "model.ckpt"
    cfg = make_cfg(*TINY, *AVERAGE, f"+export_ckpt={export}")
    train(cfg)
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    epochs = [load_checkpoint(folder / f"epoch_{i:03d}.ckpt")["state_dict"] for i in (1, 2)]
    average = load_checkpoint(folder / "average.ckpt")["state_dict"]
    floats = [name for name, value in average.items() if torch.is_floating_point(value)]
    assert floats and set(average) == set(epochs[0])
    moved = False
    for name in floats:
        expected = ((epochs[0][name].double() + epochs[1][name].double()) / 2).to(average[name].dtype)
        torch.testing.assert_close(average[name], expected, rtol=0, atol=1e-6)
        moved |= not torch.equal(epochs[0][name], epochs[1][name])
    assert moved, "the two epochs must differ, or the average proves nothing"
    # the train task tests (and exports) the average, not the monitored best checkpoint
    assert export.read_bytes() == (folder / "average.ckpt").read_bytes()
    assert "test/loss" in json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def test_interrupted_then_resumed_averages_the_same_epochs(make_cfg, tmp_path: Path) -> None:
    # epochs 0 and 1, interrupted between them: the resumed run must still count epoch 0
    two = [*TINY, "trainer.max_epochs=2", *AVERAGE[:2], "+callbacks.weight_average.start_epoch=0"]
    straight = make_cfg(*two, root=tmp_path / "straight")
    train(straight)
    first = make_cfg(*two, "+callbacks.interrupt._target_=tests.helpers.InterruptAfterEpoch",
                     "+callbacks.interrupt.epoch=0", root=tmp_path / "resumed")
    with pytest.raises(SystemExit):  # Lightning's graceful shutdown after Ctrl+C
        train(first)
    train(make_cfg(*two, "ckpt_path=last", root=tmp_path / "resumed", run="run2"))
    expected = load_checkpoint(Path(straight.paths.output_dir) / "checkpoints" / "average.ckpt")["state_dict"]
    resumed = load_checkpoint(Path(first.paths.output_dir) / "checkpoints" / "average.ckpt")["state_dict"]
    for name, value in expected.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0)


def test_no_epoch_reached_means_no_average(make_cfg) -> None:
    cfg = make_cfg(*TINY, *AVERAGE[:2], "+callbacks.weight_average.start_epoch=1", "trainer.max_epochs=1")
    train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints" / "average.ckpt").exists()


def test_non_finite_weights_are_never_written_as_the_average(tmp_path: Path) -> None:
    class Trainer:  # only what on_train_end may touch
        saved: list[str] = []

        def save_checkpoint(self, path: str, weights_only: bool = False) -> None:
            self.saved.append(path)

    module = torch.nn.Linear(2, 1)
    before = {name: value.clone() for name, value in module.state_dict().items()}
    average = EpochWeightAverage(str(tmp_path))
    average.count, average.sums = 1, {"weight": torch.full((1, 2), float("nan"), dtype=torch.float64),
                                      "bias": torch.zeros(1, dtype=torch.float64)}
    trainer = Trainer()
    average.on_train_end(trainer, module)
    assert trainer.saved == [] and average.path is None
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize("start", [-1, 1.5, True])
def test_a_bad_start_epoch_is_one_clear_error(start) -> None:
    with pytest.raises(ConfigError, match="start_epoch"):
        EpochWeightAverage("unused", start_epoch=start)
