"""Synthetic analog gauges with their scale keypoints, written as images + a Label Studio export.

Each gauge has a bezel, a dial face, major and minor tick marks along an arc with random start
angle and sweep (the scale runs clockwise from ``start`` to ``end``), numbers at the major ticks, a
needle with a hub, glare, a cluttered background, a random perspective, blur and noise. Keypoints
are the centres of the major ticks: ``start`` (first), ``end`` (last) and ``middle`` (the others).
Rendering is batched tensor code (supersampled 2x); only the numbers are drawn with PIL.

    python -m neurocorr.data.synthetic.gauges <root> [--train 2000 --val 200 --test 200 --size 448]

writes ``<root>/{train,val,test}/images/*.png`` and ``<root>/{train,val,test}/export.json``; the
splits use distinct seeds.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import get_perspective_transform, warp_perspective
from PIL import Image, ImageDraw, ImageFont

from neurocorr.data.formats.label_studio import task_to_json, write_label_studio
from neurocorr.data.synthetic.atomic import atomic_folder
from neurocorr.errors import DataError

SPLITS = ("train", "val", "test")
SUPERSAMPLE = 2


@dataclass
class GaugeBatch:
    """images: ``(B, 3, S, S)`` uint8; points: ``(B, N, 2)`` float (x, y) px; labels: ``(B, N)`` long (-1 = padding)."""

    images: torch.Tensor
    points: torch.Tensor
    labels: torch.Tensor


def _u(g: torch.Generator, b: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, generator=g)


def _cover(sdf: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage of a signed distance (pixels, negative inside)."""
    return (0.5 - sdf).clamp(0.0, 1.0)


def _over(img: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Composite ``colour`` (B, 3) over ``img`` (B, 3, H, W) with ``alpha`` (B, H, W)."""
    a = alpha.unsqueeze(1)
    return img * (1 - a) + colour.view(-1, 3, 1, 1) * a


def _background(g: torch.Generator, b: int, r: int) -> torch.Tensor:
    """Low-frequency colour field with random bars and blobs (clutter), ``(B, 3, r, r)``."""
    img = F.interpolate(torch.rand(b, 3, 6, 6, generator=g), size=(r, r), mode="bicubic", align_corners=False)
    img = 0.15 + 0.7 * img.clamp(0, 1)
    ys, xs = torch.meshgrid(torch.arange(r, dtype=torch.float32), torch.arange(r, dtype=torch.float32), indexing="ij")
    for _ in range(8):
        cx, cy = _u(g, b, 0, r).view(b, 1, 1), _u(g, b, 0, r).view(b, 1, 1)
        theta = _u(g, b, 0, math.pi).view(b, 1, 1)
        hw, hh = _u(g, b, 0.01 * r, 0.25 * r).view(b, 1, 1), _u(g, b, 0.005 * r, 0.08 * r).view(b, 1, 1)
        u = (xs - cx) * torch.cos(theta) + (ys - cy) * torch.sin(theta)
        v = -(xs - cx) * torch.sin(theta) + (ys - cy) * torch.cos(theta)
        box = torch.maximum(u.abs() - hw, v.abs() - hh)
        blob = torch.sqrt(u**2 + (v * hw / hh.clamp(min=1)) ** 2) - hw
        kind = (torch.rand(b, generator=g) < 0.5).view(b, 1, 1)
        alpha = _cover(torch.where(kind, box, blob)) * _u(g, b, 0.5, 1.0).view(b, 1, 1)
        img = _over(img, alpha, torch.rand(b, 3, generator=g))
    return img


def _numbers_mask(
    g: torch.Generator, centres: torch.Tensor, radius: torch.Tensor, angles: list[torch.Tensor], r: int
) -> torch.Tensor:
    """Scale numbers drawn with PIL at the major ticks, ``(B, r, r)`` float coverage."""
    masks = []
    for i, ang in enumerate(angles):
        canvas = Image.new("L", (r, r), 0)
        draw = ImageDraw.Draw(canvas)
        font_px = max(6, int(float(radius[i]) * 0.13))
        try:
            font = ImageFont.load_default(size=font_px)
        except TypeError:  # Pillow without FreeType sizes
            font = ImageFont.load_default()
        step = int(torch.randint(1, 4, (1,), generator=g)) * [1, 5, 10, 20][int(torch.randint(4, (1,), generator=g))]
        rr = float(radius[i]) * 0.55
        for k, a in enumerate(ang.tolist()):
            x = float(centres[i, 0]) + rr * math.cos(a)
            y = float(centres[i, 1]) + rr * math.sin(a)
            draw.text((x, y), str(k * step), fill=255, font=font, anchor="mm")
        masks.append(torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0))
    return torch.stack(masks)


def render_gauges(g: torch.Generator, batch: int, size: int) -> GaugeBatch:
    """Render ``batch`` gauges of ``size`` x ``size`` pixels with their keypoints."""
    b, ss = batch, SUPERSAMPLE
    r = size * ss
    ys, xs = torch.meshgrid(torch.arange(r, dtype=torch.float32), torch.arange(r, dtype=torch.float32), indexing="ij")
    img = _background(g, b, r)

    # dial geometry (render pixels)
    centre = r / 2 + (torch.rand(b, 2, generator=g) - 0.5) * 0.12 * r
    radius = _u(g, b, 0.27, 0.36) * r
    bezel = radius * _u(g, b, 1.06, 1.16)
    dx, dy = xs - centre[:, 0].view(b, 1, 1), ys - centre[:, 1].view(b, 1, 1)
    rho = torch.sqrt(dx**2 + dy**2)
    theta = torch.atan2(dy, dx)  # y down: increasing angle turns clockwise on screen

    light = _u(g, b, 0, 2 * math.pi).view(b, 1, 1)
    metal = torch.rand(b, 3, generator=g) * 0.35 + torch.rand(b, 1, generator=g) * 0.5
    shine = (0.75 + 0.35 * torch.cos(theta - light)).unsqueeze(1)
    ring = _cover(rho - bezel.view(b, 1, 1)).unsqueeze(1)
    img = img * (1 - ring) + (metal.view(b, 3, 1, 1) * shine).clamp(0, 1) * ring

    dark_face = torch.rand(b, generator=g) < 0.2
    face_col = torch.where(dark_face.view(b, 1), 0.05 + 0.15 * torch.rand(b, 3, generator=g),
                           0.8 + 0.2 * torch.rand(b, 3, generator=g))
    ink = torch.where(dark_face.view(b, 1), 0.85 + 0.15 * torch.rand(b, 1, generator=g).expand(b, 3),
                      0.15 * torch.rand(b, 1, generator=g).expand(b, 3))
    img = _over(img, _cover(rho - radius.view(b, 1, 1)), face_col)

    # scale: clockwise from start to end, gap roughly at the bottom
    sweep = _u(g, b, math.radians(180), math.radians(300))
    gap_centre = math.pi / 2 + (torch.rand(b, generator=g) - 0.5) * math.radians(90)
    start = gap_centre + (2 * math.pi - sweep) / 2
    n_major = torch.randint(4, 11, (b,), generator=g)
    sub = torch.tensor([1, 2, 4, 5, 10])[torch.randint(5, (b,), generator=g)]  # minor intervals per major
    step = sweep / (n_major * sub)
    outer = radius * _u(g, b, 0.86, 0.93)
    major_len = radius * _u(g, b, 0.10, 0.16)
    major_w = radius * _u(g, b, 0.022, 0.04)
    phase = torch.remainder(theta - start.view(b, 1, 1), 2 * math.pi)
    k = torch.round(phase / step.view(b, 1, 1))
    k = torch.minimum(k, (n_major * sub).view(b, 1, 1).float())
    dtheta = phase - k * step.view(b, 1, 1)
    is_major = torch.remainder(k, sub.view(b, 1, 1).float()) == 0
    length = torch.where(is_major, major_len.view(b, 1, 1), 0.5 * major_len.view(b, 1, 1))
    width = torch.where(is_major, major_w.view(b, 1, 1), 0.45 * major_w.view(b, 1, 1))
    along, perp = rho * torch.cos(dtheta), (rho * torch.sin(dtheta)).abs()
    o = outer.view(b, 1, 1)
    tick_sdf = torch.maximum(perp - width / 2, torch.maximum(along - o, (o - length) - along))
    tick_sdf = torch.where(phase <= sweep.view(b, 1, 1) + step.view(b, 1, 1) / 2, tick_sdf, torch.full_like(tick_sdf, 1e3))
    img = _over(img, _cover(tick_sdf), ink)
    # the arc along the ticks' outer ends (on some gauges), and a red zone near the end (on some)
    arc_on = (torch.rand(b, generator=g) < 0.5).view(b, 1, 1)
    in_sweep = phase <= sweep.view(b, 1, 1)
    arc_sdf = (rho - o).abs() - 0.25 * major_w.view(b, 1, 1)
    img = _over(img, _cover(arc_sdf) * (in_sweep & arc_on), ink)
    zone_on = (torch.rand(b, generator=g) < 0.35).view(b, 1, 1)
    zone = (phase > 0.8 * sweep.view(b, 1, 1)) & in_sweep & zone_on
    band = torch.maximum(rho - (o - 0.6 * major_len.view(b, 1, 1)), (o - major_len.view(b, 1, 1)) - rho)
    img = _over(img, _cover(band) * zone * 0.85, torch.tensor([[0.85, 0.1, 0.1]]).expand(b, 3))

    # numbers at the major ticks
    major_angles = [start[i] + torch.arange(int(n_major[i]) + 1) * sweep[i] / n_major[i] for i in range(b)]
    img = _over(img, _numbers_mask(g, centre, radius, major_angles, r), ink)

    # needle and hub
    needle_angle = start + torch.rand(b, generator=g) * sweep
    nl = radius * _u(g, b, 0.65, 0.85)
    nw = radius * _u(g, b, 0.03, 0.06)
    ca, sa = torch.cos(needle_angle).view(b, 1, 1), torch.sin(needle_angle).view(b, 1, 1)
    t, q = dx * ca + dy * sa, (-dx * sa + dy * ca).abs()
    half = nw.view(b, 1, 1) / 2 * (1 - t / nl.view(b, 1, 1)).clamp(0.08, 1.0)
    tail = 0.18 * radius.view(b, 1, 1)
    needle_sdf = torch.maximum(q - half, torch.maximum(-tail - t, t - nl.view(b, 1, 1)))
    needle_col = torch.where((torch.rand(b, generator=g) < 0.5).view(b, 1), torch.tensor([[0.8, 0.05, 0.05]]).expand(b, 3), ink)
    img = _over(img, _cover(needle_sdf), needle_col)
    img = _over(img, _cover(rho - 0.07 * radius.view(b, 1, 1)), 0.2 * torch.rand(b, 3, generator=g))

    # glare: a soft bright ellipse on the glass
    gx = centre[:, 0] + (torch.rand(b, generator=g) - 0.5) * radius
    gy = centre[:, 1] + (torch.rand(b, generator=g) - 0.5) * radius
    gr = radius * _u(g, b, 0.2, 0.6)
    glare = torch.exp(-(((xs - gx.view(b, 1, 1)) ** 2) * 0.4 + (ys - gy.view(b, 1, 1)) ** 2) / (gr.view(b, 1, 1) ** 2))
    glare = glare * (rho < bezel.view(b, 1, 1)) * _u(g, b, 0.0, 0.45).view(b, 1, 1)
    img = img + (1 - img) * glare.unsqueeze(1)

    # keypoints: centres of the major ticks (render pixels)
    n_max = int(n_major.max()) + 1
    idx = torch.arange(n_max).view(1, -1)
    ang = start.view(b, 1) + idx * (sweep / n_major).view(b, 1)
    mid_r = (outer - major_len / 2).view(b, 1)
    pts = torch.stack([centre[:, 0:1] + mid_r * torch.cos(ang), centre[:, 1:2] + mid_r * torch.sin(ang)], dim=-1)
    labels = torch.where(idx == 0, 0, torch.where(idx == n_major.view(b, 1), 2, 1))
    labels = torch.where(idx <= n_major.view(b, 1), labels, -1)

    # perspective: jitter the corners, warp image and points with the same homography
    corners = torch.tensor([[0.0, 0.0], [r - 1.0, 0.0], [r - 1.0, r - 1.0], [0.0, r - 1.0]]).expand(b, 4, 2)
    moved = corners + (torch.rand(b, 4, 2, generator=g) - 0.5) * 2 * _u(g, b, 0.0, 0.07).view(b, 1, 1) * r
    h = get_perspective_transform(corners, moved)
    img = warp_perspective(img, h, (r, r), padding_mode="border", align_corners=True)
    homog = torch.cat([pts, torch.ones_like(pts[..., :1])], -1) @ h.transpose(1, 2)
    pts = homog[..., :2] / homog[..., 2:]

    # down to the output size (pixel centres: x = (x_hr + 0.5) / ss - 0.5), blur, noise
    img = F.avg_pool2d(img, ss)
    pts = (pts + 0.5) / ss - 0.5
    sigma = _u(g, b, 0.05, 1.1).view(b, 1).expand(b, 2).contiguous() * size / 224
    img = gaussian_blur2d(img, (7, 7), sigma.clamp(min=0.05))
    img = img * _u(g, b, 0.7, 1.15).view(b, 1, 1, 1) + _u(g, b, -0.1, 0.1).view(b, 1, 1, 1)
    img = img + torch.randn(img.shape, generator=g) * _u(g, b, 0.0, 0.04).view(b, 1, 1, 1)
    inside = (pts >= -0.5).all(-1) & (pts <= size - 0.5).all(-1)
    labels = torch.where(inside, labels, -1)
    return GaugeBatch((img.clamp(0, 1) * 255).round().to(torch.uint8), pts, labels)


def write_split(folder: Path, n: int, size: int, seed: int, name: str) -> Path:
    """Write ``n`` gauges to ``folder/images`` and ``folder/export.json``; returns the export."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    per_batch = max(1, min(64, 3_000_000 // (size * SUPERSAMPLE) ** 2))
    tasks, done = [], 0
    while done < n:
        g = torch.Generator().manual_seed(seed * 1_000_003 + done)
        count = min(per_batch, n - done)
        out = render_gauges(g, count, size)
        for i in range(count):
            task_id = done + i + 1
            file_name = f"{name}_{task_id:05d}.png"
            Image.fromarray(out.images[i].permute(1, 2, 0).numpy()).save(folder / "images" / file_name)
            keep = out.labels[i] >= 0
            tasks.append(task_to_json(task_id, f"/data/local-files/?d=images/{file_name}", size, size,
                                      out.points[i][keep].numpy(), out.labels[i][keep].tolist()))
        done += count
    return write_label_studio(tasks, folder / "export.json")


def make_dataset(
    root: str | Path, n_train: int = 2000, n_val: int = 200, n_test: int = 200, size: int = 448, seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write train/val/test splits under ``root`` (built in a temporary folder, then renamed)."""
    root = Path(root)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise DataError(f"synthetic gauges: {root} exists and is not empty (pass --overwrite to replace it)")
    if size < 32:
        raise DataError(f"synthetic gauges: size must be >= 32 pixels, got {size}")
    with atomic_folder(root) as tmp:
        for i, (split, n) in enumerate(zip(SPLITS, (n_train, n_val, n_test))):
            write_split(tmp / split, n, size, seed * 10 + i + 1, split)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--size", type=int, default=448, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        root = make_dataset(args.root, args.train, args.val, args.test, args.size, args.seed, args.overwrite)
    except DataError as err:
        print(f"neurocorr: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote synthetic gauges (images + Label Studio exports) to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
