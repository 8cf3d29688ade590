"""Training pieces: fresh warps per batch, the triplet losses, the loss going down on the CPU."""

from __future__ import annotations

import functools

import pytest
import torch

from neurocorr.errors import ConfigError
from neurocorr.models.detector.descriptor import PolarDescriptor
from neurocorr.models.detector.lightning_model import DetectorModule
from neurocorr.models.detector.loss import ScoreMapTriplet, ssim_distance, ssim_map
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


def test_ssim_map_equals_kornia_ssim_and_has_exact_gradients() -> None:
    from kornia.metrics import ssim as kornia_ssim

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 2, 20, 17, generator=g), torch.rand(3, 2, 20, 17, generator=g)
    for window in (3, 5, 7):
        torch.testing.assert_close(ssim_map(a, b, window), kornia_ssim(a, b, window), atol=1e-5, rtol=1e-4)
    assert torch.allclose(ssim_map(a, a), torch.ones(()), atol=1e-5)
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ssim_map(t, y), (x,))
    with pytest.raises(ValueError, match="one shape"):
        ssim_map(a, b[:, :1])
    # bf16 maps (GPU autocast) are compared in float32
    half = ssim_map(a.bfloat16(), b.bfloat16())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, ssim_map(a.bfloat16().float(), b.bfloat16().float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the blur's matmuls stay in float32 under autocast
        autocast = ssim_map(a, b)
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, ssim_map(a, b))
    with pytest.raises(ValueError, match="larger than 3 px"):
        ssim_map(a[..., :3, :3], b[..., :3, :3], 7)


def test_triplet_loss_equals_its_two_distances() -> None:
    g = torch.Generator().manual_seed(1)
    a, p, n = (torch.rand(4, 1, 16, 16, generator=g) for _ in range(3))
    mask = (torch.rand(4, 1, 16, 16, generator=g) > 0.2).float()
    expected = torch.relu(ssim_distance(a, p, mask) - ssim_distance(a, n, mask) + 0.7).mean()
    torch.testing.assert_close(ScoreMapTriplet("ssim", 0.7)(a, p, n, mask), expected)


def test_border_mask_is_the_eroded_validity_inside_the_band() -> None:
    module = tiny_module(border=2)
    mask = torch.ones(1, 1, 12, 12)
    mask[..., 5, 7] = 0
    out = module._border_mask(mask)
    expected = torch.zeros(1, 1, 12, 12)
    expected[..., 2:-2, 2:-2] = 1
    expected[..., 3:8, 5:10] = 0  # the 5x5 neighbourhood of the invalid pixel
    assert torch.equal(out, expected)


def test_descriptor_triplet_reads_positive_and_negative_at_the_warped_points(monkeypatch: pytest.MonkeyPatch) -> None:
    import neurocorr.models.detector.lightning_model as lm
    from neurocorr.models.detector.keypoints import detect_keypoints, keypoint_angles
    from neurocorr.ops.geometry import warp_points

    module = tiny_module()
    torch.manual_seed(0)
    batch = module.on_after_batch_transfer(crops(3, 40), 0)
    seen = {}
    monkeypatch.setattr(lm, "descriptor_triplet", lambda a, p, n, valid, margin: seen.update(a=a, p=p, n=n) or a.sum() * 0)
    module.eval()  # batch norm in eval mode: the network's outputs do not depend on the batch
    module.compute_loss(batch)
    out1, out2 = module.net(batch["image1"]), module.net(batch["image2"])
    kp = detect_keypoints(out1.score, out1.orientation, module.desc_top_k, 0.0, module.nms_window, module.border)
    xy2 = warp_points(kp.xy, batch["H"].float())
    for b in range(3):
        j = (b - 1) % 3  # the negative of sample b is warped image b-1, read at b's warped points in its own orientation
        expect_p = module.descriptor(out2.features[b : b + 1], xy2[b : b + 1], keypoint_angles(out2.orientation[b : b + 1], xy2[b : b + 1]))
        expect_n = module.descriptor(out2.features[j : j + 1], xy2[b : b + 1], keypoint_angles(out2.orientation[j : j + 1], xy2[b : b + 1]))
        expect_a = module.descriptor(out1.features[b : b + 1], kp.xy[b : b + 1], kp.angle[b : b + 1])
        torch.testing.assert_close(seen["p"][b : b + 1], expect_p, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(seen["n"][b : b + 1], expect_n, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(seen["a"][b : b + 1], expect_a, atol=1e-5, rtol=1e-4)


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
