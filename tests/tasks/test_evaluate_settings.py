"""evaluate.py with a checkpoint: the stored preprocessing wins over a data= default (with a warning),
model.<key>= settings reach the rebuilt model, unknown keys are refused, and data.split=test_all tests
every labelled item of a Label Studio export or of class folders."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

import neurocorr.tasks.evaluate as evaluate_task
from neurocorr.checkpoints import CONFIG_KEY, DATA_KEY, build_model, stored_preprocessing
from neurocorr.data.agfusion import ClassFoldersDataModule
from neurocorr.data.heatmapper import GaugesDataModule
from neurocorr.data.synthetic.gauges import make_dataset
from neurocorr.errors import ConfigError, DataError
from neurocorr.tasks.evaluate import evaluate
from tests.conftest import tiny_class_folders

TRAINED_SIZE = 48  # px: the input side the fake checkpoint was "trained" at (data=gauges defaults to 448)


@pytest.fixture(scope="module")
def gauges(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("gauges") / "g", n_train=4, n_val=2, n_test=2, size=48, heldout_style=None)


@pytest.fixture
def heatmapper_ckpt(make_cfg, tmp_path: Path, gauges: Path) -> Path:
    """A heatmapper checkpoint (small CNN, untrained weights) whose stored data config says 48 px."""
    cfg = make_cfg("model=heatmapper", "backbone=small_cnn", "backbone.widths=[8,8,8]", "logger=none",
                   f"data.root={gauges}", f"data.image_size={TRAINED_SIZE}", "data.batch_size=2", root=tmp_path / "train")
    model = build_model(cfg.model)
    path = tmp_path / "heatmapper.ckpt"
    torch.save({"state_dict": model.state_dict(), CONFIG_KEY: model.model_config,
                DATA_KEY: OmegaConf.to_container(cfg.data, resolve=True), "pytorch-lightning_version": pl.__version__}, path)
    return path


def _run(make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str) -> dict:
    """Evaluate with ``overrides``; returns the model and data module the task built."""
    seen: dict = {}
    check = evaluate_task.check_pairing

    def spy(model, datamodule, *args):  # noqa: ANN001, ANN202
        seen.update(model=model, datamodule=datamodule)
        return check(model, datamodule, *args)

    monkeypatch.setattr(evaluate_task, "check_pairing", spy)
    cfg = make_cfg(*overrides, "logger=none", "trainer=cpu", "model.figure_samples=1", config_name="evaluate",
                   root=tmp_path / "eval")
    evaluate(cfg)
    return seen


def test_stored_preprocessing_wins_over_the_data_default_with_one_warning(make_cfg, tmp_path, monkeypatch, caplog,
                                                                          heatmapper_ckpt, gauges) -> None:
    assert stored_preprocessing(torch.load(heatmapper_ckpt, weights_only=True)) == {"image_size": TRAINED_SIZE}
    with caplog.at_level(logging.WARNING, logger="neurocorr"):
        seen = _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={heatmapper_ckpt}", "data=gauges", f"data.root={gauges}")
    assert seen["datamodule"].datasets["test"].image_size == TRAINED_SIZE
    warnings = [r.getMessage() for r in caplog.records if "image_size" in r.getMessage()]
    assert len(warnings) == 1 and "448" in warnings[0] and str(TRAINED_SIZE) in warnings[0], warnings


def test_an_explicit_data_key_is_used_with_a_warning_naming_both(make_cfg, tmp_path, monkeypatch, caplog,
                                                                 heatmapper_ckpt, gauges) -> None:
    with caplog.at_level(logging.WARNING, logger="neurocorr"):
        seen = _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={heatmapper_ckpt}", "data=gauges", f"data.root={gauges}",
                    "data.image_size=64")
    assert seen["datamodule"].datasets["test"].image_size == 64
    warnings = [r.getMessage() for r in caplog.records if "image_size" in r.getMessage()]
    assert len(warnings) == 1 and "64" in warnings[0] and str(TRAINED_SIZE) in warnings[0], warnings


def test_model_settings_reach_the_model_rebuilt_from_the_checkpoint(make_cfg, tmp_path, monkeypatch, heatmapper_ckpt) -> None:
    seen = _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={heatmapper_ckpt}", "model.pck_threshold=5",
                "model.extraction.method=meanshift")
    assert seen["model"].pck_threshold == 5 and seen["model"].method == "meanshift"
    assert seen["datamodule"].datasets["test"].image_size == TRAINED_SIZE  # the stored data config, unchanged
    written = OmegaConf.load(tmp_path / "eval" / "logs" / "evaluate" / "runs" / "run" / "config.yaml")
    assert written.model.pck_threshold == 5 and written.model._target_.endswith("HeatmapperModule")


def test_a_setting_added_after_the_checkpoint_was_saved_is_taken(make_cfg, tmp_path, monkeypatch, heatmapper_ckpt) -> None:
    state = torch.load(heatmapper_ckpt, weights_only=True)
    assert state[CONFIG_KEY].pop("pck_threshold") is not None         # saved before the setting existed
    older = tmp_path / "older.ckpt"
    torch.save(state, older)
    seen = _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={older}", "model.pck_threshold=7")
    assert seen["model"].pck_threshold == 7                             # a constructor keyword: accepted
    with pytest.raises(ConfigError, match=r"model\.pck_treshold is not a setting"):
        _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={older}", "model.pck_treshold=7")


def test_a_nested_setting_added_after_the_checkpoint_was_saved_is_taken(make_cfg, tmp_path, monkeypatch,
                                                                           heatmapper_ckpt) -> None:
    state = torch.load(heatmapper_ckpt, weights_only=True)
    backbone = state[CONFIG_KEY]["net"]["backbone"]
    assert backbone.pop("context_dilations") == [2, 4, 8]               # a nested target's keyword, saved without it
    older = tmp_path / "older_nested.ckpt"
    torch.save(state, older)
    with pytest.raises(ConfigError, match="do not fit"):               # taken (no 'not a setting'): 1 dilated conv, not 3
        _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={older}", "model.net.backbone.context_dilations=[2]")
    seen = _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={older}", "model.net.backbone.context_dilations=[2,4,8]")
    assert seen["model"] is not None
    with pytest.raises(ConfigError, match=r"model\.net\.backbone\.context_dilation is not a setting"):
        _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={older}", "model.net.backbone.context_dilation=[2]")


def test_an_unknown_model_key_is_one_line_listing_the_valid_keys(make_cfg, tmp_path, monkeypatch, heatmapper_ckpt) -> None:
    with pytest.raises(ConfigError, match=r"model\.pck_treshold is not a setting of the heatmapper config.*valid keys:.*pck_threshold"):
        _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={heatmapper_ckpt}", "model.pck_treshold=5")


def test_test_all_makes_a_small_label_studio_export_one_test_set(make_cfg, tmp_path, monkeypatch, heatmapper_ckpt,
                                                                  gauges) -> None:
    export = gauges / "train" / "export.json"  # 4 labelled gauges: a fractions split leaves val empty
    with pytest.raises(DataError, match="val split is empty"):
        GaugesDataModule(annotations=str(export), image_size=32)
    seen = _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={heatmapper_ckpt}", f"data.annotations={export}",
                "data.split=test_all")
    assert len(seen["datamodule"].datasets["test"]) == 4
    with pytest.raises(ConfigError, match=r"data\.splt is not a setting"):
        _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={heatmapper_ckpt}", "data.splt=test_all")


def test_test_all_puts_every_class_folder_image_in_the_test_pairs(tmp_path: Path) -> None:
    root = tiny_class_folders(tmp_path)[0].split("=", 1)[1]
    data = ClassFoldersDataModule(root=root, image_size=16, split="test_all", verify_images=False)
    files = [p for images in data.split.files["test"] for p in images]
    test = data.datasets["test"]
    assert len(test) == 2 * len(files) == 48
    draws = [test._draw(i) for i in range(len(test))]
    assert {test.files[ca][ia] for ca, ia, _, _ in draws} == set(files)
    assert [ca == cb for ca, _, cb, _ in draws] == [True, False] * len(files)
    with pytest.raises(DataError, match="train split is empty"):
        data.train_dataloader()


def test_a_data_set_of_another_family_is_one_line_naming_both(make_cfg, tmp_path, monkeypatch, heatmapper_ckpt) -> None:
    with pytest.raises(ConfigError, match=r"data=shapes \(ShapesDataModule\) does not fit the heatmapper model"):
        _run(make_cfg, tmp_path, monkeypatch, f"ckpt_path={heatmapper_ckpt}", "data=shapes")
