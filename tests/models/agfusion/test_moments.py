"""Moment alignment: centred, turned to the long axis, de-elongated up to the cap; blank images pass."""

from __future__ import annotations

import math

import torch

from neurocorr.models.agfusion.moments import align_by_moments, alignment_matrices


def ring(size: int, centre: tuple[float, float], axes: tuple[float, float], angle_deg: float) -> torch.Tensor:
    """A dark elliptic ring on white paper: ``(1, 3, size, size)`` in [0, 1]."""
    coords = torch.arange(size, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    a = math.radians(angle_deg)
    u = ((x - centre[0]) * math.cos(a) + (y - centre[1]) * math.sin(a)) / axes[0]
    v = (-(x - centre[0]) * math.sin(a) + (y - centre[1]) * math.cos(a)) / axes[1]
    ink = ((u**2 + v**2).sqrt() - 1).abs() < 0.08
    return (1 - ink.float()).expand(1, 3, size, size).clone()


def spread(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre (x, y) in px and the 2x2 covariance of an image's ink."""
    ink = 1 - image[0].mean(0)
    coords = torch.arange(image.shape[-1], dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    m = ink.sum()
    cx, cy = (ink * x).sum() / m, (ink * y).sum() / m
    cov = torch.tensor([[(ink * (x - cx) ** 2).sum(), (ink * (x - cx) * (y - cy)).sum()],
                        [(ink * (x - cx) * (y - cy)).sum(), (ink * (y - cy) ** 2).sum()]]) / m
    return torch.stack([cx, cy]), cov


def test_alignment_centres_turns_and_rounds_an_ellipse() -> None:
    image = ring(64, (24.0, 38.0), (18.0, 6.0), 35.0)                          # aspect 3, off-centre, turned
    aligned = align_by_moments(image, max_stretch=4.0)
    centre, cov = spread(aligned)
    assert torch.allclose(centre, torch.tensor([31.5, 31.5]), atol=1.5)
    ratio = cov[0, 0] / cov[1, 1]
    assert 0.75 < float(ratio) < 1.33 and abs(float(cov[0, 1])) < 0.15 * float(cov[0, 0])  # round
    capped = align_by_moments(image, max_stretch=1.0)                          # turned only: long axis along x
    _, cov = spread(capped)
    assert float(cov[0, 0]) > 6 * float(cov[1, 1])


def test_blank_images_stay_finite() -> None:
    blank = torch.ones(2, 3, 16, 16)
    assert torch.isfinite(alignment_matrices(blank, 3.0)).all()
    assert torch.allclose(align_by_moments(blank), blank)


def test_net_aligns_when_asked_and_refuses_a_stretch_below_one() -> None:
    import pytest

    from neurocorr.backbones.small_cnn import small_cnn
    from neurocorr.errors import ConfigError
    from neurocorr.models.agfusion.torch_model import AGFusionNet

    with pytest.raises(ConfigError, match="align_max_stretch"):
        AGFusionNet(small_cnn([8], [1]), align_max_stretch=0.5)
    torch.manual_seed(0)
    net = AGFusionNet(small_cnn([8], [1]), embedding_dim=4, input_norm="per_image", align_max_stretch=4.0).eval()
    here, there = ring(32, (12.0, 12.0), (8.0, 4.0), 0.0), ring(32, (20.0, 18.0), (8.0, 4.0), 0.0)
    with torch.no_grad():  # the same ring elsewhere in the image: the same features once aligned
        assert torch.allclose(net.embed_features(here), net.embed_features(there), atol=0.05)
