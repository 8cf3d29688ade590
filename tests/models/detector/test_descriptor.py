"""Polar descriptor on elliptical rings (``shape``): identity shape = circles, the rings follow the
shape with the first sector along the orientation, and an affine-stretched view is described alike."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neurocorr.models.detector.descriptor import PolarDescriptor, polar_descriptor, polar_grid
from neurocorr.ops.affine_shape import affine_shapes


def test_identity_shape_gives_the_circular_grid() -> None:
    xy, angle = torch.rand(2, 5, 2) * 30, torch.rand(2, 5) * 6
    eye = torch.eye(2).expand(2, 5, 2, 2)
    torch.testing.assert_close(polar_grid(xy, angle, (2.0, 4.0), 6, eye), polar_grid(xy, angle, (2.0, 4.0), 6))


def test_rings_follow_the_shape_and_start_along_the_orientation() -> None:
    xy = torch.zeros(1, 2, 2, dtype=torch.float64)
    angle = torch.tensor([[0.0, math.pi / 2]], dtype=torch.float64)
    shape = torch.diag(torch.tensor([2.0, 0.5], dtype=torch.float64)).expand(1, 2, 2, 2)
    grid = polar_grid(xy, angle, (3.0,), 4, shape)[0]                              # (2, 4, 2)
    torch.testing.assert_close(grid[0], torch.tensor([[6.0, 0.0], [0.0, 1.5], [-6.0, 0.0], [0.0, -1.5]],
                                                     dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(grid[1, 0], torch.tensor([0.0, 1.5], dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="shape"):
        polar_grid(xy, angle, (3.0,), 4, torch.eye(2).expand(1, 3, 2, 2))


def test_module_equals_function_with_a_shape() -> None:
    features, xy, angle = torch.rand(1, 3, 24, 24), torch.rand(1, 4, 2) * 23, torch.rand(1, 4)
    shape = affine_shapes(torch.rand(1, 1, 24, 24), xy, sigma=3.0)
    torch.testing.assert_close(PolarDescriptor((2.0, 4.0), 6)(features, xy, angle, shape),
                               polar_descriptor(features, xy, angle, (2.0, 4.0), 6, shape=shape))


def test_a_stretched_view_is_described_alike_on_its_ellipse() -> None:
    torch.manual_seed(0)
    size, stretch = 97, 1.6
    texture = F.avg_pool2d(torch.rand(1, 1, size + 4, size + 4, dtype=torch.float64), 5, stride=1)  # smooth noise
    c = (size - 1) / 2
    # the second view: x' = stretch x, y' = y / stretch about the centre (area kept), bilinear resampling
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    src = torch.stack([(xs - c) / stretch + c, (ys - c) * stretch + c], -1)
    grid = 2 * src / (size - 1) - 1
    view = F.grid_sample(texture, grid[None], mode="bilinear", align_corners=True)
    xy = torch.full((1, 1, 2), c, dtype=torch.float64)
    angle = torch.zeros(1, 1, dtype=torch.float64)
    kw = dict(radii=(3.0, 6.0, 10.0), sectors=12, centre=True)
    plain = (polar_descriptor(texture, xy, angle, **kw) - polar_descriptor(view, xy, angle, **kw)).norm()
    s1, s2 = affine_shapes(texture, xy, sigma=12.0), affine_shapes(view, xy, sigma=12.0)
    adapted = (polar_descriptor(texture, xy, angle, shape=s1, **kw) - polar_descriptor(view, xy, angle, shape=s2, **kw)).norm()
    assert float(s2[0, 0, 0, 0] / s2[0, 0, 1, 1]) > 1.5 * float(s1[0, 0, 0, 0] / s1[0, 0, 1, 1])  # sees the stretch
    assert float(adapted) < 0.6 * float(plain)
