"""Synthetic pairs of figures for the siamese classifier: a circle or a square per image.

Every sample is a pure function of ``(seed, index)``; rendering is vectorised over a batch of
indices (signed distance fields on one pixel grid, anti-aliased edges).
"""

from __future__ import annotations


import torch

CIRCLE, SQUARE = 0, 1
FIGURES = ("circle", "square")


def sample_parameters(seed: int, indices: torch.Tensor, size: int, max_angle: float = 0.0) -> dict[str, torch.Tensor]:
    """Draw the parameters of pairs ``indices`` (``(N,)`` long) from ``seed``.

    Returns tensors with leading dim N: ``figure`` (N, 2) long, ``centre`` (N, 2, 2) px,
    ``radius`` (N, 2) px, ``angle`` (N, 2) rad, ``colour`` / ``background`` (N, 2, 3) in [0, 1],
    ``label`` (N,) float (1 = same figure). Squares are rotated by up to ``max_angle`` radians
    (0: axis-aligned).
    """
    rows = []
    for index in indices.tolist():
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index)) % (2**63 - 1))
        rows.append(torch.rand(24, generator=g, dtype=torch.float64))
    u = torch.stack(rows).float() if rows else torch.zeros(0, 24)
    fig_a = (u[:, 0] < 0.5).long()
    same = u[:, 1] < 0.5
    fig_b = torch.where(same, fig_a, 1 - fig_a)
    radius = size * (0.18 + 0.14 * u[:, 2:4])                      # half-size of the figure
    margin = radius + 1.0
    centre = margin.unsqueeze(-1) + (size - 1 - 2 * margin).unsqueeze(-1) * u[:, 4:8].view(-1, 2, 2)
    angle = u[:, 8:10] * max_angle
    colour = u[:, 10:16].view(-1, 2, 3)
    background = u[:, 16:22].view(-1, 2, 3)
    # keep figure and background apart: push the figure's colour away when they are too close
    too_close = (colour - background).abs().amax(-1, keepdim=True) < 0.3
    colour = torch.where(too_close, (background + 0.5) % 1.0, colour)
    return {
        "figure": torch.stack([fig_a, fig_b], 1),
        "centre": centre,
        "radius": radius,
        "angle": angle,
        "colour": colour,
        "background": background,
        "label": same.float(),
    }


def render(params: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """Render both images of every pair: ``(N, 2, 3, size, size)`` uint8."""
    n = params["figure"].shape[0]
    coords = torch.arange(size, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")                      # (S, S)
    dx = x - params["centre"][..., 0, None, None]                            # (N, 2, S, S)
    dy = y - params["centre"][..., 1, None, None]
    cos, sin = params["angle"].cos()[..., None, None], params["angle"].sin()[..., None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    r = params["radius"][..., None, None]
    sdf_circle = torch.sqrt(dx**2 + dy**2) - r
    sdf_square = torch.maximum(u.abs(), v.abs()) - r * 0.886   # same area as the circle
    sdf = torch.where(params["figure"][..., None, None] == CIRCLE, sdf_circle, sdf_square)
    alpha = (0.5 - sdf).clamp(0, 1).unsqueeze(2)                            # (N, 2, 1, S, S)
    image = params["background"][..., None, None] * (1 - alpha) + params["colour"][..., None, None] * alpha
    return (image * 255).round().to(torch.uint8).view(n, 2, 3, size, size)


def shape_pairs(seed: int, indices: torch.Tensor, size: int = 64, max_angle: float = 0.0) -> dict[str, torch.Tensor]:
    """A batch of pairs: ``image_a``/``image_b`` (N, 3, S, S) uint8, ``label`` (N,) float,
    ``class_a``/``class_b`` (N,) long (0 circle, 1 square)."""
    params = sample_parameters(seed, indices, size, max_angle)
    images = render(params, size)
    return {
        "image_a": images[:, 0],
        "image_b": images[:, 1],
        "label": params["label"],
        "class_a": params["figure"][:, 0],
        "class_b": params["figure"][:, 1],
    }
