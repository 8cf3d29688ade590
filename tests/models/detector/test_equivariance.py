"""The e2cnn detector is equivariant to 90-degree rotations: the score map rotates with the image
(error < 1e-4 away from the border), the orientation distribution shifts by N/4 bins, keypoint
angles turn by pi/2, and polar descriptors stay the same (with the handcrafted Harris/Hessian inputs)."""

from __future__ import annotations

import math

import pytest
import torch

from neurocorr.models.detector.descriptor import polar_descriptor
from neurocorr.models.detector.keypoints import detect_keypoints
from neurocorr.models.detector.torch_model import _SPLIT_POOL_PIXELS, EquivariantDetector, antialiased_max_pool


@pytest.fixture(scope="module")
def outputs():
    torch.manual_seed(0)
    net = EquivariantDetector(group_order=8, layer_1=2, layer_2=2, layer_3=2, pyramid_levels=2, handcrafted=(1.0, 2.0),
                              descriptor_image=(1.0,)).eval()
    image = torch.rand(1, 1, 50, 50)
    with torch.no_grad():
        # a few train-mode steps first so the batch-norm statistics are not trivial
        net.train()
        net(torch.rand(2, 1, 50, 50))
        net.eval()
        return net(image), net(torch.rot90(image, 1, (2, 3))), image


def test_score_map_rotates_with_the_image(outputs) -> None:
    a, b, _ = outputs
    diff = (torch.rot90(a.score, 1, (2, 3)) - b.score)[..., 5:-5, 5:-5].abs().max()
    assert diff < 1e-4
    assert a.score.std() > 1e-3  # not a constant map, which would pass trivially
    feat = (torch.rot90(a.features, 1, (2, 3)) - b.features)[..., 5:-5, 5:-5].abs().max()
    assert feat < 1e-4


def test_orientation_distribution_shifts_by_a_quarter_of_the_bins(outputs) -> None:
    a, b, _ = outputs
    n = a.orientation.shape[1]
    rotated = torch.rot90(a.orientation, 1, (2, 3))
    errors = [(rotated.roll(k, 1) - b.orientation)[..., 5:-5, 5:-5].abs().max().item() for k in range(n)]
    assert errors[n // 4] < 1e-4
    assert min(e for k, e in enumerate(errors) if k != n // 4) > 1e-2  # and no other shift fits


def test_keypoint_angles_turn_and_descriptors_stay(outputs) -> None:
    a, b, image = outputs
    w = image.shape[-1]
    kp_a = detect_keypoints(a.score, a.orientation, top_k=20, border=6)
    # torch.rot90(k=1) moves (x, y) to (y, W-1-x)
    xy_b = torch.stack([kp_a.xy[..., 1], w - 1 - kp_a.xy[..., 0]], -1)
    from neurocorr.models.detector.keypoints import keypoint_angles
    angle_b = keypoint_angles(b.orientation, xy_b)
    turn = torch.remainder(kp_a.angle - angle_b - math.pi / 2 + math.pi, 2 * math.pi) - math.pi
    assert turn.abs().max() < 1e-3
    d_a = polar_descriptor(a.features, kp_a.xy, kp_a.angle, radii=(2.0, 4.0), sectors=4)
    d_b = polar_descriptor(b.features, xy_b, angle_b, radii=(2.0, 4.0), sectors=4)
    assert (d_a - d_b).abs().max() < 1e-3
    # centred: rotation-invariant too, and blind to a constant added to a feature channel
    c_a = polar_descriptor(a.features, kp_a.xy, kp_a.angle, radii=(2.0, 4.0), sectors=4, centre=True)
    c_b = polar_descriptor(b.features + torch.arange(8.0).view(1, 8, 1, 1), xy_b, angle_b, radii=(2.0, 4.0),
                           sectors=4, centre=True)
    assert (c_a - c_b).abs().max() < 1e-3 and (c_a - d_a).abs().max() > 1e-2
    torch.testing.assert_close(c_a.norm(dim=-1), torch.ones(c_a.shape[:2]))


def test_pooling_is_symmetric_for_odd_and_even_sizes() -> None:
    for size in (9, 10):
        x = torch.rand(1, 2, size, size)
        assert torch.allclose(torch.rot90(antialiased_max_pool(x), 1, (2, 3)),
                              antialiased_max_pool(torch.rot90(x, 1, (2, 3))), atol=1e-6)
        assert antialiased_max_pool(x).shape[-1] == (size + 1) // 2
        with torch.no_grad():  # the inference path (separable running max) gives the training path's values
            fast = antialiased_max_pool(x)
        torch.testing.assert_close(fast, antialiased_max_pool(x.requires_grad_()).detach())


def test_a_large_map_pooled_channel_by_channel_gives_the_training_path_values() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 363, 362)  # over _SPLIT_POOL_PIXELS: the inference path splits the channels
    assert x.shape[-2] * x.shape[-1] >= _SPLIT_POOL_PIXELS
    with torch.no_grad():
        fast = antialiased_max_pool(x)
        one_channel = antialiased_max_pool(x[:, 1:2])
    assert fast.shape == (1, 3, 182, 181)
    torch.testing.assert_close(fast, antialiased_max_pool(x.requires_grad_()).detach())
    torch.testing.assert_close(fast[:, 1:2], one_channel, atol=0, rtol=0)  # channels pooled independently
