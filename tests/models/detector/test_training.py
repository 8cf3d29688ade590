"""Training pieces: fresh warps per batch, the triplet losses, the loss going down on the CPU."""

from __future__ import annotations

import functools

import pytest
import torch

from neurocorr.errors import ConfigError
from neurocorr.models.detector.descriptor import PolarDescriptor
from neurocorr.models.detector.lightning_model import DetectorModule
from neurocorr.models.detector.loss import ScoreMapTriplet
from neurocorr.models.detector.torch_model import EquivariantDetector
from neurocorr.ops.geometry import visibility_mask


def tiny_module(**kwargs) -> DetectorModule:
    net = EquivariantDetector(layer_1=1, layer_2=1, layer_3=1, pyramid_levels=2, head_hidden=4, descriptor_channels=4)
    return DetectorModule(net=net, loss=ScoreMapTriplet("ssim", 1.0), descriptor=PolarDescriptor((2.0, 4.0), 4),
                          desc_top_k=8, optimizer=functools.partial(torch.optim.Adam, lr=1e-2), **kwargs)


def crops(n: int = 4, size: int = 40) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size + 4, size + 4, generator=g), 5, 1)
    return {"image": (smooth * 255).to(torch.uint8)}


def test_each_batch_gets_fresh_warps_applied_to_image_and_mask_together() -> None:
    module = tiny_module()
    batch = crops()
    first = module.on_after_batch_transfer(dict(batch), 0)
    second = module.on_after_batch_transfer(dict(batch), 0)
    assert not torch.allclose(first["H"], second["H"])             # fresh randomness every batch
    assert not torch.allclose(first["H"][0], first["H"][1])         # and per sample
    assert not torch.allclose(first["image2"], second["image2"])
    # the mask went through the same warp: it is 1 where image 2's pixel comes from inside image 1
    vis = visibility_mask(torch.linalg.inv(first["H"].double()), (40, 40), (40, 40))
    assert (first["mask2"] == 0).any()
    assert (first["mask2"] == vis).float().mean() > 0.95
    # rotations stay within +-90 degrees
    angle = torch.atan2(first["H"][:, 1, 0], first["H"][:, 0, 0]).abs()
    assert (angle <= torch.pi / 2 + 0.2).all()


def test_triplet_loss_margins_and_distances() -> None:
    a = torch.rand(2, 1, 24, 24)
    mask = torch.ones(2, 1, 24, 24)
    ssim = ScoreMapTriplet("ssim", 1.0)
    noise = torch.rand(2, 1, 24, 24)
    # identical anchor/positive, unrelated negative: d_ap = 0, d_an > 0 -> loss < margin
    assert ssim(a, a, noise, mask) < 1.0
    assert ssim(a, noise, a, mask) > 1.0
    mse = ScoreMapTriplet("mse", 2.0)
    assert mse(a, a, noise, mask) < 2.0
    with pytest.raises(ConfigError, match="margin=2"):
        ScoreMapTriplet("ssim", 2.0)
    with pytest.raises(ConfigError, match="distance"):
        ScoreMapTriplet("l1", 1.0)


def test_loss_decreases_over_a_few_steps_on_the_cpu() -> None:
    torch.manual_seed(0)
    module = tiny_module()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    batch = crops(4, 40)
    losses = []
    for _ in range(12):
        torch.manual_seed(1)  # the same warps every step: this tests the optimisation, not the data
        b = module.on_after_batch_transfer(dict(batch), 0)
        loss = module.compute_loss(b)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.02, losses


def test_batch_of_one_is_refused_with_a_clear_error() -> None:
    module = tiny_module()
    b = module.on_after_batch_transfer(crops(1, 32), 0)
    with pytest.raises(ConfigError, match="batch_size >= 2"):
        module.compute_loss(b)
