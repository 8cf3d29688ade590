"""Synthetic cross-view template pairs: crops of a top-down (satellite) view located in oblique
(drone) views of the same place, with the true boxes, as template-pairs CSVs.

Each world is rendered once (:func:`~neurocorr.data.synthetic.aerial.render_world`); its satellite
view is the world under a light change; every drone view is the world under a random homography
(rotation within +-45 degrees, scale 0.6-1.6, tilt) and another light change. Templates are square boxes of the
satellite view (``tx,ty,tw,th``), located in the drone view at the axis-aligned box of their
warped corners. Worlds ``0..train-1`` go to ``train_pairs.csv``, the next ``val`` worlds to
``val_pairs.csv`` (checkpoint choice) and the next ``heldout`` worlds to ``heldout_pairs.csv`` (a
held-out split: new places, for the report).

    python -m neurocorr.data.synthetic.aerial_pairs <root> [--train 40 --val 4 --heldout 8 --views 3 --templates 4]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import kornia.geometry.transform as KT
import torch

from neurocorr.data.synthetic.aerial import _save, photometric, render_world
from neurocorr.data.synthetic.atomic import atomic_folder
from neurocorr.errors import DataError

HEADER = ["template_image", "tx", "ty", "tw", "th", "scene_image", "x", "y", "w", "h"]


def view_homography(g: torch.Generator, centre: torch.Tensor, view: int, rotation: float = 45.0) -> torch.Tensor:
    """A ``(3, 3)`` homography from world pixels to a ``view`` x ``view`` oblique view around ``centre``
    (heading within +-``rotation`` degrees of the satellite's)."""
    rot = math.radians(rotation) * (2 * float(torch.rand(1, generator=g)) - 1)
    scale = 0.6 + 1.0 * float(torch.rand(1, generator=g))  # view pixels per world pixel
    tilt = 0.3 * float(torch.rand(1, generator=g))
    half = view / scale / 2
    corners = torch.tensor([[-half * (1 + tilt), -half], [half * (1 + tilt), -half], [half * (1 - tilt), half], [-half * (1 - tilt), half]])
    r = torch.tensor([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    src = corners @ r.T + centre
    dst = torch.tensor([[0.0, 0.0], [view, 0.0], [view, view], [0.0, view]])
    return KT.get_perspective_transform(src[None], dst[None])[0]


def warp_box(h: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """The axis-aligned box ``(4,)`` xywh of ``box``'s corners mapped by ``h``."""
    x, y, w, hh = box
    pts = torch.tensor([[x, y, 1.0], [x + w, y, 1.0], [x + w, y + hh, 1.0], [x, y + hh, 1.0]]) @ h.T
    xy = pts[:, :2] / pts[:, 2:]
    lo, hi = xy.amin(0), xy.amax(0)
    return torch.cat([lo, hi - lo])


def write_world(folder: Path, name: str, seed: int, world_size: int, view: int, views: int, templates: int) -> list[list]:
    """One world: ``<name>/satellite.png``, ``<name>/drone_<k>.png``; returns its CSV rows."""
    g = torch.Generator().manual_seed(seed)
    world, centres = render_world(g, world_size, n_buildings=max(8, world_size // 20), centre_building=False)
    sat = photometric(g, world[None])[0]
    _save(sat, folder / name / "satellite.png")
    rows = []
    for k in range(views):
        margin = view // 2
        centre = torch.rand(2, generator=g) * (world_size - 2 * margin) + margin
        h = view_homography(g, centre, view)
        drone = photometric(g, KT.warp_perspective(world[None], h[None], (view, view), mode="bilinear", padding_mode="reflection"))[0]
        drone_name = f"{name}/drone_{k}.png"
        _save(drone, folder / drone_name)
        placed = 0
        for _ in range(templates * 8):
            if placed == templates:
                break
            side = int(torch.randint(32, 65, (1,), generator=g))
            near = centres[int(torch.randint(len(centres), (1,), generator=g))] if torch.rand(1, generator=g) < 0.5 else centre
            jitter = (torch.rand(2, generator=g) - 0.5) * view / 2
            tx, ty = (near + jitter - side / 2).round().tolist()
            if tx < 0 or ty < 0 or tx + side > world_size or ty + side > world_size:
                continue
            box = warp_box(h, (tx, ty, side, side))
            if box[0] < 0 or box[1] < 0 or box[0] + box[2] > view or box[1] + box[3] > view:
                continue
            x0, y0 = math.floor(float(box[0])), math.floor(float(box[1]))
            x1, y1 = math.ceil(float(box[0] + box[2])), math.ceil(float(box[1] + box[3]))
            rows.append([f"{name}/satellite.png", int(tx), int(ty), side, side, drone_name, x0, y0, min(view, x1) - x0, min(view, y1) - y0])
            placed += 1
    return rows


def _write_csv(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)


def make_view_pairs(
    root: str | Path, n_train: int = 40, n_heldout: int = 8, views: int = 3, templates: int = 4,
    world_size: int = 320, view: int = 192, seed: int = 0, overwrite: bool = False, n_val: int = 4,
) -> Path:
    """Write ``train_pairs.csv``, ``val_pairs.csv`` and ``heldout_pairs.csv`` with their images under ``root``."""
    root = Path(root)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise DataError(f"synthetic data: {root} exists and is not empty (pass --overwrite to replace it)")
    with atomic_folder(root) as tmp:
        for split, first, count in (("train", 0, n_train), ("val", n_train, n_val), ("heldout", n_train + n_val, n_heldout)):
            rows = []
            for i in range(first, first + count):
                rows += write_world(tmp, f"world_{i:04d}", seed * 1_000_003 + 7 * i + 1, world_size, view, views, templates)
            _write_csv(tmp / f"{split}_pairs.csv", rows)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("--train", type=int, default=40, help="training worlds")
    parser.add_argument("--val", type=int, default=4, help="validation worlds")
    parser.add_argument("--heldout", type=int, default=8, help="held-out worlds")
    parser.add_argument("--views", type=int, default=3, help="drone views per world")
    parser.add_argument("--templates", type=int, default=4, help="templates per drone view")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        root = make_view_pairs(args.root, args.train, args.heldout, args.views, args.templates, seed=args.seed, overwrite=args.overwrite, n_val=args.val)
    except DataError as err:
        print(f"neurocorr: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote synthetic cross-view template pairs to {root} (train_pairs.csv, val_pairs.csv, heldout_pairs.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
