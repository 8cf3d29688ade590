"""Frontal gauge dials, batched: bezel, face, one or two concentric scales, numbers, needle, hub, glare.

A dial is drawn centred on an ``r`` x ``r`` canvas (bezel radius ``0.46 r``) as colour and coverage;
``neurocorr.data.synthetic.gauges`` then tilts and places it in a scene. The scales run clockwise on
screen from ``start`` to ``end``; keypoints are the centres of the major ticks of the labelled scale(s)
(``primary``): ``start`` (first), ``end`` (last), ``middle`` (the others). Everything is tensor code over
the batch except the text, drawn with PIL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from neurocorr.data.synthetic.gauges_style import NEEDLES, SCHEMES, TICKS, UNITS, GaugeStyle, font_path

BEZEL = 0.46  # bezel radius, share of the canvas side
TAU = 2 * math.pi


@dataclass
class Dial:
    """colour ``(B, 3, r, r)`` in [0, 1], coverage ``(B, r, r)``, points ``(B, N, 2)`` canvas px, labels ``(B, N)`` (-1 = none)."""

    colour: torch.Tensor
    alpha: torch.Tensor
    points: torch.Tensor
    labels: torch.Tensor


def uniform(g: torch.Generator, b: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, generator=g)


def choose(g: torch.Generator, b: int, options: tuple[str, ...], universe: tuple[str, ...]) -> torch.Tensor:
    """``(B,)`` indices into ``universe`` of options drawn uniformly from ``options``."""
    index = torch.tensor([universe.index(o) for o in options])
    return index[torch.randint(len(options), (b,), generator=g)]


def cover(sdf: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage of a signed distance (pixels, negative inside)."""
    return (0.5 - sdf).clamp(0.0, 1.0)


def over(img: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Composite ``colour`` ``(B, 3)`` over ``img`` ``(B, 3, H, W)`` with ``alpha`` ``(B, H, W)``."""
    return torch.lerp(img, colour.view(-1, 3, 1, 1).expand_as(img), alpha.unsqueeze(1))


def _v(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, 1, 1)


@dataclass
class Scale:
    """One scale's parameters, ``(B,)`` each: angles in radians, lengths in canvas px, ``kind`` a TICKS index."""

    start: torch.Tensor
    sweep: torch.Tensor
    n_major: torch.Tensor
    sub: torch.Tensor
    r_out: torch.Tensor
    length: torch.Tensor
    width: torch.Tensor
    kind: torch.Tensor

    def keypoints(self, centre: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Major tick centres ``(B, M, 2)`` and labels ``(B, M)`` (0 start, 1 middle, 2 end, -1 padding)."""
        m = int(self.n_major.max()) + 1
        idx = torch.arange(m).view(1, -1)
        ang = self.start.view(-1, 1) + idx * (self.sweep / self.n_major).view(-1, 1)
        rad = (self.r_out - self.length / 2).view(-1, 1)
        pts = torch.stack([centre + rad * torch.cos(ang), centre + rad * torch.sin(ang)], -1)
        n = self.n_major.view(-1, 1)
        labels = torch.where(idx == 0, 0, torch.where(idx == n, 2, 1))
        return pts, torch.where(idx <= n, labels, -1)


def scale_coverage(rho: torch.Tensor, theta: torch.Tensor, s: Scale, arc: torch.Tensor) -> torch.Tensor:
    """Coverage ``(B, r, r)`` of a scale's ticks (line, wedge or dot) and, where ``arc``, the arc along them."""
    step = s.sweep / (s.n_major * s.sub)
    phase = torch.remainder(theta - _v(s.start) + _v(step) / 2, TAU) - _v(step) / 2  # [-step/2, 2 pi - step/2)
    k = torch.round(phase / _v(step)).clamp(min=0)
    k = torch.minimum(k, _v((s.n_major * s.sub).float()))
    dth = phase - k * _v(step)
    major = torch.remainder(k, _v(s.sub.float())) == 0
    along, perp = rho * torch.cos(dth), (rho * torch.sin(dth)).abs()
    length = torch.where(major, _v(s.length), 0.55 * _v(s.length))
    width = torch.where(major, _v(s.width), 0.5 * _v(s.width))
    r_out = _v(s.r_out)
    ends = torch.maximum(along - r_out, (r_out - length) - along)
    line = torch.maximum(perp - width / 2, ends)
    frac = ((along - (r_out - length)) / length).clamp(0, 1)
    wedge = torch.maximum(perp - width * (0.15 + 0.85 * frac), ends)
    centre = r_out - _v(s.length) / 2
    dot_r = torch.where(major, 0.28 * _v(s.length), 0.45 * width)
    dot = torch.sqrt((along - centre) ** 2 + perp**2) - dot_r
    kind = _v(s.kind)
    sdf = torch.where(kind == TICKS.index("line"), line, torch.where(kind == TICKS.index("wedge"), wedge, dot))
    in_range = phase <= _v(s.sweep + step / 2)
    ticks = cover(sdf) * in_range
    on_arc = (phase >= 0) & (phase <= _v(s.sweep)) & _v(arc)
    arc_cover = cover((rho - r_out).abs() - 0.2 * _v(s.width)) * on_arc
    return torch.maximum(ticks, arc_cover)


def draw_scale(g: torch.Generator, b: int, radius: torch.Tensor, style: GaugeStyle, outer: bool,
               start: torch.Tensor, sweep: torch.Tensor) -> Scale:
    n_major = torch.randint(4, 11, (b,), generator=g)
    sub = torch.tensor([1, 2, 4, 5, 10])[torch.randint(5, (b,), generator=g)]
    lo, hi = (0.86, 0.94) if outer else (0.42, 0.52)
    length = radius * (uniform(g, b, 0.09, 0.15) if outer else uniform(g, b, 0.06, 0.10))
    return Scale(start, sweep, n_major, sub, radius * uniform(g, b, lo, hi), length,
                 radius * uniform(g, b, 0.02, 0.035), choose(g, b, style.ticks, TICKS))


@lru_cache(maxsize=256)
def _font(name: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), px)


def text_masks(g: torch.Generator, scales: list[Scale], present: torch.Tensor, radius: torch.Tensor, r: int,
               style: GaugeStyle) -> torch.Tensor:
    """Numbers at the major ticks and a unit name per scale, ``(B, 2, r, r)`` coverage (outer, inner ink)."""
    b = radius.shape[0]
    font_idx = torch.randint(len(style.fonts), (b,), generator=g).tolist()
    steps = torch.tensor([1, 2, 5, 10, 20, 25, 50, 100])[torch.randint(8, (b, 2), generator=g)].tolist()
    units = torch.randint(len(UNITS), (b, 2), generator=g).tolist()
    c = r / 2
    out = np.zeros((b, 2, r, r), np.float32)
    for i in range(b):
        for j, s in enumerate(scales):
            if j == 1 and not bool(present[i]):
                continue
            canvas = Image.new("L", (r, r), 0)
            draw = ImageDraw.Draw(canvas)
            px = max(6, int(float(radius[i]) * (0.12 if j == 0 else 0.085)))
            font = _font(style.fonts[font_idx[i]], px)
            n = int(s.n_major[i])
            rr = float(s.r_out[i] - s.length[i]) - 0.75 * px
            for k in range(n + 1):
                a = float(s.start[i]) + k * float(s.sweep[i]) / n
                draw.text((c + rr * math.cos(a), c + rr * math.sin(a)), str(k * steps[i][j]), fill=255, font=font, anchor="mm")
            y = c + (0.32 if j == 0 else -0.22) * float(radius[i])
            draw.text((c, y), UNITS[units[i][j]], fill=255, font=_font(style.fonts[font_idx[i]], max(6, int(px * 0.8))), anchor="mm")
            out[i, j] = np.asarray(canvas, dtype=np.float32) / 255.0
    return torch.from_numpy(out)


def needle_sdf(dx: torch.Tensor, dy: torch.Tensor, angle: torch.Tensor, length: torch.Tensor, width: torch.Tensor,
               kind: torch.Tensor) -> torch.Tensor:
    """Signed distance ``(B, r, r)`` of a needle (taper, arrow, bar or lance) pointing at ``angle`` from the hub."""
    ca, sa = _v(torch.cos(angle)), _v(torch.sin(angle))
    t, q = dx * ca + dy * sa, (-dx * sa + dy * ca).abs()
    nl, nw = _v(length), _v(width)
    tail = 0.2 * nl
    ends = torch.maximum(-tail - t, t - nl)
    taper = torch.maximum(q - nw / 2 * (1 - t / nl).clamp(0.08, 1.0), ends)
    head = 0.22 * nl
    arrow_half = torch.where(t > nl - head, 0.9 * nw * (nl - t) / head, 0.22 * nw)
    arrow = torch.maximum(q - arrow_half, ends)
    seg_t = t.clamp(-tail, nl - 0.3 * nw)
    bar = torch.sqrt((t - seg_t) ** 2 + q**2) - 0.3 * nw
    knee = 0.3 * nl
    lance_half = 0.75 * nw * torch.where(t < knee, (t + tail) / (knee + tail), (nl - t) / (nl - knee)).clamp(0, 1)
    lance = torch.maximum(q - lance_half, ends)
    kind = _v(kind)
    return torch.where(kind == 0, taper, torch.where(kind == 1, arrow, torch.where(kind == 2, bar, lance)))


def render_dials(g: torch.Generator, b: int, r: int, style: GaugeStyle, primary: str) -> Dial:
    """Draw ``b`` dials on ``r`` x ``r`` canvases (see the module docstring)."""
    ys, xs = torch.meshgrid(torch.arange(r, dtype=torch.float32), torch.arange(r, dtype=torch.float32), indexing="ij")
    c = r / 2
    dx, dy = xs - c, ys - c
    rho, theta = torch.sqrt(dx**2 + dy**2), torch.atan2(dy, dx)  # y down: increasing angle turns clockwise
    bezel = torch.full((b,), BEZEL * r)
    radius = bezel / uniform(g, b, 1.05, 1.16)

    scheme_names = tuple(SCHEMES)
    scheme = choose(g, b, style.schemes, scheme_names).tolist()
    jitter = lambda: (torch.rand(b, 3, generator=g) * 2 - 1) * style.colour_jitter  # noqa: E731
    face = (torch.tensor([SCHEMES[scheme_names[i]]["face"] for i in scheme]) + jitter()).clamp(0, 1)
    ink = (torch.tensor([SCHEMES[scheme_names[i]]["ink"] for i in scheme]) + jitter()).clamp(0, 1)
    inner_ink = (torch.tensor([SCHEMES[scheme_names[i]]["inner"] for i in scheme]) + jitter()).clamp(0, 1)
    pick = torch.rand(b, generator=g).tolist()
    needle_col = torch.tensor([(lambda n: n[int(p * len(n))])(SCHEMES[scheme_names[i]]["needles"]) for i, p in zip(scheme, pick)])

    # bezel: metal (chrome, black, brass) lit from one side, then the face with a vignette
    light = _v(uniform(g, b, 0, TAU))
    metal = torch.tensor([[0.75, 0.75, 0.78], [0.12, 0.12, 0.13], [0.7, 0.55, 0.25]])[torch.randint(3, (b,), generator=g)]
    shine = (0.7 + 0.4 * torch.cos(theta - light)).unsqueeze(1)
    img = (metal.view(b, 3, 1, 1) * shine).clamp(0, 1)
    vignette = 1 - _v(uniform(g, b, 0, 0.2)) * (rho / _v(radius)) ** 2
    img = over(img, cover(rho - _v(radius)), torch.zeros(b, 3)) + cover(rho - _v(radius)).unsqueeze(1) * face.view(b, 3, 1, 1) * vignette.unsqueeze(1)

    # scales: the outer one and, on some dials, an inner one (other units, colour, ticks, sweep)
    sweep = torch.deg2rad(uniform(g, b, *style.sweep))
    start = math.pi / 2 + torch.deg2rad(uniform(g, b, -30, 30)) + (TAU - sweep) / 2
    outer = draw_scale(g, b, radius, style, True, start, sweep)
    present = torch.rand(b, generator=g) < style.inner_scale
    same_start = torch.rand(b, generator=g) < 0.5
    inner_start = torch.where(same_start, start, start + torch.deg2rad(uniform(g, b, -15, 15)))
    inner = draw_scale(g, b, radius, style, False, inner_start, sweep * uniform(g, b, 0.55, 1.0))
    arcs = torch.rand(b, 2, generator=g) < 0.5
    img = over(img, scale_coverage(rho, theta, outer, arcs[:, 0]), ink)
    img = over(img, scale_coverage(rho, theta, inner, arcs[:, 1]) * _v(present), inner_ink)
    text = text_masks(g, [outer, inner], present, radius, r, style)
    img = over(over(img, text[:, 0], ink), text[:, 1], inner_ink)

    # needle (with a soft shadow), resting on the labelled start or end on some dials, and the hub
    target = inner if primary == "inner" else outer
    on_end = torch.rand(b, generator=g) < 0.5
    rest = torch.where(on_end, target.start + target.sweep, target.start) + torch.deg2rad(uniform(g, b, -2, 2))
    angle = torch.where(torch.rand(b, generator=g) < style.occlusion, rest, start + torch.rand(b, generator=g) * sweep)
    n_len, n_wid = radius * uniform(g, b, 0.72, 0.95), radius * uniform(g, b, 0.035, 0.07)
    kind = choose(g, b, style.needles, NEEDLES)
    needle = needle_sdf(dx, dy, angle, n_len, n_wid, kind)
    off = max(1, round(0.01 * r))  # the shadow: the needle's soft coverage moved down and right
    img = img * (1 - 0.35 * torch.roll(cover(needle / 3), (off, off), (1, 2))).unsqueeze(1)
    img = over(img, cover(needle), needle_col)
    hub_col = torch.where((torch.rand(b, generator=g) < 0.5).view(b, 1), needle_col, 0.15 * torch.rand(b, 3, generator=g))
    img = over(img, cover(rho - _v(radius * uniform(g, b, 0.05, 0.1))), hub_col)

    # glass: a soft glare spot and a reflection streak
    gx, gy = (torch.rand(b, 2, generator=g) - 0.5).unbind(1)
    spot = torch.exp(-((dx - _v(gx * radius)) ** 2 * 0.5 + (dy - _v(gy * radius)) ** 2) / _v(radius * uniform(g, b, 0.2, 0.6)) ** 2)
    streak_dir = _v(uniform(g, b, 0, math.pi))
    u = dx * torch.cos(streak_dir) + dy * torch.sin(streak_dir) - _v((torch.rand(b, generator=g) - 0.5) * radius)
    streak = torch.exp(-(u**2) / _v(radius * uniform(g, b, 0.04, 0.15)) ** 2) * _v((torch.rand(b, generator=g) < 0.5).float())
    glare = (spot + 0.7 * streak).clamp(0, 1) * _v(uniform(g, b, *style.glare)) * (rho < _v(radius))
    img = img + (1 - img) * glare.unsqueeze(1)

    labelled = [outer] if primary == "outer" else [inner] if primary == "inner" else [outer, inner]
    pts, labels = zip(*(s.keypoints(c) for s in labelled))
    points, labels = torch.cat(pts, 1), torch.cat(labels, 1)
    if primary == "both":  # the inner scale's points only where there is an inner scale
        m = pts[0].shape[1]
        labels[:, m:] = torch.where(present.view(b, 1), labels[:, m:], -1)
    elif primary == "inner":  # a dial with one scale: that scale is the labelled one
        o_pts, o_labels = outer.keypoints(c)
        width = max(points.shape[1], o_pts.shape[1])
        pad = lambda t, v: torch.cat([t, t.new_full((b, width - t.shape[1], *t.shape[2:]), v)], 1)  # noqa: E731
        points = torch.where(present.view(b, 1, 1), pad(points, 0.0), pad(o_pts, 0.0))
        labels = torch.where(present.view(b, 1), pad(labels, -1), pad(o_labels, -1))
    return Dial(img.clamp(0, 1), cover(rho - _v(bezel)), points, labels)
