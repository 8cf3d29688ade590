"""The detector's plain-torch export (``export.DetectorExport``) gives the e2cnn network's outputs for
every input option: pyramid levels, handcrafted responses with the Harris skip, and the locally
normalised image copies of the descriptor head (which the export once left out)."""

from __future__ import annotations

import pytest
import torch

from neurocorr.errors import ConfigError
from neurocorr.models.detector.export import DetectorExport
from neurocorr.models.detector.torch_model import EquivariantDetector

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
    with torch.no_grad():
        expected, got = net(image), DetectorExport(net)(image)
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
