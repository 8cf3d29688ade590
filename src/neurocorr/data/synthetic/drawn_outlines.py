"""The geometry of the hand-drawn shapes: one open stroke path per figure, batched.

A class is a closed unit outline (an ellipse or a polygon whose corners lie near the unit
circle); each figure jitters its corners, may round them (Gaussian smoothing of the closed curve
in the Fourier domain), is resampled by arc length, stretched to an aspect ratio, rotated, and
drawn as one stroke from a random start point that stops short of or runs past the start, with
low-frequency wobble along the way, sometimes with a straight tail past the end. Ellipses may be
pointed at one end (a teardrop) or both (a lens, a leaf), as quick drawings of thin ellipses are;
polygons may be sheared and tapered (a hand-drawn rectangle is often a parallelogram or a
trapezoid). Uniforms ``u[:, 20:82]`` of each figure drive all of it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from neurocorr.data.synthetic.drawn_shapes import DrawnStyle

CLASS_NAMES = ("ellipse", "rectangle", "triangle", "hexagon", "star", "cross")
ELLIPSE = 0
N_UNIFORMS = 84          # per figure; u[:, 82:84] are reserved for the pair's class draw
MAX_VERTICES = 12
OUTLINE_POINTS = 256     # samples of the closed outline before the stroke is drawn along it
WOBBLE_FREQUENCIES = 4
STRETCH_MANY_CORNERS = 1.5  # largest aspect of hexagons, stars and crosses


def _ring(count: int, start_deg: float, radii: torch.Tensor) -> torch.Tensor:
    """``count`` corners at equal angles from ``start_deg``, radius ``radii`` ``(N, count)``: ``(N, count, 2)``."""
    angles = torch.deg2rad(start_deg + torch.arange(count) * 360.0 / count)
    return torch.stack([radii * angles.cos(), radii * angles.sin()], -1)


def class_vertices(kinds: torch.Tensor, shape_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Corners ``(N, MAX_VERTICES, 2)`` (zero-padded) and corner counts ``(N,)`` (0 = ellipse) of
    generator kinds ``kinds`` ``(N,)``; ``shape_u`` ``(N,)`` sets a star's inner radius and a cross's arm width."""
    n = kinds.shape[0]
    ones = torch.ones(n, 1)
    inner = 0.35 + 0.2 * shape_u[:, None]
    arm = 0.25 + 0.15 * shape_u
    # plus sign, clockwise from the top arm's right edge: each coordinate is +-1 or +-arm
    x_sign = torch.tensor([1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1.0])
    y_sign = torch.tensor([1, 1, 1, -1, -1, -1, -1, -1, -1, 1, 1, 1.0])
    x_one = torch.tensor([0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0], dtype=torch.bool)
    y_one = torch.tensor([1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1], dtype=torch.bool)
    arm_ = arm[:, None]
    cross = torch.stack([x_sign * torch.where(x_one, 1.0, arm_), y_sign * torch.where(y_one, 1.0, arm_)], -1)
    cross = cross / torch.sqrt(1 + arm_[..., None] ** 2)
    star_radii = torch.where(torch.arange(10) % 2 == 0, ones, inner)
    per_kind = [
        torch.zeros(n, 1, 2),                                                  # ellipse (no corners)
        _ring(4, 45.0, ones.expand(n, 4)),                                     # square / rectangle
        _ring(3, 90.0, ones.expand(n, 3)),                                     # triangle
        _ring(6, 0.0, ones.expand(n, 6)),                                      # hexagon
        _ring(10, 90.0, star_radii),                                           # five-pointed star
        cross,                                                                 # plus sign
    ]
    table = torch.stack([torch.cat([v, torch.zeros(n, MAX_VERTICES - v.shape[1], 2)], 1) for v in per_kind], 1)
    counts = torch.tensor([0, 4, 3, 6, 10, 12])
    return table[torch.arange(n), kinds], counts[kinds]


def closed_outline(vertices: torch.Tensor, counts: torch.Tensor, exponent: torch.Tensor,
                   points: int = OUTLINE_POINTS, pointed: torch.Tensor | None = None,
                   one_end: torch.Tensor | None = None) -> torch.Tensor:
    """``points`` samples of each closed outline, equal arc length apart: ``(N, points, 2)``. Ellipses
    (``counts == 0``) are superellipses ``|x|^p + |y|^p = 1`` with ``p = exponent`` ``(N,)``: 2 is an
    ellipse, above 2 flatter sides (as a stretched hand-drawn circle has). ``pointed`` ``(N,)`` >= 0
    sharpens the ends at x = +-1 (y scaled by ``|sin t|^pointed``: 0 = none, 1 = a lens, 2 = a
    cusp), at x = +1 only where ``one_end`` ``(N,)`` bool (a teardrop)."""
    t = torch.arange(points, dtype=torch.float32) / points
    m = counts.clamp_min(1)[:, None].float()
    s = t[None] * m                                                            # (N, points)
    j = s.floor().long()
    frac = (s - j)[..., None]
    start = vertices.gather(1, j[..., None].expand(-1, -1, 2))
    end = vertices.gather(1, (j + 1).remainder(m.long())[..., None].expand(-1, -1, 2))
    polygon = start + frac * (end - start)
    cos, sin = torch.cos(2 * math.pi * t)[None], torch.sin(2 * math.pi * t)[None]
    power = 2 / exponent[:, None]
    circle_y = sin.sign() * sin.abs() ** power
    if pointed is not None:
        k = pointed[:, None] * torch.where(one_end[:, None] & (cos < 0), 0.0, 1.0) if one_end is not None else pointed[:, None]
        circle_y = circle_y * sin.abs() ** k
    circle = torch.stack([(cos.sign() * cos.abs() ** power).expand_as(circle_y), circle_y], -1)
    outline = torch.where((counts == 0)[:, None, None], circle, polygon)
    return resample_closed(outline, points)


def resample_closed(outline: torch.Tensor, points: int) -> torch.Tensor:
    """Resample closed curves ``(N, K, 2)`` at ``points`` positions equally spaced in arc length."""
    nxt = outline.roll(-1, 1)
    seg = (nxt - outline).norm(dim=-1)                                         # (N, K)
    cum = torch.cat([torch.zeros_like(seg[:, :1]), seg.cumsum(1)], 1)         # (N, K + 1)
    target = torch.arange(points, dtype=torch.float32)[None] / points * cum[:, -1:]
    idx = (torch.searchsorted(cum.contiguous(), target.contiguous(), right=True) - 1).clamp(0, outline.shape[1] - 1)
    frac = ((target - cum.gather(1, idx)) / seg.gather(1, idx).clamp_min(1e-9))[..., None]
    a = outline.gather(1, idx[..., None].expand(-1, -1, 2))
    b = nxt.gather(1, idx[..., None].expand(-1, -1, 2))
    return a + frac * (b - a)


def smooth_closed(outline: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian smoothing of closed curves ``(N, K, 2)``, width ``sigma`` ``(N,)`` as a fraction of the curve."""
    k = outline.shape[1]
    spectrum = torch.fft.rfft(outline, dim=1)
    freq = torch.arange(spectrum.shape[1], dtype=torch.float32)
    gain = torch.exp(-2 * (math.pi * freq[None] * sigma[:, None]) ** 2)
    return torch.fft.irfft(spectrum * gain[..., None], n=k, dim=1)


def _along(outline: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points of closed outlines ``(N, K, 2)`` at positions ``t`` ``(N, P)`` in samples (wrapping): ``(N, P, 2)``."""
    k = outline.shape[1]
    i0 = t.floor().long()
    frac = (t - i0)[..., None]
    a = outline.gather(1, i0.remainder(k)[..., None].expand(-1, -1, 2))
    b = outline.gather(1, (i0 + 1).remainder(k)[..., None].expand(-1, -1, 2))
    return a + frac * (b - a)


def _aspect(counts: torch.Tensor, u: torch.Tensor, style: "DrawnStyle") -> torch.Tensor:
    """Long / short axis ``(N,)``: log-uniform in ``u**aspect_power`` (> 1: weighted towards 1); figures with many
    corners are stretched less (a flat hexagon reads as an ellipse at 64 px)."""
    low, high = math.log(style.aspect[0]), math.log(style.aspect[1])
    log_max = torch.where(counts > 4, min(high, math.log(STRETCH_MANY_CORNERS)), high)
    return torch.exp(low + (log_max - low).clamp_min(0) * u**style.aspect_power)


def outline_points(kinds: torch.Tensor, u: torch.Tensor, style: "DrawnStyle", n_points: int) -> torch.Tensor:
    """The stroke of each figure: ``(N, n_points, 2)`` points in shape units (long side about 2)."""
    n = kinds.shape[0]
    jitter = style.vertex_jitter[0] + (style.vertex_jitter[1] - style.vertex_jitter[0]) * u[:, 20]
    vertices, counts = class_vertices(kinds, u[:, 21])
    vertices = vertices + jitter[:, None, None] * (2 * u[:, 47:71].view(n, MAX_VERTICES, 2) - 1)
    # shear and taper (x += skew * y, x *= 1 + taper * y) of some polygons: parallelograms, trapezoids
    distorted = (u[:, 79] < style.distort_p) & (counts > 0)
    skew = torch.where(distorted, style.skew * (2 * u[:, 77] - 1), torch.zeros(n))[:, None]
    taper = torch.where(distorted, style.taper * (2 * u[:, 78] - 1), torch.zeros(n))[:, None]
    x, y = vertices[..., 0], vertices[..., 1]
    vertices = torch.stack([(x + skew * y) * (1 + taper * y), y], -1)
    pointed = torch.where(u[:, 74] < style.pointed_p, style.pointed[0] + (style.pointed[1] - style.pointed[0]) * u[:, 75],
                          torch.zeros(n))
    exponent = style.superellipse[0] + (style.superellipse[1] - style.superellipse[0]) * u[:, 73]
    outline = closed_outline(vertices, counts, exponent, pointed=pointed, one_end=u[:, 76] < 0.5)
    aspect = _aspect(counts, u[:, 24], style)
    rounded = (u[:, 22] < style.corner_round_p) & (counts > 0)
    # rounding as a share of one side: a star's ten sides round as much as a square's four
    # and less along the long side of a stretched figure (a thin rectangle keeps sharp ends)
    sigma = (style.corner_round[0] + (style.corner_round[1] - style.corner_round[0]) * u[:, 23]) * 4 / counts.clamp_min(1) / aspect
    outline = resample_closed(smooth_closed(outline, torch.where(rounded, sigma, torch.zeros_like(sigma))), OUTLINE_POINTS)
    # the stroke: from a random start, once round, short of or past the start, and sometimes a
    # straight tail where the pen flicks on past the end (the last ``tail`` share of the stroke)
    closing = style.closing[0] + (style.closing[1] - style.closing[0]) * u[:, 26]
    tail = torch.where(u[:, 71] < style.tail_p, style.tail[0] + (style.tail[1] - style.tail[0]) * u[:, 72], torch.zeros(n))
    tau = torch.linspace(0, 1, n_points)[None]                                # (1, P)
    along = (tau / (1 - tail[:, None])).clamp(max=1.0)
    path = _along(outline, (u[:, 27:28] + (1 + closing[:, None]) * along) * OUTLINE_POINTS)
    end = u[:, 27:28] + 1 + closing[:, None]
    direction = _along(outline, end * OUTLINE_POINTS) - _along(outline, (end - 0.02) * OUTLINE_POINTS)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-6)  # (N, 1, 2)
    perimeter = (outline.roll(-1, 1) - outline).norm(dim=-1).sum(1)
    beyond = (tau - (1 - tail[:, None])).clamp_min(0) / (1 - tail[:, None])  # (N, P), in strokes
    path = path + direction * (beyond * (1 + closing[:, None]) * perimeter[:, None])[..., None]
    # aspect (log-uniform, weighted towards 1) and rotation keep the class
    path = path * torch.stack([torch.ones(n), 1 / aspect], 1)[:, None]
    angle = math.radians(style.rotation_deg) * (2 * u[:, 25] - 1)
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]
    path = torch.stack([cos * path[..., 0] - sin * path[..., 1], sin * path[..., 0] + cos * path[..., 1]], -1)
    # wobble: a few low frequencies along the stroke, 1/f amplitudes, and a drift that opens the ends
    amplitude = style.wobble[0] + (style.wobble[1] - style.wobble[0]) * u[:, 28]
    coef = (2 * u[:, 31:39].view(n, WOBBLE_FREQUENCIES, 2) - 1)                # (N, F, 2)
    phase = 2 * math.pi * u[:, 39:47].view(n, WOBBLE_FREQUENCIES, 2)
    freq = torch.arange(1, WOBBLE_FREQUENCIES + 1, dtype=torch.float32)
    waves = torch.sin(2 * math.pi * freq[None, :, None, None] * tau[:, None, :, None] + phase[:, :, None, :])
    wobble = (coef[:, :, None, :] / freq[None, :, None, None] * waves).sum(1)  # (N, P, 2)
    drift = (2 * u[:, 29:31] - 1)[:, None, :] * tau[..., None]
    return path + 2 * amplitude[:, None, None] * (wobble + 0.5 * drift)
