"""Synthetic aerial data in the University-1652 layout, plus a localisation set.

Procedural top-down worlds (textured ground, roads, buildings with gabled roofs and shadows) are
rendered with vectorised tensor ops. For each building a satellite view is the top-down crop centred
on it; drone views warp the same world with an oblique homography (rotation, scale, tilt) and a
light / colour change. The localisation set puts drone-style crops (templates) inside larger
satellite maps, with their ground-truth boxes in a template-pairs CSV.

    python -m neurocorr.data.synthetic.aerial <root> [--train 60 --test 40 --views 6 --size 128]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import kornia.geometry.transform as KT
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from neurocorr.data.synthetic.atomic import atomic_folder
from neurocorr.errors import DataError


def _noise(g: torch.Generator, channels: int, size: int, cells: int) -> torch.Tensor:
    coarse = torch.rand(1, channels, cells, cells, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]


def render_world(g: torch.Generator, size: int, n_buildings: int, centre_building: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A top-down world ``(3, size, size)`` float in [0, 1] and the buildings' centres ``(K, 2)`` (x, y) px.

    Building 0 sits at the centre when ``centre_building``.
    """
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    base = torch.tensor([0.35, 0.45, 0.25]) + 0.15 * (torch.rand(3, generator=g) - 0.5)
    img = base.view(3, 1, 1) * (0.75 + 0.5 * _noise(g, 1, size, 6)) + 0.08 * (_noise(g, 3, size, size // 4) - 0.5)
    # roads: straight bands with lane marks
    n_roads = 2 + int(torch.randint(3, (1,), generator=g))
    theta = torch.rand(n_roads, generator=g) * math.pi
    offset = (torch.rand(n_roads, generator=g) - 0.5) * size
    width = 3 + torch.rand(n_roads, generator=g) * 5
    dist = (xs - size / 2)[None] * torch.cos(theta).view(-1, 1, 1) + (ys - size / 2)[None] * torch.sin(theta).view(-1, 1, 1) - offset.view(-1, 1, 1)
    road = (dist.abs() < width.view(-1, 1, 1)).any(0)
    img = torch.where(road, torch.tensor([0.42, 0.42, 0.44]).view(3, 1, 1), img)
    mark = ((dist.abs() < 0.6) & (torch.sin(dist * 0 + (xs + ys)[None] * 0.5) > 0)).any(0)
    img = torch.where(mark, torch.tensor([0.85, 0.85, 0.8]).view(3, 1, 1), img)
    # buildings: rotated rectangles, shadow first, then gabled roof
    k = n_buildings
    centres = torch.rand(k, 2, generator=g) * size
    if centre_building:
        centres[0] = size / 2
    half = (0.03 + 0.05 * torch.rand(k, 2, generator=g)) * size
    if centre_building:
        half[0] = (0.07 + 0.04 * torch.rand(2, generator=g)) * size
    angle = torch.rand(k, generator=g) * math.pi
    colour = torch.rand(k, 3, generator=g) * 0.7 + 0.2
    c, s = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    shadow = torch.tensor([0.04, 0.05]) * size

    def local(shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dx = xs[None] - (centres[:, 0] + shift[0]).view(-1, 1, 1)
        dy = ys[None] - (centres[:, 1] + shift[1]).view(-1, 1, 1)
        return dx * c + dy * s, -dx * s + dy * c

    u, v = local(shadow)
    inside = (u.abs() < half[:, 0].view(-1, 1, 1)) & (v.abs() < half[:, 1].view(-1, 1, 1))
    img = img * torch.where(inside.any(0), 0.55, 1.0)
    u, v = local(torch.zeros(2))
    inside = (u.abs() < half[:, 0].view(-1, 1, 1)) & (v.abs() < half[:, 1].view(-1, 1, 1))
    shade = torch.where(v > 0, 0.8, 1.05)  # the two faces of a gable roof
    ridge = v.abs() < 0.8
    roof = colour.view(k, 3, 1, 1) * shade[:, None] * torch.where(ridge, 0.6, 1.0)[:, None]
    for i in range(k):  # later buildings on top; k is small, pixels are vectorised
        img = torch.where(inside[i][None], roof[i], img)
    return img.clamp(0, 1), centres


def photometric(g: torch.Generator, img: torch.Tensor) -> torch.Tensor:
    """Light and colour change of ``(B, 3, H, W)``: gain, per-channel tint, gamma, noise."""
    b = img.shape[0]
    gain = 0.7 + 0.6 * torch.rand(b, 1, 1, 1, generator=g)
    tint = 1 + 0.15 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5)
    gamma = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=g)
    out = (img * gain * tint).clamp(1e-4, 1) ** gamma
    return (out + 0.02 * torch.randn(img.shape, generator=g)).clamp(0, 1)


def drone_views(g: torch.Generator, world: torch.Tensor, n: int, size: int, footprint: float) -> torch.Tensor:
    """``n`` oblique views ``(n, 3, size, size)`` of the world's centre (random rotation, scale, tilt)."""
    w = world.shape[-1]
    centre = torch.tensor([w / 2, w / 2])
    out_pts = torch.tensor([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], dtype=torch.float32)
    srcs = []
    for _ in range(n):
        rot = float(torch.rand(1, generator=g)) * 2 * math.pi
        scale = footprint * (0.85 + 0.3 * float(torch.rand(1, generator=g)))
        tilt = 0.15 + 0.25 * float(torch.rand(1, generator=g))  # far edge wider than near edge
        half = scale / 2
        corners = torch.tensor([[-half * (1 + tilt), -half], [half * (1 + tilt), -half], [half * (1 - tilt * 0.3), half], [-half * (1 - tilt * 0.3), half]])
        r = torch.tensor([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
        srcs.append(corners @ r.T + centre)
    h = KT.get_perspective_transform(torch.stack(srcs), out_pts.expand(n, 4, 2))
    views = KT.warp_perspective(world.expand(n, -1, -1, -1), h, (size, size), mode="bilinear", padding_mode="reflection")
    return photometric(g, views)


def _save(img: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)


def _resize(img: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def write_split(root: Path, split: str, ids: list[str], views: int, size: int, seed: int) -> None:
    """Write one split: ``train/{drone,satellite}/<id>/`` or ``test/{query,gallery}_{drone,satellite}/<id>/``."""
    world_size = 2 * size
    for idx, bid in enumerate(ids):
        g = torch.Generator().manual_seed(seed * 1_000_003 + int(bid))
        world, _ = render_world(g, world_size, n_buildings=10 + int(torch.randint(8, (1,), generator=g)))
        c0, c1 = world_size // 4, world_size // 4 + size
        sat = _resize(world[:, c0 - size // 4 : c1 + size // 4, c0 - size // 4 : c1 + size // 4], size)
        drones = drone_views(g, world, views, size, footprint=size * 1.1)
        if split == "train":
            _save(sat, root / "train" / "satellite" / bid / f"{bid}.png")
            for k, d in enumerate(drones):
                _save(d, root / "train" / "drone" / bid / f"image-{k + 1:02d}.png")
        else:
            for role in ("gallery_satellite", "query_satellite"):
                _save(sat, root / "test" / role / bid / f"{bid}.png")
            for role in ("query_drone", "gallery_drone"):
                for k, d in enumerate(drones):
                    _save(d, root / "test" / role / bid / f"image-{k + 1:02d}.png")


def write_localisation(root: Path, n_maps: int, templates: int, map_size: int, seed: int) -> Path:
    """Satellite maps with drone-style templates (photometric change) and a template-pairs CSV."""
    folder = root / "localisation"
    rows = []
    for m in range(n_maps):
        g = torch.Generator().manual_seed(seed * 7919 + 31 * m + 5)
        world, centres = render_world(g, map_size, n_buildings=max(8, map_size // 24), centre_building=False)
        map_path = folder / "maps" / f"map_{m:03d}.png"
        _save(world, map_path)
        for t in range(templates):
            lo = max(16, min(48, map_size // 6))
            hi = max(lo + 1, min(97, map_size // 3))
            tw = int(torch.randint(lo, hi, (1,), generator=g))
            th = int(torch.randint(lo, hi, (1,), generator=g))
            cx, cy = centres[t % len(centres)].tolist()
            x = int(min(max(0, round(cx - tw / 2)), map_size - tw))
            y = int(min(max(0, round(cy - th / 2)), map_size - th))
            crop = photometric(g, world[None, :, y : y + th, x : x + tw])[0]
            tpath = folder / "templates" / f"map_{m:03d}_t{t:02d}.png"
            _save(crop, tpath)
            rows.append([tpath.relative_to(folder).as_posix(), "", "", "", "", map_path.relative_to(folder).as_posix(), x, y, tw, th])
    with open(folder / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["template_image", "tx", "ty", "tw", "th", "scene_image", "x", "y", "w", "h"])
        writer.writerows(rows)
    return folder / "pairs.csv"


def make_dataset(
    root: str | Path, n_train: int = 60, n_test: int = 40, views: int = 6, size: int = 128, seed: int = 0,
    n_maps: int = 2, templates: int = 6, map_size: int = 384, overwrite: bool = False,
) -> Path:
    """Write the whole synthetic set under ``root`` (built in a temporary folder, then renamed)."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise DataError(f"synthetic data: {root} exists and is not empty (pass --overwrite to replace it)")
    with atomic_folder(root) as tmp:
        write_split(tmp, "train", [f"{i:04d}" for i in range(1, n_train + 1)], views, size, seed)
        write_split(tmp, "test", [f"{i:04d}" for i in range(n_train + 1, n_train + n_test + 1)], views, size, seed)
        write_localisation(tmp, n_maps, templates, map_size, seed)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("--train", type=int, default=60, help="training buildings")
    parser.add_argument("--test", type=int, default=40, help="test buildings")
    parser.add_argument("--views", type=int, default=6, help="drone views per building")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--maps", type=int, default=2, help="localisation maps")
    parser.add_argument("--templates", type=int, default=6, help="templates per map")
    parser.add_argument("--map-size", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        root = make_dataset(args.root, args.train, args.test, args.views, args.size, args.seed, args.maps, args.templates, args.map_size, args.overwrite)
    except DataError as err:
        print(f"neurocorr: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote synthetic University-1652 layout and localisation set to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
