"""The network, its backbones, decoders and loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurocorr.backbones.dinov2 import dinov2
from neurocorr.backbones.small_cnn import small_cnn
from neurocorr.errors import ConfigError, WeightsError
from neurocorr.models.heatmapper.loss import HeatmapBCELoss, weighted_bce_with_logits
from neurocorr.models.heatmapper.torch_model import HeatmapperNet


@pytest.mark.parametrize("decoder", ["linear", "progressive"])
def test_small_cnn_net_outputs_logits_at_input_size(decoder: str) -> None:
    net = HeatmapperNet(small_cnn(widths=[8, 16], context_dilations=[2]), num_classes=3, decoder=decoder, hidden=16)
    out = net(torch.rand(2, 3, 40, 48))
    assert out.shape == (2, 3, 40, 48)
    assert out.mean() < -2  # the head starts at a low foreground prior
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_dinov2_patch_tokens_become_a_feature_map_and_stay_frozen() -> None:
    backbone = dinov2("vit_small_patch14_dinov2", pretrained=False, frozen=True)
    net = HeatmapperNet(backbone, num_classes=3, decoder="linear", hidden=50)
    net.train()
    assert not backbone.vit.training and backbone.out_channels == 384 and backbone.stride == 14
    assert not any(p.requires_grad for p in backbone.parameters())
    x = torch.rand(1, 3, 28, 42)
    features = backbone(x)
    assert features.shape == (1, 384, 2, 3)
    # the map is the patch tokens in row-major order
    tokens = backbone.vit.forward_features(x)[:, backbone.vit.num_prefix_tokens :]
    torch.testing.assert_close(features[0, :, 1, 2], tokens[0, 5])
    assert net(x).shape == (1, 3, 28, 42)
    with pytest.raises(ValueError, match="multiple of 14"):
        backbone(torch.rand(1, 3, 30, 28))


def test_dinov2_pretrained_true_offline_is_one_weights_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="pass a local file instead"):
        dinov2(pretrained=True)
    with pytest.raises(ConfigError, match="backbone.name"):
        dinov2(name="vit_tiny")
    # a local file with the model's state dict loads
    ref = dinov2(pretrained=False)
    torch.save(ref.vit.state_dict(), tmp_path / "w.pth")
    loaded = dinov2(pretrained=str(tmp_path / "w.pth"))
    torch.testing.assert_close(loaded.vit.pos_embed, ref.vit.pos_embed)


def test_unknown_decoder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="decoder"):
        HeatmapperNet(small_cnn(widths=[8]), decoder="transformer")


def test_loss_is_bce_on_logits_with_optional_positive_weight() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 8) * 4, torch.rand(2, 3, 8, 8)
    p = torch.sigmoid(logits.double())
    manual = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    torch.testing.assert_close(HeatmapBCELoss()(logits, target).double(), manual, rtol=1e-5, atol=1e-6)
    weighted = -(5 * target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    torch.testing.assert_close(HeatmapBCELoss(pos_weight=5.0)(logits, target).double(), weighted, rtol=1e-5, atol=1e-6)
    # a confidently wrong pixel: BCE on logits keeps the full loss and gradient; BCE after a sigmoid
    # (the seed) saturates: float32 sigmoid underflows, the log is clipped and the gradient vanishes
    wrong = torch.full((1, 1, 2, 2), -120.0, requires_grad=True)
    loss = HeatmapBCELoss()(wrong, torch.ones(1, 1, 2, 2))
    loss.backward()
    assert loss.item() == pytest.approx(120.0) and wrong.grad.abs().min() > 0.2
    seed = torch.full((1, 1, 2, 2), -120.0, requires_grad=True)
    F.binary_cross_entropy(torch.sigmoid(seed), torch.ones(1, 1, 2, 2)).backward()
    assert seed.grad.abs().max() == 0


def test_weighted_bce_equals_torch_in_value_and_gradient() -> None:
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(2, 3, 16, 16, generator=g) * 5).requires_grad_()
    target = torch.rand(2, 3, 16, 16, generator=g) * (torch.rand(2, 3, 16, 16, generator=g) > 0.7)
    for pos_weight in (None, 1.0, 5.0):
        ours = weighted_bce_with_logits(logits, target, pos_weight)
        pw = None if pos_weight is None else torch.tensor(pos_weight)
        theirs = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
        torch.testing.assert_close(ours, theirs)
        torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(theirs, logits)[0])
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    t = torch.rand(1, 2, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: weighted_bce_with_logits(v, t, 3.0), (x,))
    # channels_last logits (a GPU run) and bf16 logits (autocast): same loss, computed in float32
    cl = logits.detach().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(weighted_bce_with_logits(cl, target, 5.0), weighted_bce_with_logits(logits.detach(), target, 5.0))
    half = logits.detach().bfloat16().requires_grad_()
    loss = weighted_bce_with_logits(half, target, 5.0)
    loss.backward()
    assert loss.dtype == torch.float32 and half.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, weighted_bce_with_logits(half.detach().float(), target, 5.0))
    soft = target.clone().requires_grad_()  # a target with a gradient: torch's function, both gradients
    weighted_bce_with_logits(logits.detach(), soft, 5.0).backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ"):
        weighted_bce_with_logits(logits, target[:, :2])
