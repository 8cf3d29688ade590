"""ops.affine_shape: smoke, shapes, bad input, the shape of known ellipses, rotation covariance,
the axis-ratio bound, gradcheck, module equals function."""

from __future__ import annotations

import math

import pytest
import torch

from neurocorr.ops.affine_shape import AffineShape, affine_shapes, normalising_shape, second_moments


def blob(size: int = 41, sx: float = 3.0, sy: float = 3.0, angle: float = 0.0) -> torch.Tensor:
    """``(1, 1, size, size)`` float64 Gaussian blob at the centre, axes ``sx``, ``sy`` px turned by ``angle``."""
    c = (size - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64) - c, torch.arange(size, dtype=torch.float64) - c,
                            indexing="ij")
    u = xs * math.cos(angle) + ys * math.sin(angle)
    v = -xs * math.sin(angle) + ys * math.cos(angle)
    return torch.exp(-(u / sx) ** 2 / 2 - (v / sy) ** 2 / 2)[None, None]


def centre(size: int = 41) -> torch.Tensor:
    return torch.full((1, 1, 2), (size - 1) / 2, dtype=torch.float64)


def test_smoke_and_shapes() -> None:
    image = torch.rand(2, 3, 24, 32)
    assert second_moments(image, 2.0).shape == (2, 3, 24, 32)
    shapes = affine_shapes(image, torch.rand(2, 5, 2) * 20, sigma=2.0)
    assert shapes.shape == (2, 5, 2, 2)
    torch.testing.assert_close(torch.linalg.det(shapes), torch.ones(2, 5), atol=1e-4, rtol=0)
    torch.testing.assert_close(shapes, shapes.transpose(-1, -2))                 # symmetric


@pytest.mark.parametrize("call", [
    lambda: second_moments(torch.rand(8, 8), 2.0),                                # not (B, C, H, W)
    lambda: second_moments(torch.rand(1, 1, 8, 8), 0.0),                          # no window
    lambda: normalising_shape(torch.rand(4, 2)),                                  # not (..., 3)
    lambda: normalising_shape(torch.rand(4, 3), max_ratio=0.5),
    lambda: affine_shapes(torch.rand(1, 1, 8, 8), torch.rand(2, 3, 2)),           # batch mismatch
    lambda: affine_shapes(torch.rand(1, 1, 8, 8), torch.rand(1, 3)),
    lambda: AffineShape(sigma=-1.0),
])
def test_bad_input_is_a_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()


def test_known_matrices_and_flat_points() -> None:
    m = torch.tensor([[4.0, 0.0, 1.0],     # gradients 2x stronger along x: the region is narrow in x
                      [1.0, 0.0, 1.0],     # isotropic
                      [0.0, 0.0, 0.0]],    # flat
                     dtype=torch.float64)
    s = normalising_shape(m)
    torch.testing.assert_close(s[0], torch.diag(torch.tensor([0.5 ** 0.5, 2 ** 0.5], dtype=torch.float64)))
    torch.testing.assert_close(s[1], torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(s[2], torch.eye(2, dtype=torch.float64))


def test_the_axis_ratio_is_bounded() -> None:
    edge = torch.tensor([[1.0, 0.0, 1e-9]], dtype=torch.float64)                  # a straight edge: a line
    for ratio in (1.0, 2.0, 4.0):
        singular = torch.linalg.svdvals(normalising_shape(edge, max_ratio=ratio)[0])
        assert float(singular[0] / singular[1]) == pytest.approx(ratio, rel=1e-6)
    tilted = torch.tensor([[2.0, 1.9, 2.0]], dtype=torch.float64)                 # eigenvalues 3.9 and 0.1
    singular = torch.linalg.svdvals(normalising_shape(tilted, max_ratio=2.0)[0])
    assert float(singular[0] / singular[1]) == pytest.approx(2.0, rel=1e-6)


def test_an_elongated_blob_gets_an_ellipse_along_it() -> None:
    round_ = affine_shapes(blob(sx=3.0, sy=3.0), centre(), sigma=4.0)[0, 0]
    torch.testing.assert_close(round_, torch.eye(2, dtype=torch.float64), atol=1e-3, rtol=0)
    long_x = affine_shapes(blob(sx=5.0, sy=2.5), centre(), sigma=4.0)[0, 0]
    assert long_x[0, 0] > 1.1 > 0.9 > long_x[1, 1] and abs(float(long_x[0, 1])) < 1e-6


def test_rotation_covariance() -> None:
    angle = math.radians(30)
    q = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    base = affine_shapes(blob(sx=5.0, sy=2.5), centre(), sigma=4.0)[0, 0]
    turned = affine_shapes(blob(sx=5.0, sy=2.5, angle=angle), centre(), sigma=4.0)[0, 0]
    torch.testing.assert_close(turned, q @ base @ q.T, atol=0.03, rtol=0)       # sampled grid: not exact
    # a quarter turn of the pixel grid is exact
    image = torch.rand(1, 1, 33, 33, dtype=torch.float64)
    xy = torch.tensor([[[12.0, 9.0], [20.0, 17.0]]], dtype=torch.float64)
    turned_image = image.rot90(1, (-2, -1))                                      # (x, y) -> (y, 32 - x)
    turned_xy = torch.stack([xy[..., 1], 32 - xy[..., 0]], -1)
    q90 = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    got, before = affine_shapes(turned_image, turned_xy, sigma=3.0), affine_shapes(image, xy, sigma=3.0)
    assert float((before - torch.eye(2, dtype=torch.float64)).abs().max()) > 0.02   # not the identity
    torch.testing.assert_close(got, q90 @ before @ q90.T, atol=1e-9, rtol=0)


def test_gradcheck() -> None:
    moments = torch.tensor([[3.0, 0.5, 1.0], [2.0, -0.3, 2.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: normalising_shape(m, max_ratio=4.0), (moments,))


def test_module_equals_function() -> None:
    image, xy = torch.rand(1, 1, 20, 20), torch.rand(1, 4, 2) * 19
    torch.testing.assert_close(AffineShape(3.0, 2.0)(image, xy), affine_shapes(image, xy, 3.0, 2.0))
