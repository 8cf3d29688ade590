"""HeatmapperModule follows the family contract: keyword arguments, seeded augmentation while fitting only,
declared batch keys and validation metrics, predictions mapped back to original pixels."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch

from neurocorr.backbones.small_cnn import small_cnn
from neurocorr.models.heatmapper.lightning_model import HeatmapperModule
from neurocorr.models.heatmapper.torch_model import HeatmapperNet


def _module(**kwargs) -> HeatmapperModule:
    net = HeatmapperNet(small_cnn(widths=[8, 16], context_dilations=[2]), num_classes=3, decoder="linear", hidden=8)
    return HeatmapperModule(net=net, optimizer=partial(torch.optim.AdamW, lr=1e-3), reference_size=32,
                            augment={"rotation": 90.0}, monitor="val/pck", monitor_mode="max", **kwargs)


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g),
            "points": torch.tensor([[[10.0, 12.0], [20.0, 16.0]]]).expand(2, 2, 2).clone(),
            "labels": torch.tensor([[0, 2], [1, -1]])}


def test_keyword_only_and_declared_keys_and_metrics() -> None:
    with pytest.raises(TypeError):
        HeatmapperModule(_module().net)  # type: ignore[misc]
    module = _module()
    assert module.required_batch_keys == ("image", "points", "labels")
    assert module.monitor in module.validation_metrics() and "val/pck_start_end" in module.validation_metrics()
    assert module.loss_fn is not None and isinstance(module.net, HeatmapperNet)


def test_augmentation_is_seeded_by_the_step_and_leaves_the_global_rng_alone() -> None:
    module = _module()
    module._trainer = SimpleNamespace(training=False, global_step=3)  # validating: no augmentation
    plain = module.on_after_batch_transfer(_batch(), 0)
    torch.testing.assert_close(plain["image"], _batch()["image"].float() / 255)
    module._trainer = SimpleNamespace(training=True, global_step=3)
    state = torch.get_rng_state()
    first = module.on_after_batch_transfer(_batch(), 0)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not drawn from
    torch.manual_seed(123)  # whatever the global state, the same step draws the same warp
    again = module.on_after_batch_transfer(_batch(), 0)
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["points"], again["points"])
    assert not torch.allclose(first["image"], plain["image"])
    module._trainer = SimpleNamespace(training=True, global_step=4)
    assert not torch.equal(module.on_after_batch_transfer(_batch(), 0)["points"], first["points"])


def test_predict_step_maps_keypoints_back_to_original_pixels() -> None:
    module = _module().eval()
    batch = _batch() | {"scale": torch.tensor([[0.5, 0.5], [0.25, 0.25]]), "offset": torch.tensor([[0.0, 4.0], [8.0, 0.0]])}
    with torch.no_grad():
        out = module.predict_step({**batch, "image": batch["image"].float() / 255}, 0)
        plain = module.predict_step({"image": batch["image"].float() / 255}, 0)
    expected = (plain["xy"] - batch["offset"].view(2, 1, 1, 2) + 0.5) / batch["scale"].view(2, 1, 1, 2) - 0.5
    torch.testing.assert_close(out["xy"], expected)
