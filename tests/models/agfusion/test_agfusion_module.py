"""AGFusionModule on the family contract: keyword-only, declared keys and metrics, the gate switch,
seeded augmentation only while fitting, the hardest test pairs."""

from __future__ import annotations

import pytest
import torch

from neurocorr.backbones.small_cnn import small_cnn
from neurocorr.data.agfusion import ClassFoldersDataModule, ShapesDataModule
from neurocorr.models.agfusion.lightning_model import AGFusionModule
from neurocorr.models.agfusion.torch_model import AGFusionNet, AGFusionOutput


def tiny_net(**kw: object) -> AGFusionNet:
    torch.manual_seed(0)
    return AGFusionNet(small_cnn([8, 16], [2]), embedding_dim=8, input_norm="per_image", **kw).eval()


def test_keyword_only_with_declared_keys_and_validation_metrics() -> None:
    with pytest.raises(TypeError):
        AGFusionModule(tiny_net(), optimizer=torch.optim.AdamW)  # type: ignore[misc]
    module = AGFusionModule(net=tiny_net(), optimizer=torch.optim.AdamW, num_classes=2)
    assert sorted(module.validation_metrics()) == ["val/acc", "val/auroc", "val/f1", "val/loss"]
    # every pair data module yields what the module needs
    for dm_class in (ShapesDataModule, ClassFoldersDataModule):
        assert set(module.required_batch_keys) <= set(dm_class.batch_keys)
    assert module.missing_batch_keys(["image_a", "image_b", "label"]) == ["class_a", "class_b"]


def test_no_augmentation_outside_fitting() -> None:
    module = AGFusionModule(net=tiny_net(), optimizer=torch.optim.AdamW, num_classes=2)
    image = torch.arange(3 * 8 * 8, dtype=torch.uint8).view(1, 3, 8, 8).expand(16, 3, 8, 8)
    batch = {"image_a": image, "image_b": image, "label": torch.ones(16)}
    out = module.on_after_batch_transfer(batch, 0)
    assert torch.equal(out["image_a"], image.float() / 255)  # not fitting (no trainer): no augmentation
    assert not module.is_fitting


def test_gate_off_exchanges_nothing() -> None:
    net = tiny_net(gate=False)
    assert net.gate is None and not any("gate" in k for k in net.state_dict())
    a, b = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        out, other = net(a, b), net(a, torch.rand(3, 3, 32, 32))
    assert torch.equal(out.attention_a, torch.zeros(3, 1, 8, 8))
    assert torch.allclose(out.embedding_a, other.embedding_a, atol=1e-6)  # a's embedding ignores b
    gated = tiny_net(gate=True)
    with torch.no_grad():
        assert not torch.allclose(gated(a, b).embedding_a, gated(a, torch.rand(3, 3, 32, 32)).embedding_a, atol=1e-6)


def test_hardest_pairs_keep_the_most_wrong_probabilities() -> None:
    module = AGFusionModule(net=tiny_net(), optimizer=torch.optim.AdamW, num_classes=2, hardest_pairs=3)
    for probability, label in [([0.9, 0.2, 0.6], [1.0, 1.0, 0.0]), ([0.05, 0.99, 0.5], [0.0, 0.0, 1.0])]:
        n = len(label)
        batch = {"image_a": torch.zeros(n, 3, 4, 4), "image_b": torch.zeros(n, 3, 4, 4), "label": torch.tensor(label)}
        module._keep_hardest(batch, torch.tensor(probability))
    assert module._hardest["probability"].tolist() == pytest.approx([0.99, 0.2, 0.6])
    assert module._hardest["image_a"].shape == (3, 3, 4, 4)


def test_backbone_weights_of_a_checkpoint_start_another_run(tmp_path) -> None:
    from neurocorr.backbones.small_cnn import small_cnn as build
    from neurocorr.errors import WeightsError
    from neurocorr.models.agfusion.backbone_weights import main

    module = AGFusionModule(net=tiny_net(), optimizer=torch.optim.AdamW, num_classes=2)
    torch.save({"state_dict": module.state_dict()}, tmp_path / "agfusion.ckpt")
    assert main([str(tmp_path / "agfusion.ckpt"), str(tmp_path / "backbone.pth")]) == 0
    loaded = build([8, 16], [2], pretrained=str(tmp_path / "backbone.pth"))
    for key, value in module.net.backbone.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    torch.save({"state_dict": {"other.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(WeightsError, match="holds no net.backbone"):
        main([str(tmp_path / "other.ckpt"), str(tmp_path / "x.pth")])


class CornerNet(torch.nn.Module):
    """A stub net that is not D4-invariant: the logit reads the top row of a and the left column of b."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> AGFusionOutput:
        logit = a[:, 0, 0, :].sum(1) * 3 + b[:, 0, :, 1].sum(1)
        zeros = torch.zeros(a.shape[0], 2)
        return AGFusionOutput(logit, logit.tanh(), zeros, zeros, zeros, zeros, zeros, zeros)


def test_test_time_augmentation_makes_the_logit_invariant_to_d4() -> None:
    from neurocorr.models.agfusion.dihedral import apply_dihedral

    module = AGFusionModule(net=CornerNet(), optimizer=torch.optim.AdamW, identification_weight=0,
                            test_time_augment=True).eval()
    a, b = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    batch = {"image_a": a, "image_b": b, "label": torch.ones(4)}
    for k in (1, 4, 6):
        turn = torch.full((4,), k, dtype=torch.long)
        turned = {"image_a": apply_dihedral(a, turn), "image_b": apply_dihedral(b, turn), "label": torch.ones(4)}
        module.test_time_augment = True
        assert torch.allclose(module._step(batch)[1].logit, module._step(turned)[1].logit, atol=1e-5)
        module.test_time_augment = False  # without it the stub is not invariant
        assert not torch.allclose(module._step(batch)[1].logit, module._step(turned)[1].logit, atol=1e-3)


def test_random_affine_identity_area_turns_and_bad_ranges() -> None:
    from neurocorr.errors import ConfigError
    from neurocorr.models.agfusion.affine import RandomAffine

    size = 33
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    disc = ((x**2 + y**2) < 10**2).float().expand(8, 1, size, size)
    bar = ((y.abs() < 2) & (x.abs() < 12)).float().expand(8, 1, size, size)
    still = RandomAffine(rotation_deg=0, scale=(1, 1), aspect=(1, 1), translate=0)
    assert torch.allclose(still(bar), bar, atol=1e-5)
    stretch = RandomAffine(rotation_deg=180, scale=(1, 1), aspect=(3, 3), translate=0)
    assert torch.allclose(torch.linalg.det(stretch.matrices(16)[:, :, :2]).abs(), torch.ones(16), atol=1e-4)  # area kept
    turn = RandomAffine(rotation_deg=180, scale=(1, 1), aspect=(1, 1), translate=0)
    g = torch.Generator().manual_seed(0)
    assert float((turn(disc, g) - disc).abs().mean()) < 0.02                 # a disc is any turn of itself
    assert float((turn(bar, g) - bar).abs().mean()) > 0.05                   # a bar is not
    for bad in ({"scale": (0, 1)}, {"aspect": (0.5, 2)}, {"translate": -1}):
        with pytest.raises(ConfigError, match="augment_affine"):
            RandomAffine(**bad)
