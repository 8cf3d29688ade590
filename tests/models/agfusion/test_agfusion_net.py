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
    assert float(out.attention_a.min()) >= 0 and float(out.attention_a.max()) <= 1
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
