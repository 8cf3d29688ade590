"""Affine shape of image points from the second-moment matrix (Baumberg's normalisation, one step,
as in Harris-Affine and Hessian-Affine).

The second-moment matrix ``M`` of the image gradients around a point (derivatives at
``derivative_sigma`` px, summed in a Gaussian window of ``sigma`` px) is an ellipse; the shape
``S = M^(-1/2)``, scaled to determinant 1, maps a circle onto it. A pattern sampled at ``xy + S u``
instead of ``xy + u`` sees the same structure in two views related by a local affine map, up to a
rotation. ``S`` is rotation-covariant: rotating the image by ``Q`` turns ``S`` into ``Q S Q^T``.
``max_ratio`` bounds the ellipse's axis ratio (a straight edge would make it a line). The 2x2
square root is in closed form (no eigen-solver), so it runs anywhere a tensor does.
"""

from __future__ import annotations

import torch
from kornia.filters import spatial_gradient
from torch import nn

from neurocorr.ops.filters import gaussian_blur
from neurocorr.ops.geometry import sample_maps


def second_moments(image: torch.Tensor, sigma: float, derivative_sigma: float = 1.0) -> torch.Tensor:
    """``(B, 3, H, W)``: ``Ixx, Ixy, Iyy`` of the grey ``image`` ``(B, C, H, W)`` (channels averaged),
    derivatives of the image blurred by ``derivative_sigma`` px, products summed in a Gaussian
    window of ``sigma`` px."""
    if image.dim() != 4:
        raise ValueError(f"second_moments expects a (B, C, H, W) image, got {tuple(image.shape)}")
    if sigma <= 0 or derivative_sigma <= 0:
        raise ValueError(f"sigma and derivative_sigma must be > 0 px, got {sigma}, {derivative_sigma}")
    grey = image.mean(1, keepdim=True)
    grad = spatial_gradient(gaussian_blur(grey, derivative_sigma), mode="sobel")         # (B, 1, 2, H, W)
    ix, iy = grad[:, :, 0], grad[:, :, 1]
    return gaussian_blur(torch.cat([ix * ix, ix * iy, iy * iy], 1), sigma)


def normalising_shape(moments: torch.Tensor, max_ratio: float = 4.0) -> torch.Tensor:
    """Shapes ``(..., 2, 2)`` (symmetric, determinant 1) ``S ~ M^(-1/2)`` of second-moment matrices
    given as ``(..., 3)`` = ``(Ixx, Ixy, Iyy)``. The smaller eigenvalue is first raised to at least
    ``max_ratio^-2`` times the larger (so the axis ratio of ``S`` is at most ``max_ratio``); a flat
    point (``M`` = 0) gets the identity."""
    if moments.shape[-1] != 3:
        raise ValueError(f"normalising_shape expects (..., 3) moments (Ixx, Ixy, Iyy), got {tuple(moments.shape)}")
    if max_ratio < 1:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
    a, b, c = moments.unbind(-1)
    half_gap = (((a - c) / 2) ** 2 + b * b).sqrt()
    big, small = (a + c) / 2 + half_gap, (a + c) / 2 - half_gap
    raise_by = (big / max_ratio**2 - small).clamp(min=0)
    # raising the smaller eigenvalue adds raise_by x the projector on its eigenvector, (big I - M) / (big - small)
    along = raise_by / (2 * half_gap).clamp(min=torch.finfo(moments.dtype).tiny)
    a, b, c = a + along * (big - a), b - along * b, c + along * (big - c)
    root_det = (a * c - b * b).clamp(min=0).sqrt()
    # sqrt(M) ~ R = M + sqrt(det M) I; M^(-1/2) ~ adj(R); scaled to det 1 by sqrt(det R)
    r11, r12, r22 = a + root_det, b, c + root_det
    det_r = (r11 * r22 - r12 * r12).clamp(min=0)
    flat = det_r <= torch.finfo(moments.dtype).eps * big.abs().clamp(min=torch.finfo(moments.dtype).tiny) ** 2
    norm = torch.where(flat, torch.ones_like(det_r), det_r).sqrt()
    shape = torch.stack([torch.stack([r22, -r12], -1), torch.stack([-r12, r11], -1)], -2) / norm[..., None, None]
    eye = torch.eye(2, dtype=moments.dtype, device=moments.device).expand_as(shape)
    return torch.where(flat[..., None, None], eye, shape)


def affine_shapes(image: torch.Tensor, xy: torch.Tensor, sigma: float = 5.0, max_ratio: float = 4.0,
                  derivative_sigma: float = 1.0) -> torch.Tensor:
    """Shapes ``(B, K, 2, 2)`` (:func:`normalising_shape`) at points ``xy`` ``(B, K, 2)`` (x, y px, pixel
    centres at integers) of ``image`` ``(B, C, H, W)``, moments read bilinearly."""
    if xy.dim() != 3 or xy.shape[-1] != 2 or image.dim() != 4 or xy.shape[0] != image.shape[0]:
        raise ValueError(f"affine_shapes expects image (B, C, H, W) and xy (B, K, 2), got {tuple(image.shape)}, "
                         f"{tuple(xy.shape)}")
    return normalising_shape(sample_maps(second_moments(image, sigma, derivative_sigma), xy), max_ratio)


class AffineShape(nn.Module):
    """Module form of :func:`affine_shapes`: ``forward(image, xy) -> (B, K, 2, 2)``."""

    def __init__(self, sigma: float = 5.0, max_ratio: float = 4.0, derivative_sigma: float = 1.0) -> None:
        super().__init__()
        if sigma <= 0 or derivative_sigma <= 0 or max_ratio < 1:
            raise ValueError(f"AffineShape: sigma and derivative_sigma > 0 px and max_ratio >= 1, got {sigma}, "
                             f"{derivative_sigma}, {max_ratio}")
        self.sigma, self.max_ratio, self.derivative_sigma = float(sigma), float(max_ratio), float(derivative_sigma)

    def forward(self, image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        return affine_shapes(image, xy, self.sigma, self.max_ratio, self.derivative_sigma)
