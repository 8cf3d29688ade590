"""AGFusion network: shapes, symmetry of the gate, embeddings, gradients."""

from __future__ import annotations

import pytest
import torch

from neurocorr.backbones.resnet_stem import resnet50_stem
from neurocorr.models.agfusion.attention_gate import MutualAttentionGate
from neurocorr.models.agfusion.torch_model import AGFusionNet


@pytest.fixture(scope="module")
def net() -> AGFusionNet:
    torch.manual_seed(0)
    return AGFusionNet(resnet50_stem(False)).eval()


def test_output_shapes_and_ranges(net: AGFusionNet) -> None:
    a, b = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    out = net(a, b)
    assert out.logit.shape == (3,) and out.similarity.shape == (3,)
    assert out.embedding_a.shape == (3, 128)
    assert torch.allclose(out.embedding_a.norm(dim=1), torch.ones(3), atol=1e-5)
    assert out.attention_a.shape == (3, 1, 8, 8)
    assert float(out.attention_a.detach().min()) >= 0 and float(out.attention_a.detach().max()) <= 1
    assert torch.allclose(out.similarity, (out.embedding_a * out.embedding_b).sum(1), atol=1e-6)


def test_swapping_the_inputs_swaps_the_outputs(net: AGFusionNet) -> None:
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    ab, ba = net(a, b), net(b, a)
    assert torch.allclose(ab.logit, ba.logit, atol=1e-5)
    assert torch.allclose(ab.embedding_a, ba.embedding_b, atol=1e-5)
    assert torch.allclose(ab.attention_a, ba.attention_b, atol=1e-6)


def test_gate_exchanges_features_from_the_other_branch() -> None:
    gate = MutualAttentionGate(16).eval()
    f_a, f_b = torch.randn(2, 16, 5, 5), torch.randn(2, 16, 5, 5)
    g_a, _, att_a, _ = gate(f_a, f_b)
    assert torch.allclose(g_a, f_a + att_a * f_b)
    g_a2, _, _, _ = gate(f_a, f_b * 2)
    assert not torch.allclose(g_a, g_a2)  # branch a depends on branch b


def test_bad_input_shapes_are_refused(net: AGFusionNet) -> None:
    with pytest.raises(ValueError, match="two .B, 3, H, W. images"):
        net(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="equal"):
        MutualAttentionGate(8)(torch.rand(1, 8, 4, 4), torch.rand(1, 8, 4, 5))


def test_gradients_reach_the_backbone() -> None:
    net = AGFusionNet(resnet50_stem(False)).train()
    out = net(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32))
    torch.nn.functional.binary_cross_entropy_with_logits(out.logit, torch.tensor([0.0, 1.0, 0.0, 1.0])).backward()
    assert net.backbone.conv1.weight.grad is not None and net.backbone.conv1.weight.grad.abs().sum() > 0


def test_per_image_input_norm_ignores_colour_and_contrast() -> None:
    torch.manual_seed(0)
    net = AGFusionNet(resnet50_stem(False), input_norm="per_image").eval()
    a, b = torch.rand(2, 3, 32, 32) * 0.5 + 0.25, torch.rand(2, 3, 32, 32)
    offset = torch.tensor([0.2, -0.1, 0.15]).view(1, 3, 1, 1)
    with torch.no_grad():
        reference = net(a, b).embedding_a
        assert torch.allclose(reference, net(a + offset, b).embedding_a, atol=1e-4)  # colour shift: exact
        # contrast: exact up to the eps in the denominator
        assert torch.allclose(reference, net((a - 0.5) * 0.8 + 0.5, b).embedding_a, atol=0.05)
        fixed = AGFusionNet(resnet50_stem(False), input_norm="imagenet").eval()
        assert not torch.allclose(fixed(a, b).embedding_a, fixed(a + offset, b).embedding_a, atol=0.05)


def test_unknown_input_norm_is_a_config_error() -> None:
    from neurocorr.errors import ConfigError

    with pytest.raises(ConfigError, match="model.net.input_norm .* 'zscore'"):
        AGFusionNet(resnet50_stem(False), input_norm="zscore")


def test_identification_loss_trains_the_backbone_from_class_labels() -> None:
    from neurocorr.models.agfusion.lightning_model import AGFusionModule

    torch.manual_seed(0)
    module = AGFusionModule(net=AGFusionNet(resnet50_stem(False)), optimizer=torch.optim.AdamW, num_classes=2)
    batch = {"image_a": torch.rand(4, 3, 32, 32), "image_b": torch.rand(4, 3, 32, 32),
             "class_a": torch.tensor([0, 1, 0, 1]), "class_b": torch.tensor([1, 1, 0, 0])}
    out = module.net(batch["image_a"], batch["image_b"])
    loss = module.identification_loss(out, batch)
    assert loss.shape == () and 0.3 < float(loss) < 2.0  # ~log(2) for an untrained head
    loss.backward()
    assert module.net.backbone.conv1.weight.grad.abs().sum() > 0
    assert module.identifier.weight.grad.abs().sum() > 0
    # without a class count the head waits for the data module; weight 0 means no head at all
    assert AGFusionModule(net=AGFusionNet(resnet50_stem(False)), optimizer=torch.optim.AdamW).identifier is None
    assert AGFusionModule(net=AGFusionNet(resnet50_stem(False)), optimizer=torch.optim.AdamW, num_classes=2,
                          identification_weight=0).identifier is None
