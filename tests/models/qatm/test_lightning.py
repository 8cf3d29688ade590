"""The qatm training path end to end (fast_dev_run) and localisation evaluation on template pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch

from neurocorr.checkpoints import build_model
from neurocorr.tasks.train import train
from neurocorr.data.qatm import TemplatePairsDataModule
from tests.models.qatm.tiny import tiny_qatm_data


def test_train_fast_dev_run_with_smooth_ap_and_learnable_alpha(make_cfg, tmp_path: Path):
    cfg = make_cfg("model=qatm", "loss=smooth_ap", "model.net.learn_alpha=true", "debug=fast_dev_run", "trainer.accelerator=cpu", *tiny_qatm_data(tmp_path))
    train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert {"train/loss", "test/recall_at_1", "test/ap", "test/recall_at_top1pct"} <= set(metrics)
    assert 0 <= metrics["test/recall_at_1"] <= 1


def test_backbone_is_trained_and_freezing_is_an_option(make_cfg, tmp_path: Path):
    cfg = make_cfg("model=qatm", "backbone.width=0.125", "backbone.freeze_layers=2", *tiny_qatm_data(tmp_path)[:1])
    model = build_model(cfg.model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "net.backbone.features.0.weight" not in trainable
    assert "net.backbone.features.2.weight" in trainable and "net.head.proj.weight" in trainable
    before = model.net.backbone.features[2].weight.detach().clone()
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    g = torch.Generator().manual_seed(0)
    batch = {"drone": torch.rand(4, 3, 32, 32, generator=g), "satellite": torch.rand(4, 3, 32, 32, generator=g), "label": torch.tensor([0, 1, 2, 3])}
    model.log = lambda *a, **k: None
    loss = model.training_step(batch, 0)
    loss.backward()
    opt.step()
    assert not torch.equal(before, model.net.backbone.features[2].weight)


def test_localisation_evaluation_on_template_pairs(make_cfg, tmp_path: Path):
    overrides = tiny_qatm_data(tmp_path)
    cfg = make_cfg("model=qatm", "backbone.width=0.125", "model.net.stride=4", *overrides)
    model = build_model(cfg.model)
    dm = TemplatePairsDataModule(root=str(tmp_path / "u1652" / "localisation"), batch_size=2)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=str(tmp_path / "run"))
    out = trainer.test(model, datamodule=dm, verbose=False)[0]
    for key in ("test/success_at_0.5", "test/success_auc", "test/mean_iou", "test/map"):
        assert key in out and 0 <= out[key] <= 1, key
    assert (tmp_path / "run" / "figures" / "localisation_test_pairs.png").is_file()


def test_matching_experiment_trains_and_tests_against_both_baselines(make_cfg, tmp_path: Path):
    from neurocorr.data.synthetic.aerial_pairs import make_view_pairs

    root = make_view_pairs(tmp_path / "pairs", n_train=1, n_val=1, n_heldout=1, views=1, templates=2, world_size=160, view=96)
    cfg = make_cfg("experiment=qatm_match_cpu", "debug=fast_dev_run", "logger=none", "backbone.width=0.125", f"data.root={root}/heldout_pairs.csv",
                   f"data.train_csv=[{root}/train_pairs.csv]", f"data.val_csv={root}/val_pairs.csv", "~data.extra_test",
                   "data.bundled_images=[camera]", "data.crops_per_image=2", "model.match.scales=[0.71,1.0,1.41]")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    for method in ("", "ncc/", "untrained/"):
        assert 0 <= metrics[f"test/{method}success_auc"] <= 1 and 0 <= metrics[f"test/{method}mean_iou"] <= 1
    assert "train/alpha" in metrics
    table = (out / "localisation_table.md").read_text()
    assert "| model |" in table and "| untrained |" in table and "| ncc |" in table
    assert (out / "figures" / "localisation_test_pairs.png").is_file()


def test_retrieval_ranked_by_qatm_beside_embeddings(make_cfg, tmp_path: Path):
    cfg = make_cfg("model=qatm", "backbone.width=0.125", "model.evaluation.qatm_retrieval=true", *tiny_qatm_data(tmp_path))
    model = build_model(cfg.model)
    from neurocorr.data.qatm import University1652DataModule

    dm = University1652DataModule(root=str(tmp_path / "u1652"), image_size=32, batch_size=8)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=str(tmp_path / "run"))
    out = trainer.test(model, datamodule=dm, verbose=False)[0]
    for ranking in ("", "qatm/"):
        for k in ("recall_at_1", "recall_at_5", "recall_at_10", "ap"):
            assert 0 <= out[f"test/{ranking}{k}"] <= 1, (ranking, k)
    assert out["test/recall_at_10"] >= out["test/recall_at_1"]
    for name in ("embedding", "qatm"):
        assert (tmp_path / "run" / "figures" / f"retrieval_top5_{name}.png").is_file()
