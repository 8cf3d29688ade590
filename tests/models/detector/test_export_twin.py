"""The detector's plain-torch export (``export.DetectorExport``) gives the e2cnn network's outputs for
every input option: pyramid levels, handcrafted responses with the Harris skip, and the locally
normalised image copies of the descriptor head (which the export once left out)."""

from __future__ import annotations

import pytest
import torch

from neurocorr.errors import ConfigError
from neurocorr.models.detector.export import DetectorExport
from neurocorr.models.detector.torch_model import DetectorOutput, EquivariantDetector

OPTIONS = {
    "plain": {},
    "handcrafted_skip": {"handcrafted": (0.0, 2.0), "harris_skip": 4.0},
    "descriptor_image": {"handcrafted": (1.0,), "descriptor_image": (0.0, 1.0)},
    "bounded_residual": {"handcrafted": (0.0,), "harris_skip": 4.0, "score_residual": 0.5},
    "harris_log_input": {"handcrafted": (0.0,), "harris_skip": 4.0, "harris_log_input": True},
    "log_skip": {"handcrafted": (0.0,), "harris_skip": 1.0, "harris_skip_form": "log", "score_residual": 0.5},
}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_export_twin_equals_the_network(options: dict) -> None:
    torch.manual_seed(0)
    net = EquivariantDetector(group_order=4, layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, **options)
    with torch.no_grad():
        net.score_head[-1].weight.normal_()  # a trained head (the Harris skip starts it at zero)
    net.train()
    with torch.no_grad():
        net(torch.rand(2, 1, 33, 40))  # batch-norm statistics that are not the identity
    net.eval()
    image = torch.rand(2, 1, 33, 40)
    with torch.enable_grad():  # the e2cnn modules themselves: without autograd the network runs its plain twins
        expected = DetectorOutput(*(t.detach() for t in net(image)))
    with torch.no_grad():
        got = DetectorExport(net)(image)
    assert expected.features.shape[1] == net.descriptor_head.out_channels
    for name, a, b in zip(("score", "orientation", "features"), expected, got):
        assert a.shape == b.shape, name
        assert torch.allclose(a, b, atol=1e-5), (name, float((a - b).abs().max()))
    assert expected.score.std() > 1e-4  # a constant map would pass trivially


def test_a_harris_peaked_export_adds_the_map_its_keypoints_are_found_on() -> None:
    torch.manual_seed(0)
    net = EquivariantDetector(group_order=4, layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, handcrafted=(0.0, 2.0),
                              harris_skip=4.0).eval()
    image = torch.rand(2, 1, 33, 40)
    with torch.no_grad():
        plain, with_map = DetectorExport(net)(image), DetectorExport(net, peak_map=True)(image)
        expected = net.harris_score(image)
    assert len(plain) == 3 and len(with_map) == 4 and DetectorExport(net, peak_map=True).output_names[-1] == "peak_map"
    for a, b in zip(plain, with_map):
        assert torch.equal(a, b)
    torch.testing.assert_close(with_map[3], expected)
    assert expected.std() > 1e-3
    with pytest.raises(ConfigError, match="harris_skip"):
        DetectorExport(EquivariantDetector(group_order=4, layer_1=1, layer_2=1, layer_3=1), peak_map=True)


def _trained_net() -> EquivariantDetector:
    torch.manual_seed(0)
    net = EquivariantDetector(group_order=4, layer_1=1, layer_2=2, layer_3=1, pyramid_levels=2, handcrafted=(0.0,),
                              harris_skip=4.0, descriptor_image=(0.0,))
    with torch.no_grad():
        net.score_head[-1].weight.normal_()
    net.train()
    with torch.no_grad():
        net(torch.rand(2, 1, 33, 40))
    return net.eval()


def _e2cnn_outputs(net: EquivariantDetector, image: torch.Tensor) -> DetectorOutput:
    with torch.enable_grad():
        return DetectorOutput(*(t.detach() for t in net(image)))


def test_without_autograd_the_network_runs_plain_twins_with_the_same_outputs() -> None:
    net, image = _trained_net(), torch.rand(1, 1, 41, 36)
    keys = set(net.state_dict())
    expected = _e2cnn_outputs(net, image)
    assert "_plain_cache" not in net.__dict__  # autograd on: the e2cnn modules
    with torch.inference_mode():
        got = net(image)
    assert "_plain_cache" in net.__dict__ and set(net.state_dict()) == keys  # built, and not saved with the weights
    for name, a, b in zip(DetectorOutput._fields, expected, got):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5, msg=name)
    assert got.score.std() > 1e-4
    with torch.no_grad():  # the twins are ordinary tensors: plain no_grad can use them after inference mode built them
        torch.testing.assert_close(net(image).features, got.features)


def test_the_plain_twins_follow_every_change_of_the_weights() -> None:
    net, image = _trained_net(), torch.rand(1, 1, 41, 36)
    with torch.no_grad():
        before = net(image).features
        dict(net.block2.named_buffers())["body.1.batch_norm_[4].running_mean"].add_(0.5)
        after_stats = net(image).features  # a buffer changed in place, no mode switch
    torch.testing.assert_close(after_stats, _e2cnn_outputs(net, image).features, atol=1e-5, rtol=1e-5)
    assert (after_stats - before).abs().max() > 1e-3
    with torch.no_grad():
        dict(net.block1.named_parameters())["body.0.weights"].add_(0.3)
    net.train().eval()  # e2cnn expands its filters again on the switch to eval
    with torch.no_grad():
        after_weights = net(image).features
    torch.testing.assert_close(after_weights, _e2cnn_outputs(net, image).features, atol=1e-5, rtol=1e-5)
    assert (after_weights - after_stats).abs().max() > 1e-3


def test_training_mode_keeps_the_e2cnn_modules() -> None:
    net = _trained_net().train()
    with torch.no_grad():
        net(torch.rand(1, 1, 33, 40))
    assert "_plain_cache" not in net.__dict__
    with pytest.raises(RuntimeError, match="eval mode"):
        net.plain_modules()
