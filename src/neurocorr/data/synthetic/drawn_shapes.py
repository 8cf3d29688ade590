"""Hand-drawn-looking shapes for the siamese classifier: pairs of outlines or filled figures.

Every image is a closed outline of its class (an ellipse, a polygon with jittered vertices, a
star, a cross) drawn as one stroke of 1-6 px: corners sharp or rounded, low-frequency wobble, a
gap or an overshoot where the stroke closes, any aspect ratio and rotation, off-centre, in an
ink colour on paper with shading, noise and blur. Aspect, rotation and corner changes keep the
class (a circle may be an ellipse, a square a rectangle, as people draw them).

Sample ``i`` is a pure function of ``(seed, i)``; the rendering is vectorised over the batch: the
outline is sampled densely and each point splats its distance to the nearby pixels
(``scatter_reduce`` amin), so the cost is linear in the points, not points x pixels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from neurocorr.data.synthetic.drawn_outlines import CLASS_NAMES, N_UNIFORMS, outline_points
from neurocorr.errors import ConfigError

Range = tuple[float, float]
#: uniforms of a figure's look that a hard pair shares: stroke, scale, place, colours, blur, noise
#: (0:4, 6:20), aspect and rotation (24, 25)
SHARED_UNIFORMS = [0, 1, 2, 3, *range(6, 20), 24, 25]


@dataclasses.dataclass(frozen=True)
class DrawnStyle:
    """Ranges of the generator (lengths in px at 64 px, scaled with the image; fractions of the
    shape's long side unless stated)."""

    filled_p: float = 0.25            # share of filled figures (the rest are outlines)
    stroke_px: Range = (1.0, 6.0)     # stroke width
    wobble: Range = (0.0, 0.05)       # low-frequency positional noise
    vertex_jitter: Range = (0.0, 0.12)  # polygon corners moved by up to this (shape radius = 1)
    closing: Range = (-0.08, 0.12)    # stroke end past (> 0, overshoot) or short of (< 0, gap) its start, of the outline
    tail_p: float = 0.25              # share of strokes that run on in a straight tail past their end
    tail: Range = (0.03, 0.2)         # the tail's share of the stroke
    corner_round_p: float = 0.5       # share of polygons with rounded corners
    corner_round: Range = (0.005, 0.03)  # rounding: Gaussian smoothing width, fraction of the outline
    superellipse: Range = (1.6, 2.6)  # ellipse exponent: 2 = ellipse, more = flatter sides
    aspect: Range = (1.0, 12.0)       # long / short axis (log-uniform in u**aspect_power)
    aspect_power: float = 1.5         # > 1 weights the aspect towards 1 (2: fewer thin figures)
    pointed_p: float = 0.25           # share of ellipses pointed at one end (teardrop) or both (lens)
    pointed: Range = (0.3, 1.5)       # pointedness: 0 = round, 1 = a lens, 2 = a cusp
    distort_p: float = 0.4            # share of polygons sheared and tapered
    skew: float = 0.35                # shear x += skew * y, up to +- this (shape radius 1)
    taper: float = 0.3                # taper x *= 1 + taper * y, up to +- this
    shared_geometry_p: float = 0.3    # share of pairs (same or different class alike) whose two figures
                                      # share stroke, size, place, aspect, rotation and colours: only shape tells
    rotation_deg: float = 180.0       # rotated by up to +- this
    scale: Range = (0.35, 0.9)        # long side of the figure / image side
    offset: float = 1.0               # 0 = centred, 1 = anywhere that keeps the figure inside
    blur_px: Range = (0.0, 1.0)       # Gaussian blur sigma
    noise: Range = (0.0, 0.06)        # pixel noise sigma (intensities in [0, 1])
    paper: Range = (0.75, 1.0)        # paper brightness
    shading: float = 0.25             # paper darkened by up to this along a random direction
    ink: Range = (0.0, 0.45)          # ink brightness
    inverted_p: float = 0.05          # light ink on a dark board

    @classmethod
    def from_config(cls, values: Optional[Mapping[str, Any]]) -> "DrawnStyle":
        """Defaults overridden by ``values`` (``data.drawn``); unknown keys are a ConfigError."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"data.drawn has unknown keys {unknown}; known: {sorted(known)}")
        for key, value in values.items():
            if isinstance(getattr(cls, key), tuple):
                if len(value) != 2 or float(value[0]) > float(value[1]):
                    raise ConfigError(f"data.drawn.{key} must be a range [low, high], got {value!r}")
                values[key] = (float(value[0]), float(value[1]))
            else:
                values[key] = float(value)
        return cls(**values)


def resolve_classes(names: Optional[Sequence[str]]) -> tuple[tuple[str, int], ...]:
    """``(name, generator kind)`` of each wanted class (``None``: all of :data:`CLASS_NAMES`)."""
    names = list(CLASS_NAMES) if names is None else list(names)
    unknown = [n for n in names if n not in CLASS_NAMES]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"data.classes must be two or more distinct names of {list(CLASS_NAMES)}, got {names}")
    return tuple((n, CLASS_NAMES.index(n)) for n in names)


def _uniforms(seed: int, indices: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair: ``(N, 2, N_UNIFORMS)`` uniforms and ``(N, 2, S, S)`` standard normal noise."""
    u, z = [], []
    for index in indices.tolist():
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index)) % (2**63 - 1))
        u.append(torch.rand(2, N_UNIFORMS, generator=g, dtype=torch.float64))
        z.append(torch.randn(2, size, size, generator=g))
    if not u:
        return torch.zeros(0, 2, N_UNIFORMS), torch.zeros(0, 2, size, size)
    return torch.stack(u).float(), torch.stack(z)


def _lerp(r: Range, u: torch.Tensor) -> torch.Tensor:
    return r[0] + (r[1] - r[0]) * u


def stroke_distance(points: torch.Tensor, size: int, radius: int) -> torch.Tensor:
    """Distance (px) of every pixel centre to the nearest of ``points`` ``(N, P, 2)`` (x, y in px,
    inside the image), exact within ``radius`` px of a point and ``radius + 1`` beyond: ``(N, S, S)``."""
    n = points.shape[0]
    side = size + 2 * radius                                                  # a padded canvas: no bounds checks
    base = points.round().clamp(0, size - 1)
    offset = points - base                                                    # (N, P, 2) in [-0.5, 0.5]
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    dx2 = (r - offset[..., 0, None]) ** 2                                     # (N, P, K)
    dy2 = (r - offset[..., 1, None]) ** 2
    d2 = dy2[..., :, None] + dx2[..., None, :]                                # (N, P, K, K)
    steps = torch.arange(2 * radius + 1)
    window = (steps[:, None] * side + steps[None, :]).view(1, 1, -1)         # offsets from the top-left corner
    flat = (base[..., 1] * side + base[..., 0]).long()[..., None] + window    # (N, P, K * K)
    out = torch.full((n, side * side), float(radius + 1) ** 2)
    out.scatter_reduce_(1, flat.view(n, -1), d2.view(n, -1), reduce="amin")
    return out.view(n, side, side)[:, radius : radius + size, radius : radius + size].sqrt()


def inside_polygon(vertices: torch.Tensor, size: int) -> torch.Tensor:
    """Crossing-number test of every pixel centre against closed polygons ``(N, Q, 2)``: ``(N, S, S)`` bool."""
    coords = torch.arange(size, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    x, y = x.reshape(1, -1, 1), y.reshape(1, -1, 1)                           # (1, S*S, 1)
    a, b = vertices[:, None], vertices.roll(-1, 1)[:, None]                   # (N, 1, Q, 2)
    straddles = (a[..., 1] > y) != (b[..., 1] > y)
    dy = b[..., 1] - a[..., 1]
    x_cross = a[..., 0] + (y - a[..., 1]) * (b[..., 0] - a[..., 0]) / torch.where(dy.abs() < 1e-9, torch.full_like(dy, 1e-9), dy)
    crossings = (straddles & (x < x_cross)).sum(-1)
    return (crossings % 2 == 1).view(-1, size, size)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Blur ``(N, C, S, S)`` images, each with its own sigma ``(N,)`` px (0 = unchanged)."""
    n, c, s, _ = images.shape
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, K)
    flat = F.pad(images.reshape(1, n * c, s, s), (radius,) * 4, mode="replicate")
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * c)
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * c)
    return flat.view(n, c, s, s)


def render_drawn(kinds: torch.Tensor, u: torch.Tensor, noise: torch.Tensor, size: int, style: DrawnStyle) -> torch.Tensor:
    """Render figures of generator kinds ``kinds`` ``(N,)`` from uniforms ``u`` ``(N, N_UNIFORMS)`` and
    pixel noise ``(N, S, S)``: ``(N, 3, S, S)`` uint8."""
    unit = size / 64.0
    width = _lerp(style.stroke_px, u[:, 0]) * unit                            # (N,) px
    points = outline_points(kinds, u, style, n_points=5 * size)               # (N, P, 2), long side ~ 1
    # fit: the long side of the bounding box is scale * size, anywhere inside the image
    lo, hi = points.amin(1), points.amax(1)
    extent = (hi - lo).amax(1).clamp_min(1e-3)
    scale_px = _lerp(style.scale, u[:, 1]) * size / extent
    box = (hi - lo) * scale_px[:, None]
    room = ((size - 1 - box) / 2 - width[:, None]).clamp_min(0)
    centre = (size - 1) / 2 + style.offset * room * (2 * u[:, 2:4] - 1)
    pixels = (points - (lo + hi)[:, None] / 2) * scale_px[:, None, None] + centre[:, None]
    radius = int(math.ceil(style.stroke_px[1] * unit / 2 + 1))
    dist = stroke_distance(pixels, size, radius)
    alpha = (width[:, None, None] / 2 + 0.5 - dist).clamp(0, 1)
    filled = u[:, 4] < style.filled_p
    if bool(filled.any()):
        vertices = pixels[filled][:, :: max(1, pixels.shape[1] // 40)]
        fill = inside_polygon(vertices, size).float() * (0.35 + 0.65 * u[filled, 5])[:, None, None]
        alpha[filled] = torch.maximum(alpha[filled], fill)
    # paper with shading, ink of some colour
    paper = _lerp(style.paper, u[:, 6])[:, None] + 0.06 * (2 * u[:, 7:10] - 1)  # (N, 3)
    ink = _lerp(style.ink, u[:, 10])[:, None] + 0.25 * (2 * u[:, 11:14] - 1) * u[:, 14:15]
    coords = torch.linspace(-1, 1, size)
    direction = 2 * math.pi * u[:, 15]
    ramp = direction.cos()[:, None, None] * coords[None, None, :] + direction.sin()[:, None, None] * coords[None, :, None]
    shade = 1 - style.shading / 2 * u[:, 16, None, None] * (ramp + 1)                      # (N, S, S)
    background = paper[:, :, None, None] * shade[:, None]
    a = alpha[:, None]
    image = background * (1 - a) + ink[:, :, None, None].clamp(0, 1) * a
    image = gaussian_blur(image, _lerp(style.blur_px, u[:, 17]) * unit)
    image = image + _lerp(style.noise, u[:, 18])[:, None, None, None] * noise[:, None]
    image = torch.where((u[:, 19] < style.inverted_p)[:, None, None, None], 1 - image, image)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def drawn_shape_pairs(
    seed: int, indices: torch.Tensor, size: int = 64, classes: Optional[Sequence[tuple[str, int]]] = None,
    style: Optional[DrawnStyle] = None,
) -> dict[str, torch.Tensor]:
    """A batch of pairs: ``image_a``/``image_b`` (N, 3, S, S) uint8, ``label`` (N,) float (1 = same
    class, half of the pairs), ``class_a``/``class_b`` (N,) long (indices into ``classes``, each
    drawn uniformly). ``classes``: ``(name, kind)`` from :func:`resolve_classes` (default: all)."""
    classes = tuple(classes) if classes is not None else resolve_classes(None)
    style = style or DrawnStyle()
    u, noise = _uniforms(seed, indices, size)                                 # (N, 2, U), (N, 2, S, S)
    shared = (u[:, 0, 80] < style.shared_geometry_p)[:, None]                  # hard pairs: one geometry
    u[:, 1, SHARED_UNIFORMS] = torch.where(shared, u[:, 0, SHARED_UNIFORMS], u[:, 1, SHARED_UNIFORMS])
    k = len(classes)
    class_a = (u[:, 0, -1] * k).long().clamp_max(k - 1)
    same = u[:, 1, -1] < 0.5
    other = (class_a + 1 + (u[:, 0, -2] * (k - 1)).long().clamp_max(k - 2)) % k
    class_b = torch.where(same, class_a, other)
    kind_of = torch.tensor([kind for _, kind in classes])
    kinds = torch.stack([kind_of[class_a], kind_of[class_b]], 1)              # (N, 2)
    images = render_drawn(kinds.reshape(-1), u.reshape(-1, N_UNIFORMS), noise.reshape(-1, size, size), size, style)
    images = images.view(-1, 2, 3, size, size)
    return {"image_a": images[:, 0], "image_b": images[:, 1], "label": same.float(), "class_a": class_a, "class_b": class_b}
