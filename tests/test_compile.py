"""``model.compile``: torch.compile of the network gives the eager losses and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback

from neurocorr.checkpoints import CONFIG_KEY, StoreConfigs, build_model
from neurocorr.tasks.cli import user_error
from neurocorr.errors import ConfigError
from neurocorr.models.base import compile_backend
from tests.conftest import TINY_SHAPES


class StepRecorder(Callback):
    """The loss of every training step and the gradients of the first."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.grads: dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # noqa: ANN001
        if not self.grads:
            self.grads = {k: p.grad.detach().clone() for k, p in pl_module.named_parameters() if p.grad is not None}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.losses.append(float(outputs["loss"]))


def fit_one_step(make_cfg, root: Path, compile_value: str) -> tuple[pl.LightningModule, pl.Trainer, StepRecorder]:
    """One training step of the tiny agfusion module (32x32 images, batch 4) from the composed config.

    Augmentation is off: the comparison is of the network, and one augmented draw of these 4 flat
    synthetic images left a BatchNorm channel with almost no variance, which amplified float
    rounding to a 3% gradient difference (the loss still agreed to 1e-4)."""
    cfg = make_cfg(*TINY_SHAPES, "data.batch_size=4", "model.augment=false", f"model.compile={compile_value}", root=root)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    model = build_model(cfg.model)
    recorder = StepRecorder()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=1, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder, StoreConfigs(None)],
        default_root_dir=str(root),
    )
    trainer.fit(model, datamodule=datamodule)
    return model, trainer, recorder


def test_compiled_training_step_matches_eager_and_checkpoint_loads_uncompiled(make_cfg, tmp_path: Path) -> None:
    # The default inductor backend: compiling this tiny case took ~30-40 s on 2 CPU cores with a cold
    # inductor cache (~3 s warm), under the ~60 s for which the test would fall back to aot_eager.
    eager, _, eager_step = fit_one_step(make_cfg, tmp_path / "eager", "false")
    compiled, trainer, compiled_step = fit_one_step(make_cfg, tmp_path / "compiled", "true")
    assert eager.compile_backend is None
    assert compiled.compile_backend == "inductor"
    assert compiled.net._compiled_call_impl is not None and eager.net._compiled_call_impl is None
    assert len(eager_step.losses) == len(compiled_step.losses) == 1
    assert compiled_step.losses[0] == pytest.approx(eager_step.losses[0], abs=1e-4)
    # the backward through the compiled graph too (not the weights after the step: AdamW's first
    # step is ~lr * sign(grad), which turns float noise in near-zero gradients into lr-sized moves)
    assert eager_step.grads and list(compiled_step.grads) == list(eager_step.grads)
    for key, grad in eager_step.grads.items():
        torch.testing.assert_close(compiled_step.grads[key], grad, atol=1e-4, rtol=1e-3, msg=key)

    # in-place nn.Module.compile: the state-dict keys stay the same (no "_orig_mod.")
    compiled_state = compiled.state_dict()
    assert list(compiled_state) == list(eager.state_dict())

    # a checkpoint written by the compiled module loads (strictly) into an uncompiled one
    ckpt = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(ckpt)
    checkpoint = torch.load(ckpt, weights_only=True)
    stored = checkpoint[CONFIG_KEY]
    assert stored["compile"] is True
    stored["compile"] = False
    plain = build_model(OmegaConf.create(stored))
    plain.load_state_dict(checkpoint["state_dict"])
    assert plain.compile_backend is None and plain.net._compiled_call_impl is None
    for key, value in plain.state_dict().items():
        assert torch.equal(value, compiled_state[key]), key


@pytest.mark.parametrize(("value", "backend"), [(False, None), (None, None), (True, "inductor"), ("aot_eager", "aot_eager")])
def test_compile_values(value: object, backend: str | None) -> None:
    assert compile_backend(value) == backend


@pytest.mark.parametrize("value", ["no_such_backend", "", 1, 0.5, ["inductor"]])
def test_bad_compile_value_is_a_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match=r"model\.compile") as info:
        compile_backend(value)
    assert repr(value) in str(info.value)


def test_bad_compile_value_in_config_names_key(make_cfg) -> None:
    cfg = make_cfg(*TINY_SHAPES, "model.compile=inductorr")
    with pytest.raises(Exception) as info:
        build_model(cfg.model)
    err = user_error(info.value)
    assert isinstance(err, ConfigError)
    assert "model.compile" in str(err) and "'inductorr'" in str(err)


def test_channels_last_is_applied_on_cuda_only() -> None:
    from neurocorr.backbones.resnet_stem import resnet50_stem
    from neurocorr.models.agfusion.lightning_model import AGFusionModule
    from neurocorr.models.agfusion.torch_model import AGFusionNet

    module = AGFusionModule(net=AGFusionNet(resnet50_stem(False)), optimizer=torch.optim.AdamW, num_classes=2)
    weight = module.net.backbone.conv1.weight
    module._to_channels_last()  # on the CPU: left as it is
    assert weight.is_contiguous() and not weight.is_contiguous(memory_format=torch.channels_last)
    if torch.cuda.is_available():
        module.cuda()._to_channels_last()
        assert module.net.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
